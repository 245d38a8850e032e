//! What the storage and registry clients share about HTTP.

/// A transport error in words: its message and every cause below it (where TLS and connection details
/// live), without its URL, whose query may carry a credential (a SAS token).
pub fn describe_error(error: &reqwest::Error) -> String {
    let mut text = error_chain(error);
    if let Some(url) = error.url() {
        text = text.replace(&format!(" for url ({})", url.as_str()), "").replace(url.as_str(), "");
    }
    text
}

/// An error's message followed by each of its causes, `: `-separated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Retries made so far in this process, storage and target alike (reported in summaries).
static RETRIES: AtomicU64 = AtomicU64::new(0);

pub fn retries() -> u64 {
    RETRIES.load(Ordering::Relaxed)
}

/// How long an answer may stay silent (no byte read) before its request is abandoned and tried again,
/// unless `--stall-timeout` says otherwise. Generous: a registry on S3 can take minutes to commit a
/// large blob (a server-side copy) before it answers the upload's last PUT.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(300);

/// How many times one request is tried before its error is reported.
pub const ATTEMPTS: u32 = 5;
/// The longest wait between two tries, whatever a server's `Retry-After` asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Statuses worth trying again: throttling and server-side failures (a proxy's 502/503/504 included).
pub fn is_transient(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Transport failures worth trying again: no connection, a timeout (a stalled answer), a connection
/// broken while sending the request or reading the answer.
pub fn is_transient_error(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

/// Sends one request, the only way any request leaves: waits for the request-rate limit and for room in
/// its side's adaptive window (`window.rs`, which learns from the answer), records the
/// outcome and latency in the metrics, and (with `--verbose`) logs it without its query string and with
/// secret headers redacted.
pub async fn execute(
    side: &'static str,
    operation: &'static str,
    request: reqwest::RequestBuilder,
) -> reqwest::Result<reqwest::Response> {
    crate::limit::request().await;
    let (client, request) = request.build_split();
    let request = request?;
    let described = crate::log::debug_enabled().then(|| {
        format!("{} {} [{}]", request.method(), without_query(request.url()), redacted_headers(request.headers()))
    });
    let permit = match crate::window::of(side) {
        Some(window) => Some(window.acquire().await),
        None => None,
    };
    let started = std::time::Instant::now();
    let outcome = client.execute(request).await;
    let elapsed = started.elapsed();
    if let Some(permit) = permit {
        permit.answered(crate::window::signal_of(&outcome));
    }
    let status = match &outcome {
        Ok(response) => response.status().as_u16().to_string(),
        Err(_) => "error".to_string(),
    };
    crate::metrics::record_request(side, operation, &status, elapsed);
    if let Some(described) = described {
        crate::log::debug(|| format!("{side} {operation}: {described} -> {status} in {} ms", elapsed.as_millis()));
    }
    outcome
}

/// Headers that carry credentials (or signatures made with them): never written anywhere.
const SECRET_HEADERS: [&str; 5] =
    ["authorization", "proxy-authorization", "cookie", "x-amz-security-token", "x-ms-copy-source-authorization"];

/// Headers as `name: value` pairs for a log line, with every credential-bearing value redacted.
pub fn redacted_headers(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .iter()
        .map(|(name, value)| {
            let shown = if SECRET_HEADERS.contains(&name.as_str()) {
                "<redacted>"
            } else {
                value.to_str().unwrap_or("<binary>")
            };
            format!("{name}: {shown}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A URL without its query string or user information (where SAS tokens and passwords live).
pub fn without_query(url: &url::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// Sends a request (rebuilt by `build` for each try) until it gets an answer that is not transient,
/// or the tries are used up (then the last answer or error is returned).
pub async fn send_with_retries(
    side: &'static str,
    operation: &'static str,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> reqwest::Result<reqwest::Response> {
    let mut backoff = Backoff::default();
    loop {
        let outcome = execute(side, operation, build()).await;
        let retry_after = match &outcome {
            Ok(response) if is_transient(response.status()) => Some(retry_after(response.headers())),
            Err(error) if is_transient_error(error) => Some(None),
            _ => None,
        };
        match retry_after {
            Some(wait) if backoff.wait(wait).await => continue,
            _ => return outcome,
        }
    }
}

/// `send_with_retries` for small answers read whole: an answer cut off in the middle of its body is
/// asked for again too, in the same loop (one retry layer: each try is one request). Returns the final
/// status and body.
pub async fn fetch_with_retries(
    side: &'static str,
    operation: &'static str,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> reqwest::Result<(reqwest::StatusCode, bytes::Bytes)> {
    let mut backoff = Backoff::default();
    loop {
        let (outcome, retry_after) = match execute(side, operation, build()).await {
            Ok(response) if is_transient(response.status()) => {
                let wait = retry_after(response.headers());
                let status = response.status();
                (response.bytes().await.map(|body| (status, body)), wait)
            }
            // Reading the body fails only when the answer was cut off or stalled (reqwest may call that a
            // decode error): ask again.
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(body) => return Ok((status, body)),
                    Err(error) if is_transient_error(&error) || error.is_decode() => (Err(error), None),
                    Err(error) => return Err(error),
                }
            }
            Err(error) if is_transient_error(&error) => (Err(error), None),
            Err(error) => return Err(error),
        };
        if !backoff.wait(retry_after).await {
            return outcome;
        }
    }
}

/// A `Retry-After` given in seconds (the form registries and stores use).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// Exponential backoff with jitter, honouring `Retry-After` when the server gives one.
pub struct Backoff {
    attempt: u32,
    delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { attempt: 1, delay: Duration::from_millis(200) }
    }
}

impl Backoff {
    /// Waits before the next try and counts it; false when the tries are used up.
    pub async fn wait(&mut self, retry_after: Option<Duration>) -> bool {
        if self.attempt >= ATTEMPTS {
            return false;
        }
        self.attempt += 1;
        RETRIES.fetch_add(1, Ordering::Relaxed);
        crate::log::debug(|| format!("retry {} of {}", self.attempt - 1, ATTEMPTS - 1));
        let jitter =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
                % 1000;
        let wait = retry_after.unwrap_or(self.delay + self.delay * jitter / 2000).min(MAX_WAIT);
        self.delay = (self.delay * 2).min(MAX_WAIT);
        tokio::time::sleep(wait).await;
        true
    }
}
