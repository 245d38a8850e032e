//! When a request is worth sending again, and how long to wait first: the one retry policy of every
//! request, storage and target alike (each operation has exactly one loop that uses it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// A `Retry-After` given in seconds (the form registries and stores use).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// Exponential backoff with jitter, honouring `Retry-After` when the server gives one; each wait is
/// counted in the run's retries.
pub struct Backoff<'a> {
    attempt: u32,
    delay: Duration,
    retries: &'a AtomicU64,
}

impl Backoff<'_> {
    pub fn new(retries: &AtomicU64) -> Backoff<'_> {
        Backoff { attempt: 1, delay: Duration::from_millis(200), retries }
    }

    /// Waits before the next try and counts it; false when the tries are used up.
    pub async fn wait(&mut self, retry_after: Option<Duration>) -> bool {
        if self.attempt >= ATTEMPTS {
            return false;
        }
        self.attempt += 1;
        self.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("retry {} of {}", self.attempt - 1, ATTEMPTS - 1);
        let jitter =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
                % 1000;
        let wait = retry_after.unwrap_or(self.delay + self.delay * jitter / 2000).min(MAX_WAIT);
        self.delay = (self.delay * 2).min(MAX_WAIT);
        tokio::time::sleep(wait).await;
        true
    }

    /// Starts counting tries again (the last try moved the operation forward).
    pub fn reset(&mut self) {
        self.attempt = 1;
        self.delay = Duration::from_millis(200);
    }
}
