//! The HTTP layer under the storage and registry clients: every request of a run leaves through one
//! [`Client`], which waits for the request-rate limit and for room in its side's adaptive window (which
//! learns from the answer), counts the request and its latency in the run's request metrics, and (at
//! debug level) logs it without its query string and with credential headers redacted. The retry policy
//! (`retry`) and the byte-rate limit are here too; the run's [`Context`] holds them all, so two runs
//! in one process share nothing.

pub mod limit;
pub mod metrics;
mod redact;
pub mod retry;
pub mod window;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use redact::{chain_in_words, describe_error, redacted_headers, without_query, TransportError};
use retry::{is_transient, is_transient_error, retry_after, Backoff};

use crate::http::limit::RateLimit;
use crate::http::window::Window;

/// How long an answer may stay silent (no byte read) before its request is abandoned and tried again,
/// unless `--stall-timeout` says otherwise. Generous: a registry on S3 can take minutes to commit a
/// large blob (a server-side copy) before it answers the upload's last PUT.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(300);

/// The two sides a run talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The registry the run copies into (or verifies, or plans against).
    Target,
    /// The source storage (an object store).
    Storage,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Target => "target",
            Side::Storage => "storage",
        }
    }
}

/// What bounds a run's requests, as the command line asked.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// `--max-requests-per-second`: every request, both sides together.
    pub requests_per_second: Option<f64>,
    /// `--max-bandwidth`: blob bytes copied per second.
    pub bytes_per_second: Option<u64>,
    /// Each side's window ceiling (`None`: no window on that side).
    pub target_ceiling: Option<usize>,
    pub storage_ceiling: Option<usize>,
    /// `--fixed-window`: keep each window at its ceiling.
    pub fixed_window: bool,
}

/// One run's HTTP state: limits, windows, the retry count and the request metrics.
#[derive(Default)]
pub struct Context {
    requests: Option<RateLimit>,
    bytes: Option<RateLimit>,
    target: Option<Window>,
    storage: Option<Window>,
    retries: AtomicU64,
    pub metrics: metrics::RequestMetrics,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http::Context({} retries)", self.retries())
    }
}

impl Context {
    pub fn new(limits: &Limits) -> Context {
        Context {
            requests: limits.requests_per_second.filter(|r| *r > 0.0).map(RateLimit::new),
            bytes: limits.bytes_per_second.filter(|r| *r > 0).map(|rate| RateLimit::new(rate as f64)),
            target: limits.target_ceiling.map(|ceiling| Window::new(ceiling, limits.fixed_window)),
            storage: limits.storage_ceiling.map(|ceiling| Window::new(ceiling, limits.fixed_window)),
            retries: AtomicU64::default(),
            metrics: metrics::RequestMetrics::default(),
        }
    }

    /// Requests tried again so far, both sides.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// A backoff whose waits count in this run's retries.
    pub fn backoff(&self) -> Backoff<'_> {
        Backoff::new(&self.retries)
    }

    /// The window of a side, if the run set one.
    pub fn window(&self, side: Side) -> Option<&Window> {
        match side {
            Side::Target => self.target.as_ref(),
            Side::Storage => self.storage.as_ref(),
        }
    }

    /// Waits for the right to copy `bytes` more blob bytes (`--max-bandwidth`).
    pub async fn copied(&self, bytes: usize) {
        if let Some(limit) = &self.bytes {
            limit.take(bytes as f64).await;
        }
    }
}

/// A `reqwest::Client` speaking for one side of a run, through the run's [`Context`].
#[derive(Clone)]
pub struct Client {
    inner: reqwest::Client,
    side: Side,
    context: Arc<Context>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http::Client({})", self.side.name())
    }
}

impl Client {
    pub fn new(inner: reqwest::Client, side: Side, context: Arc<Context>) -> Client {
        Client { inner, side, context }
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.context
    }

    pub fn request(&self, method: reqwest::Method, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.inner.request(method, url)
    }

    pub fn get(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.inner.get(url)
    }

    pub fn head(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.inner.head(url)
    }

    pub fn put(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.inner.put(url)
    }

    pub fn post(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.inner.post(url)
    }

    pub fn patch(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.inner.patch(url)
    }

    pub fn delete(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.inner.delete(url)
    }

    /// A backoff whose waits count in the run's retries.
    pub fn backoff(&self) -> Backoff<'_> {
        self.context.backoff()
    }

    /// Sends one request, the only way any request leaves (see the module's comment).
    pub async fn execute(
        &self,
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        if let Some(limit) = &self.context.requests {
            limit.take(1.0).await;
        }
        let (client, request) = request.build_split();
        let request = request?;
        let described = tracing::enabled!(tracing::Level::DEBUG).then(|| {
            format!("{} {} [{}]", request.method(), without_query(request.url()), redacted_headers(request.headers()))
        });
        let permit = match self.context.window(self.side) {
            Some(window) => Some(window.acquire().await),
            None => None,
        };
        let started = std::time::Instant::now();
        let outcome = client.execute(request).await;
        let elapsed = started.elapsed();
        if let Some(permit) = permit {
            permit.answered(window::signal_of(&outcome));
        }
        let status = match &outcome {
            Ok(response) => metrics::Status::Code(response.status().as_u16()),
            Err(_) => metrics::Status::Error,
        };
        self.context.metrics.record(self.side, operation, status, elapsed);
        if let Some(described) = described {
            tracing::debug!("{} {operation}: {described} -> {status} in {} ms", self.side.name(), elapsed.as_millis());
        }
        outcome
    }

    /// Sends a request (rebuilt by `build` for each try) until it gets an answer that is not transient,
    /// or the tries are used up (then the last answer or error is returned).
    pub async fn send_with_retries(
        &self,
        operation: &'static str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        let mut backoff = self.backoff();
        loop {
            let outcome = self.execute(operation, build()).await;
            let wait = match &outcome {
                Ok(response) if is_transient(response.status()) => Some(retry_after(response.headers())),
                Err(error) if is_transient_error(error) => Some(None),
                _ => None,
            };
            match wait {
                Some(wait) if backoff.wait(wait).await => continue,
                _ => return outcome,
            }
        }
    }

    /// `send_with_retries` for small answers read whole: an answer cut off in the middle of its body is
    /// asked for again too, in the same loop (one retry layer: each try is one request). Returns the
    /// final status and body.
    pub async fn fetch_with_retries(
        &self,
        operation: &'static str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> reqwest::Result<(reqwest::StatusCode, bytes::Bytes)> {
        let mut backoff = self.backoff();
        loop {
            let (outcome, wait) = match self.execute(operation, build()).await {
                Ok(response) if is_transient(response.status()) => {
                    let wait = retry_after(response.headers());
                    let status = response.status();
                    (response.bytes().await.map(|body| (status, body)), wait)
                }
                // Reading the body fails only when the answer was cut off or stalled (reqwest may call
                // that a decode error): ask again.
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
            if !backoff.wait(wait).await {
                return outcome;
            }
        }
    }
}
