//! An HTTP proxy that injects faults between rehydrate and a real server (the registry, the Harbor
//! emulator, or an object store): error statuses, throttling with `Retry-After`, S3's `SlowDown`,
//! connections reset in the middle of a body (the request's on uploads, the answer's on reads), and
//! answers that stall. Faults are deterministic: every Nth request that matches gets the next fault of
//! the plan, in turn, so a test knows what was injected.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};

pub type Body = BoxBody<Bytes, std::io::Error>;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (500, 502, 503...) and a registry-style error body.
    Status(u16),
    /// 429 with `Retry-After: 1`.
    Throttle,
    /// S3's 503 `SlowDown`, with its XML body.
    SlowDown,
    /// Break the connection in the middle of a body: after part of the request's body when it has one
    /// (an upload), else after part of the answer's body (a read), else before answering.
    Reset,
    /// Say nothing for this long, then close the connection.
    Stall(Duration),
    /// Stop in the middle of a body for this long, then break the connection: stop reading an upload
    /// halfway, or stop sending an answer halfway.
    StallMidBody(Duration),
}

impl Fault {
    pub fn name(&self) -> String {
        match self {
            Fault::Status(code) => code.to_string(),
            Fault::Throttle => "429".to_string(),
            Fault::SlowDown => "503 SlowDown".to_string(),
            Fault::Reset => "reset".to_string(),
            Fault::Stall(_) => "stall".to_string(),
            Fault::StallMidBody(_) => "stall mid-body".to_string(),
        }
    }
}

/// Every kind of fault a registry (or the load balancer before it) answers with, for a plan: error
/// statuses, throttling, a reset, a stall of `stall` before answering, and a stall of `stall_mid_body`
/// halfway through a body.
pub fn every_target_fault(stall: Duration, stall_mid_body: Duration) -> Vec<Fault> {
    vec![
        Fault::Status(500),
        Fault::Status(502),
        Fault::Status(503),
        Fault::Throttle,
        Fault::Reset,
        Fault::Stall(stall),
        Fault::StallMidBody(stall_mid_body),
    ]
}

/// What the proxy does and has done.
pub struct FaultState {
    /// Every Nth matching request gets a fault (0: none).
    pub every: u64,
    /// The faults, taken in turn.
    pub plan: Vec<Fault>,
    /// Only requests whose path starts with this are counted and faulted.
    pub path_prefix: String,
    /// Every Nth large body (an upload of at least `LARGE_BODY` bytes, or an answer that long to a GET)
    /// is broken off in the middle (0: never), whatever the plan, so that a test knows blob transfers
    /// themselves were cut. The next large body on a path just cut goes through: otherwise two uploads
    /// in lockstep could leave one of them cut at every try.
    pub large_body_reset_every: u64,
    /// Cut the upload body (PATCH or PUT into `/blobs/uploads/`) that carries the uploaded bytes past
    /// this count, once: the connection breaks there. What happened to the bytes of that request before
    /// the cut is `cut_upload_forwards`'.
    pub cut_upload_at: Option<u64>,
    /// Whether the cut request's bytes before the cut reach the server (which then holds a session at an
    /// offset its Location does not say: distribution cancels it) or are dropped (the session stays at
    /// the end of the previous request).
    pub cut_upload_forwards: bool,
    /// Answer every upload status request (GET on a session) as distribution answers for a session it
    /// no longer knows (expired, purged, or from before a restart with another secret): 404
    /// `BLOB_UPLOAD_UNKNOWN`.
    pub forget_upload_sessions: bool,
    /// Bytes received in upload bodies (PATCH and PUT into `/blobs/uploads/`), cut ones included.
    pub upload_bytes: u64,
    /// Faults injected, by name.
    pub injected: BTreeMap<String, u64>,
    /// Every request seen, faulted or not.
    pub requests: u64,
    /// Requests seen by "METHOD path", when a test asks for them (`Some`).
    pub paths: Option<BTreeMap<String, u64>>,
    /// Answers passed on, by "METHOD path STATUS", when a test asks for them (`Some`).
    pub answers: Option<BTreeMap<String, u64>>,
    /// The `Authorization` headers of the requests seen (`None` for a request without one), when a test
    /// asks for them (`Some`).
    pub authorizations: Option<Vec<Option<String>>>,
    /// Each request is held back this long before it is forwarded: a simulated round trip.
    pub delay: Duration,
    /// A server that sheds load: above this many requests in flight, each new one is answered 429
    /// (without `Retry-After`, as a rate-limiting proxy in front of Harbor does).
    pub max_in_flight: Option<usize>,
    /// Shed load as an S3 store does (503 SlowDown) rather than with a 429.
    pub shed_as_s3: bool,
    /// Until then every request is answered 503, as a proxy in front of a Harbor whose core (or
    /// database) is restarting answers: the emulator's stand-in for a restart.
    pub outage_until: Option<std::time::Instant>,
    /// Requests in flight now, the most seen at once, and the 429s sent for being over the limit.
    pub in_flight: usize,
    pub most_in_flight: usize,
    pub shed: u64,
    matching_requests: u64,
    /// Faults taken from the plan so far (the next one is `plan[plan_faults % len]`).
    plan_faults: u64,
    large_bodies: u64,
    /// Paths whose last large body was cut.
    cut_paths: std::collections::BTreeSet<String>,
}

/// The size from which a body is large (a blob's, not a manifest's).
pub const LARGE_BODY: u64 = 1 << 20;

impl FaultState {
    pub fn total_injected(&self) -> u64 {
        self.injected.values().sum()
    }

    /// The fault for the next matching request, if it gets one.
    fn next_fault(&mut self, path: &str) -> Option<Fault> {
        if self.every == 0 || self.plan.is_empty() || !path.starts_with(&self.path_prefix) {
            return None;
        }
        self.matching_requests += 1;
        if self.matching_requests % self.every != 0 {
            return None;
        }
        let fault = self.plan[(self.plan_faults as usize) % self.plan.len()];
        self.plan_faults += 1;
        *self.injected.entry(fault.name()).or_default() += 1;
        Some(fault)
    }

    /// Whether this large body (of `name`'s kind) is to be cut.
    fn cut_large_body(&mut self, name: &str, path: &str) -> bool {
        if self.large_body_reset_every == 0 {
            return false;
        }
        if self.cut_paths.remove(path) {
            return false;
        }
        self.large_bodies += 1;
        let cut = self.large_bodies % self.large_body_reset_every == 0;
        if cut {
            *self.injected.entry(name.to_string()).or_default() += 1;
            self.cut_paths.insert(path.to_string());
        }
        cut
    }
}

pub struct FaultProxy {
    pub url: String,
    pub state: Arc<Mutex<FaultState>>,
    _runtime: tokio::runtime::Runtime,
}

struct Shared {
    state: Arc<Mutex<FaultState>>,
    upstream: String,
    public: String,
    http: reqwest::Client,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (e.g. `http://127.0.0.1:5000`) injecting `plan` into every
    /// `every`th request under `path_prefix`.
    pub fn start(upstream: &str, path_prefix: &str, every: u64, plan: Vec<Fault>) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(FaultState {
            every,
            plan,
            path_prefix: path_prefix.to_string(),
            large_body_reset_every: 0,
            cut_upload_at: None,
            cut_upload_forwards: false,
            forget_upload_sessions: false,
            upload_bytes: 0,
            injected: BTreeMap::new(),
            requests: 0,
            paths: None,
            answers: None,
            authorizations: None,
            delay: Duration::ZERO,
            max_in_flight: None,
            outage_until: None,
            shed_as_s3: false,
            in_flight: 0,
            most_in_flight: 0,
            shed: 0,
            matching_requests: 0,
            plan_faults: 0,
            large_bodies: 0,
            cut_paths: Default::default(),
        }));
        let shared = Arc::new(Shared {
            state: state.clone(),
            upstream: upstream.trim_end_matches('/').to_string(),
            public: url.clone(),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        });
        runtime.spawn(serve(listener, move |request| {
            let shared = shared.clone();
            async move { handle(&shared, request).await }
        }));
        FaultProxy { url, state, _runtime: runtime }
    }

    pub fn stop_faults(&self) {
        self.state.lock().unwrap().every = 0;
    }
}

/// Serves HTTP/1 on `listener` with `handler`; a handler's error closes the connection unanswered.
pub async fn serve<F, Fut>(listener: tokio::net::TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<Body>, std::io::Error>> + Send,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(handler);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

pub fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let body = Full::new(body.into()).map_err(|never: Infallible| match never {}).boxed();
    Response::builder().status(status).header("content-type", content_type).body(body).unwrap()
}

pub fn registry_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    full(status, "application/json", serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string())
}

/// S3's answer to too many requests.
fn slow_down() -> Response<Body> {
    full(
        StatusCode::SERVICE_UNAVAILABLE,
        "application/xml",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
    )
}

/// Counts a request in flight until dropped.
struct InFlight(Arc<Mutex<FaultState>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
    let _in_flight = {
        let mut state = shared.state.lock().unwrap();
        if state.max_in_flight.is_some_and(|limit| state.in_flight >= limit) {
            state.shed += 1;
            if state.shed_as_s3 {
                return Ok(slow_down());
            }
            return Ok(registry_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", "too many requests in flight"));
        }
        if state.outage_until.is_some_and(|until| std::time::Instant::now() < until) {
            *state.injected.entry("outage 503".into()).or_default() += 1;
            return Ok(registry_error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "restarting"));
        }
        state.in_flight += 1;
        state.most_in_flight = state.most_in_flight.max(state.in_flight);
        InFlight(shared.state.clone())
    };
    let (fault, delay) = {
        let mut state = shared.state.lock().unwrap();
        state.requests += 1;
        if let Some(paths) = &mut state.paths {
            *paths.entry(format!("{} {}", request.method(), request.uri().path())).or_default() += 1;
        }
        if let Some(authorizations) = &mut state.authorizations {
            let value = request.headers().get(hyper::header::AUTHORIZATION);
            authorizations.push(value.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()));
        }
        (state.next_fault(request.uri().path()), state.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let reset = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset");
    let is_upload = [Method::PATCH, Method::PUT].contains(request.method())
        && request.uri().path().contains("/blobs/uploads/")
        && has_body(&request);
    match fault {
        None if body_length(&request) >= LARGE_BODY
            && shared.state.lock().unwrap().cut_large_body("reset mid-upload", request.uri().path()) =>
        {
            read_half_then_hang_up(request, Duration::ZERO).await
        }
        None if is_upload => upload_through(shared, request).await,
        None if request.method() == Method::GET
            && request.uri().path().contains("/blobs/uploads/")
            && shared.state.lock().unwrap().forget_upload_sessions =>
        {
            Ok(registry_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"))
        }
        None if request.method() == Method::GET => {
            let path = request.uri().path().to_string();
            let response = forward(&shared.http, &shared.upstream, Some(&shared.public), request).await;
            let length = response
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            if length >= LARGE_BODY && shared.state.lock().unwrap().cut_large_body("reset mid-download", &path) {
                return Ok(cut_in_half(response, Duration::ZERO).await);
            }
            Ok(response)
        }
        None => {
            let key = format!("{} {}", request.method(), request.uri().path());
            let response = forward(&shared.http, &shared.upstream, Some(&shared.public), request).await;
            record_answer(shared, &key, &response);
            Ok(response)
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap();
            Ok(registry_error(status, "UNAVAILABLE", "injected fault"))
        }
        Some(Fault::Throttle) => {
            let mut response = registry_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", "slow down");
            response.headers_mut().insert("retry-after", "1".parse().unwrap());
            Ok(response)
        }
        Some(Fault::SlowDown) => Ok(slow_down()),
        Some(Fault::Stall(time)) => {
            tokio::time::sleep(time).await;
            Err(reset())
        }
        Some(Fault::Reset) if has_body(&request) => read_half_then_hang_up(request, Duration::ZERO).await,
        Some(Fault::Reset) if request.method() == Method::GET => {
            let response = forward(&shared.http, &shared.upstream, Some(&shared.public), request).await;
            Ok(cut_in_half(response, Duration::ZERO).await)
        }
        Some(Fault::Reset) => Err(reset()),
        Some(Fault::StallMidBody(time)) if has_body(&request) => {
            let _ = read_half_then_hang_up(request, time).await;
            Err(reset())
        }
        Some(Fault::StallMidBody(time)) => {
            let response = forward(&shared.http, &shared.upstream, Some(&shared.public), request).await;
            Ok(cut_in_half(response, time).await)
        }
    }
}

/// Counts an answer passed on, when the test asks for answers.
fn record_answer(shared: &Shared, request: &str, response: &Response<Body>) {
    if let Some(answers) = &mut shared.state.lock().unwrap().answers {
        *answers.entry(format!("{request} {}", response.status().as_u16())).or_default() += 1;
    }
}

/// Forwards an upload body, counting its bytes, and cuts it where `cut_upload_at` says (once).
async fn upload_through(shared: &Shared, request: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
    let key = format!("{} {}", request.method(), request.uri().path());
    let (parts, body) = request.into_parts();
    let state = shared.state.clone();
    let cut_seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cut = cut_seen.clone();
    let counted = http_body_util::BodyDataStream::new(body).map(move |piece| {
        let piece = piece.map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut state = state.lock().unwrap();
        state.upload_bytes += piece.len() as u64;
        match state.cut_upload_at {
            Some(at) if state.upload_bytes > at => {
                state.cut_upload_at = None;
                *state.injected.entry("cut upload".to_string()).or_default() += 1;
                state.upload_bytes = at;
                cut.store(true, std::sync::atomic::Ordering::SeqCst);
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected cut"))
            }
            _ => Ok(piece),
        }
    });
    let forwards = shared.state.lock().unwrap().cut_upload_forwards;
    if forwards {
        // The server gets every byte before the cut, then a broken body.
        let body = BodyExt::boxed(StreamBody::new(counted.map(|piece| piece.map(Frame::data))));
        let response = forward_parts(&shared.http, &shared.upstream, Some(&shared.public), parts, body).await;
        if cut_seen.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected cut"));
        }
        record_answer(shared, &key, &response);
        return Ok(response);
    }
    // The body is read whole first: a cut one never reaches the server.
    let pieces: Vec<std::io::Result<Bytes>> = counted.collect().await;
    if pieces.iter().any(Result::is_err) {
        return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected cut"));
    }
    let whole = futures::stream::iter(pieces.into_iter().map(|piece| piece.map(Frame::data)));
    let body = BodyExt::boxed(StreamBody::new(whole));
    let response = forward_parts(&shared.http, &shared.upstream, Some(&shared.public), parts, body).await;
    record_answer(shared, &key, &response);
    Ok(response)
}

fn body_length(request: &Request<Incoming>) -> u64 {
    request.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0)
}

fn has_body(request: &Request<Incoming>) -> bool {
    body_length(request) > 0 || request.headers().contains_key("transfer-encoding")
}

/// Takes about half of the request's body (at least its first piece), stops reading for `stall`, then
/// breaks the connection.
async fn read_half_then_hang_up(request: Request<Incoming>, stall: Duration) -> Result<Response<Body>, std::io::Error> {
    let half = body_length(&request) / 2;
    let mut body = request.into_body();
    let mut read = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        read += frame.data_ref().map(|d| d.len() as u64).unwrap_or(0);
        if read >= half {
            break;
        }
    }
    tokio::time::sleep(stall).await;
    Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset"))
}

/// The answer's headers (with its full length) and the first half of its body, then silence for
/// `stall`, then a broken connection.
async fn cut_in_half(response: Response<Body>, stall: Duration) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    let broken = async move {
        tokio::time::sleep(stall).await;
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset"))
    };
    let pieces = futures::stream::once(async move { Ok(Frame::data(half)) }).chain(futures::stream::once(broken));
    Response::from_parts(parts, BodyExt::boxed(StreamBody::new(pieces)))
}

/// Forwards a request to `upstream`, streaming both bodies. A `Location` pointing at the upstream is
/// rewritten to `public` (the proxy's own address), so that upload sessions keep going through it.
pub async fn forward(
    http: &reqwest::Client,
    upstream: &str,
    public: Option<&str>,
    request: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = body.map_err(|e| std::io::Error::other(e.to_string())).boxed();
    forward_parts(http, upstream, public, parts, body).await
}

pub async fn forward_parts(
    http: &reqwest::Client,
    upstream: &str,
    public: Option<&str>,
    parts: hyper::http::request::Parts,
    body: Body,
) -> Response<Body> {
    let target = format!("{upstream}{}", parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut outgoing = http.request(parts.method.clone(), target);
    for (name, value) in &parts.headers {
        if name != "host" {
            outgoing = outgoing.header(name, value);
        }
    }
    let stream = http_body_util::BodyDataStream::new(body);
    let answer = match outgoing.body(reqwest::Body::wrap_stream(stream)).send().await {
        Ok(answer) => answer,
        Err(error) => return registry_error(StatusCode::BAD_GATEWAY, "BAD_GATEWAY", &error.to_string()),
    };
    let mut builder = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        match (name.as_str(), public, value.to_str()) {
            ("location", Some(public), Ok(location)) if location.starts_with(upstream) => {
                builder = builder.header(name, location.replacen(upstream, public, 1));
            }
            _ => builder = builder.header(name, value),
        }
    }
    let stream =
        answer.bytes_stream().map(|chunk| chunk.map(Frame::data).map_err(|e| std::io::Error::other(e.to_string())));
    builder.body(BodyExt::boxed(StreamBody::new(stream))).unwrap()
}
