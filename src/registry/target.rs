//! Reaching the target: its HTTP client, Harbor detection and the credentials check, done once before
//! anything is listed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use url::Url;

use super::client::RegistryClient;
use super::credentials::Credentials;
use super::harbor::Harbor;

/// The target registry, and its Harbor control plane when it is a Harbor.
#[derive(Clone)]
pub struct Target {
    pub registry: Arc<RegistryClient>,
    pub harbor: Option<Arc<Harbor>>,
}

impl Target {
    /// Connects to the target: detects Harbor (and checks the credentials there), then pings `/v2/`.
    pub async fn connect(
        target: &Url,
        credentials: Option<Credentials>,
        ca_cert: Option<&Path>,
        stall_timeout: Option<Duration>,
        context: Arc<crate::http::Context>,
    ) -> anyhow::Result<Target> {
        let http = crate::http::Client::new(target_http(ca_cert, stall_timeout)?, crate::http::Side::Target, context);
        let registry = Arc::new(RegistryClient::new(target.clone(), http.clone(), credentials.clone()));
        let detected =
            Harbor::detect(target, &http, credentials).await.map_err(|e| unreachable_target(target, e.to_string()))?;
        let harbor = match detected {
            Some(harbor) => {
                registry.share_tokens_by(crate::registry::harbor::token_key);
                // At once: each call costs Harbor a password check (0.1 to 0.3 s of its CPU), and they
                // stand between the start and the first push. A credentials error is reported first.
                let (checked, version, pinged) =
                    tokio::join!(harbor.check_credentials(), harbor.version(), registry.ping());
                checked?;
                pinged.map_err(|error| unreachable_target(target, error.to_string()))?;
                crate::report::log::info(format!("target is Harbor {}", version.unwrap_or_default()));
                Some(Arc::new(harbor))
            }
            None => {
                registry.ping().await.map_err(|error| unreachable_target(target, error.to_string()))?;
                None
            }
        };
        Ok(Target { registry, harbor })
    }
}

/// The target's HTTP client: TLS always verified (against the system's roots and `--ca-cert`), no cookie
/// jar (Harbor skips CSRF checks for calls without its session cookie), and reqwest's redirect policy,
/// which drops credentials on a redirect to another host.
fn target_http(ca_cert: Option<&Path>, stall_timeout: Option<Duration>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(stall_timeout.unwrap_or(crate::http::DEFAULT_STALL_TIMEOUT))
        .pool_max_idle_per_host(64)
        .user_agent(concat!("rehydrate/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_cert {
        for certificate in ca_certificates(path)? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder.build()?)
}

/// The certificates of a `--ca-cert` file: at least one, all PEM.
fn ca_certificates(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).with_context(|| format!("reading --ca-cert {}", path.display()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("--ca-cert {}: not PEM certificates", path.display()))?;
    if certificates.is_empty() {
        anyhow::bail!("--ca-cert {}: no certificate in it", path.display());
    }
    Ok(certificates)
}

/// Explains a failure to reach the target, with what to do when its certificate is not trusted.
fn unreachable_target(target: &Url, text: String) -> anyhow::Error {
    if text.contains("certificate") || text.contains("UnknownIssuer") || text.contains("invalid peer") {
        anyhow::anyhow!(
            "the TLS certificate of {} is not trusted ({text}). If the target uses a private CA or a self-signed \
             certificate, pass --ca-cert FILE with that CA's certificate (PEM)",
            target.host_str().unwrap_or_default()
        )
    } else {
        anyhow::anyhow!("reaching the target {target}: {text}")
    }
}
