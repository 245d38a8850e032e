//! AWS credentials and region as the AWS CLI and SDKs find them, through `aws-config`'s default chain:
//! environment (`AWS_ACCESS_KEY_ID`...), the shared files (`~/.aws/credentials`, `~/.aws/config`, with
//! `AWS_PROFILE`, `AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`) and what a profile may name there
//! (SSO, `credential_process`, assume-role, web identity), web identity from the environment, ECS
//! container credentials and the instance metadata service.
//!
//! Why not `object_store`'s own chain: it reads only the `AWS_*` variables, web identity, ECS and the
//! instance metadata, so a workstation's profile (the usual way, and what SSO and `credential_process`
//! setups produce) failed with an error naming the metadata address. The signing stays `object_store`'s.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::ProvideCredentials;
use object_store::aws::AwsCredential;
use tokio::sync::Mutex;

use super::StorageError;

/// A credential is fetched again this long before it expires.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// What the chain looked for, for the one line an operator reads when nothing was found.
const LOOKED_FOR: &str = "no AWS credentials found (looked for AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
     the profile in ~/.aws/credentials and ~/.aws/config (AWS_PROFILE, else \"default\"), web identity, \
     ECS and the instance metadata service): set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
     or pass --anonymous for a public bucket";

/// The region as the AWS tools find it: `AWS_REGION`/`AWS_DEFAULT_REGION`, then the profile's `region`.
/// The instance metadata is not asked: a region is needed before the first request, and asking a
/// metadata service that is not there costs seconds on every workstation.
pub async fn region() -> Option<String> {
    let chain = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
        .or_else(ProfileFileRegionProvider::new());
    chain.region().await.map(|region| region.to_string())
}

/// The default chain with the credential it last gave, fetched again shortly before it expires. One
/// fetch at a time: tasks that need a credential meanwhile wait for that one.
pub struct AwsCredentials {
    chain: DefaultCredentialsChain,
    current: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl AwsCredentials {
    pub async fn from_default_chain(region: &str) -> AwsCredentials {
        let chain =
            DefaultCredentialsChain::builder().region(aws_config::Region::new(region.to_string())).build().await;
        AwsCredentials { chain, current: Mutex::new(None) }
    }

    pub async fn current(&self) -> Result<Arc<AwsCredential>, StorageError> {
        let mut current = self.current.lock().await;
        if let Some((credential, expiry)) = current.as_ref() {
            if expiry.is_none_or(|expiry| SystemTime::now() + REFRESH_BEFORE_EXPIRY < expiry) {
                return Ok(credential.clone());
            }
        }
        let fetched = self.chain.provide_credentials().await.map_err(describe)?;
        let credential = Arc::new(AwsCredential {
            key_id: fetched.access_key_id().to_string(),
            secret_key: fetched.secret_access_key().to_string(),
            token: fetched.session_token().map(str::to_string),
        });
        *current = Some((credential.clone(), fetched.expiry()));
        Ok(credential)
    }
}

/// The chain's error in the operator's words, with its causes (they name files and providers, never a
/// secret).
fn describe(error: CredentialsError) -> StorageError {
    match error {
        CredentialsError::CredentialsNotLoaded(_) => StorageError::Credentials(LOOKED_FOR.to_string()),
        other => StorageError::Credentials(format!("AWS credentials: {}", crate::http::chain_in_words(&other))),
    }
}
