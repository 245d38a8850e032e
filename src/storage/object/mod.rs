//! Object stores: S3 (and S3-compatible stores), Google Cloud Storage and Azure Blob, one file each, all
//! behind the two verbs the scan needs: list one page (prefix, delimiter, start-after, page token) and
//! read one small object.
//!
//! Credentials, signing and their environment variables come from `object_store` (its builders read the
//! same `AWS_*`, `GOOGLE_*` and `AZURE_*` variables as the clouds' own tools, and its authorizers sign).
//! The list and read requests themselves are built here, because `object_store`'s typed listing falls
//! short for this job (see `docs/storage-backends.md`): it refuses whole pages holding keys that are not
//! valid `Path`s (`//`, a leading `/` as distribution 2.8 wrote on Azure), it cannot read an Azure blob
//! whose name starts with `/`, and it does not expose the Content-MD5 that Azure and GCS list, which
//! saves one read per tag.

mod aws_credentials;
pub mod azure;
pub mod gcs;
pub mod ranged;
pub mod s3;

use std::sync::Arc;
use std::time::Duration;

use object_store::CredentialProvider;

use thiserror::Error;

/// One object in a listing, with the MD5 of its content when the store lists it (S3 single-part ETag,
/// GCS `md5Hash`, Azure `Content-MD5`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub md5: Option<[u8; 16]>,
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    /// Common prefixes (with `delimiter`), each ending with the delimiter as the store returned it.
    pub prefixes: Vec<String>,
    /// Where the next page starts; `None` on the last page.
    pub next_token: Option<String>,
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListRequest<'a> {
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    /// Only keys after this one (exclusive), where the store supports it.
    pub start_after: Option<&'a str>,
    pub page_token: Option<&'a str>,
    pub max_keys: Option<usize>,
}

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{operation} {target}: HTTP {status}: {message}")]
    Http { operation: &'static str, target: String, status: u16, message: String, retry_after: Option<Duration> },
    #[error("{operation} {target}: {source}")]
    Transport { operation: &'static str, target: String, source: crate::http::TransportError },
    /// A file of the source on disk could not be read.
    #[error("{operation} {target}: {source}")]
    Io { operation: &'static str, target: String, source: std::io::Error },
    /// No answer, or none in time (a refused or reset connection, a stall): worth trying again.
    #[error("{operation} {target}: {source}")]
    Unanswered { operation: &'static str, target: String, source: crate::http::TransportError },
    /// The answer started but broke off (a reset or stalled connection): worth trying again.
    #[error("{operation} {target}: the answer broke off: {source}")]
    Interrupted { operation: &'static str, target: String, source: crate::http::TransportError },
    #[error("{operation} {target}: unreadable answer: {message}")]
    Parse { operation: &'static str, target: String, message: String },
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("configuration: {0}")]
    Config(String),
}

impl StorageError {
    /// Whether trying again can help (429, 5xx, no answer, an answer that broke off), and how long the
    /// store asked to wait (its `Retry-After`).
    fn retry(&self) -> Option<Option<Duration>> {
        match self {
            StorageError::Http { status, retry_after, .. } if *status == 429 || *status >= 500 => Some(*retry_after),
            StorageError::Unanswered { .. } | StorageError::Interrupted { .. } => Some(None),
            _ => None,
        }
    }
}

/// Which cloud a source names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    S3,
    Gcs,
    Azure,
}

/// How to reach an object store, beyond what its environment variables say.
#[derive(Debug, Clone, Default)]
pub struct ObjectOptions {
    /// A custom endpoint (MinIO, Ceph, an emulator...), e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Send no credentials at all (public buckets, emulators).
    pub anonymous: bool,
    /// How long a read may wait for a byte before the request is retried (`None`: the default).
    pub stall_timeout: Option<Duration>,
    /// The run's HTTP state (limits, the storage window, retries, request metrics).
    pub http: std::sync::Arc<crate::http::Context>,
}

/// A connected object store.
pub enum ObjectBackend {
    S3(s3::S3),
    Gcs(gcs::Gcs),
    Azure(azure::Azure),
}

impl ObjectBackend {
    pub async fn connect(cloud: Cloud, bucket: &str, options: &ObjectOptions) -> Result<ObjectBackend, StorageError> {
        Ok(match cloud {
            Cloud::S3 => ObjectBackend::S3(s3::S3::connect(bucket, options).await?),
            Cloud::Gcs => ObjectBackend::Gcs(gcs::Gcs::connect(bucket, options)?),
            Cloud::Azure => ObjectBackend::Azure(azure::Azure::connect(bucket, options)?),
        })
    }

    /// The HTTP client the store's requests go through.
    fn client(&self) -> &crate::http::Client {
        match self {
            ObjectBackend::S3(store) => &store.client,
            ObjectBackend::Gcs(store) => &store.client,
            ObjectBackend::Azure(store) => &store.client,
        }
    }

    pub async fn list(&self, request: &ListRequest<'_>) -> Result<ListPage, StorageError> {
        retrying(self.client(), || async {
            match self {
                ObjectBackend::S3(store) => store.list(request).await,
                ObjectBackend::Gcs(store) => store.list(request).await,
                ObjectBackend::Azure(store) => store.list(request).await,
            }
        })
        .await
    }

    /// One GET of the bytes `span` of an object (a ranged read unless it is the whole object).
    async fn get(&self, key: &str, span: Span) -> Result<Option<reqwest::Response>, StorageError> {
        match self {
            ObjectBackend::S3(store) => store.get(key, span).await,
            ObjectBackend::Gcs(store) => store.get(key, span).await,
            ObjectBackend::Azure(store) => store.get(key, span).await,
        }
    }

    /// Reads an object, refusing more than `max_len` bytes (it returns `max_len + 1` then, so that the
    /// caller can tell); `None` when it does not exist.
    pub async fn read_small(&self, key: &str, max_len: usize) -> Result<Option<Vec<u8>>, StorageError> {
        retrying(self.client(), || async {
            match self.get(key, Span::from(0)).await? {
                Some(response) => small_body(key, response, max_len).await.map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    /// Key prefixes under which a registry may have written its keys, for a root inside the bucket:
    /// Azure also gets the leading-slash form that distribution 2.8 wrote.
    pub fn root_variants(&self, root: &str) -> Vec<String> {
        match self {
            ObjectBackend::Azure(_) => vec![root.to_string(), format!("/{root}")],
            _ => vec![root.to_string()],
        }
    }
}

/// The current credential of a signed store (`object_store` caches and refreshes it); `None` for anonymous
/// access. `nothing_named` is the one line to give instead of the provider's error when nothing named a
/// credential (the metadata service was the last resort): what was looked for, and how to provide it.
pub(crate) async fn current_credential<C>(
    provider: Option<&Arc<dyn CredentialProvider<Credential = C>>>,
    nothing_named: Option<&'static str>,
) -> Result<Option<Arc<C>>, StorageError> {
    let Some(provider) = provider else { return Ok(None) };
    provider
        .get_credential()
        .await
        .map(Some)
        .map_err(|e| StorageError::Credentials(nothing_named.map_or_else(|| e.to_string(), str::to_string)))
}

/// Sends one request (no retry: `retrying` around the whole read is the one retry layer). `target`
/// names what is asked for in errors (a key or prefix; never a URL with a query, which could carry a SAS
/// token).
pub(crate) async fn send(
    client: &crate::http::Client,
    operation: &'static str,
    target: &str,
    request: impl std::future::Future<Output = Result<reqwest::RequestBuilder, StorageError>>,
) -> Result<reqwest::Response, StorageError> {
    client.execute(operation, request.await?).await.map_err(|error| {
        let (target, transient) = (target.to_string(), crate::http::retry::is_transient_error(&error));
        let source = crate::http::TransportError::new(error);
        if transient {
            StorageError::Unanswered { operation, target, source }
        } else {
            StorageError::Transport { operation, target, source }
        }
    })
}

/// The one retry loop of every storage read: runs `attempt` (a request and the reading of its answer)
/// again after failures worth trying again (429, 5xx, S3's `SlowDown`, no answer, an answer that broke
/// off), with backoff and the store's `Retry-After`, up to `http::retry::ATTEMPTS` tries.
async fn retrying<T, F, Fut>(client: &crate::http::Client, attempt: F) -> Result<T, StorageError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, StorageError>>,
{
    let mut backoff = client.backoff();
    loop {
        match attempt().await {
            Err(error) => match error.retry() {
                Some(wait) if backoff.wait(wait).await => continue,
                _ => return Err(error),
            },
            done => return done,
        }
    }
}

/// The bytes of an object a GET asks for: from `start` to `end` (exclusive), or to the object's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: Option<u64>,
}

impl Span {
    /// From byte `start` to the end of the object (the whole object from 0).
    pub fn from(start: u64) -> Span {
        Span { start, end: None }
    }

    /// The `Range` header asking for it; `None` for a whole object.
    pub fn header(&self) -> Option<String> {
        match self.end {
            Some(end) => Some(format!("bytes={}-{}", self.start, end.saturating_sub(1))),
            None if self.start > 0 => Some(format!("bytes={}-", self.start)),
            None => None,
        }
    }
}

/// Asks for the bytes of `span` (nothing to add for a whole object).
pub(crate) fn with_range(request: &mut object_store::client::HttpRequest, span: Span) {
    if let Some(range) = span.header() {
        let range = http::HeaderValue::from_str(&range).expect("digits are a valid header");
        request.headers_mut().insert(http::header::RANGE, range);
    }
}

/// A stream of bytes read from storage.
pub type ByteStream = std::pin::Pin<Box<dyn futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

/// A GET's answer: `None` for 404, an error for any other failure.
pub(crate) async fn found(
    target: &str,
    response: reqwest::Response,
) -> Result<Option<reqwest::Response>, StorageError> {
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    check_status("read", target, response).await.map(Some)
}

/// Turns a non-success answer into an error carrying its status and the start of its body.
pub(crate) async fn check_status(
    operation: &'static str,
    target: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response, StorageError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let retry_after = crate::http::retry::retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    let message: String = body.chars().take(300).collect();
    Err(StorageError::Http { operation, target: target.to_string(), status, message, retry_after })
}

/// The body of a listing's answer, as text; an error for a failed listing.
pub(crate) async fn listing_text(prefix: &str, response: reqwest::Response) -> Result<String, StorageError> {
    let response = check_status("list", prefix, response).await?;
    response.text().await.map_err(|e| broke_off("list", prefix, e))
}

/// An answer that started and broke off while its body was read.
pub(crate) fn broke_off(operation: &'static str, target: &str, error: reqwest::Error) -> StorageError {
    StorageError::Interrupted { operation, target: target.to_string(), source: crate::http::TransportError::new(error) }
}

/// Reads the body of a successful answer to a small-object read, refusing more than `max_len` bytes.
pub(crate) async fn small_body(
    target: &str,
    mut response: reqwest::Response,
    max_len: usize,
) -> Result<Vec<u8>, StorageError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| broke_off("read", target, error))? {
        body.extend_from_slice(&chunk);
        if body.len() > max_len {
            body.truncate(max_len + 1);
            break;
        }
    }
    Ok(body)
}

/// Decodes an MD5 given as 32 hex characters (S3 ETags, quoted or not); `None` for anything else
/// (multipart ETags end in `-N`, encrypted objects have other ETags).
pub(crate) fn md5_from_hex_etag(etag: &str) -> Option<[u8; 16]> {
    let hex_text = etag.trim_matches('"');
    let mut md5 = [0u8; 16];
    hex::decode_to_slice(hex_text, &mut md5).ok()?;
    Some(md5)
}

/// Decodes an MD5 given in base64 (GCS `md5Hash`, Azure `Content-MD5`).
pub(crate) fn md5_from_base64(text: &str) -> Option<[u8; 16]> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

/// Percent-encodes a key for use as a URL path, keeping `/` as the separator.
pub(crate) fn encode_key_path(key: &str) -> String {
    const PATH: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(key, PATH).to_string()
}

/// Builds an `http::Request` for `object_store`'s authorizers from a URL and method.
pub(crate) fn http_request(method: http::Method, url: &url::Url) -> object_store::client::HttpRequest {
    let mut request = object_store::client::HttpRequest::new(object_store::client::HttpRequestBody::empty());
    *request.method_mut() = method;
    *request.uri_mut() = url.as_str().parse().expect("a valid URL is a valid URI");
    request
}

/// Turns a signed `http::Request` (no body) back into a reqwest request.
pub(crate) fn to_reqwest(
    client: &crate::http::Client,
    request: object_store::client::HttpRequest,
) -> reqwest::RequestBuilder {
    let (parts, _) = request.into_parts();
    client.request(parts.method, parts.uri.to_string()).headers(parts.headers)
}

/// The HTTP client for a store: TLS verified; a read that stalls longer than the stall timeout fails
/// (and is retried). No limit on a whole request: a blob of many GiB takes as long as it takes.
pub(crate) fn http_client(options: &ObjectOptions) -> Result<crate::http::Client, StorageError> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(options.stall_timeout.unwrap_or(crate::http::DEFAULT_STALL_TIMEOUT))
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|error| StorageError::Config(error.to_string()))?;
    Ok(crate::http::Client::new(client, crate::http::Side::Storage, options.http.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_decoding() {
        let md5 = md5_from_hex_etag("\"0123456789abcdef0123456789abcdef\"").unwrap();
        assert_eq!(md5[0], 0x01);
        assert!(md5_from_hex_etag("\"0123456789abcdef0123456789abcdef-2\"").is_none());
        assert!(md5_from_hex_etag("0x8DC1234").is_none());
        assert_eq!(md5_from_base64("ASNFZ4mrze8BI0VniavN7w==").unwrap(), md5);
        assert!(md5_from_base64("AAAA").is_none());
    }

    #[test]
    fn keys_are_encoded_as_paths() {
        assert_eq!(encode_key_path("/docker/a b/c+d"), "/docker/a%20b/c%2Bd");
        assert_eq!(
            encode_key_path("x/_manifests/tags/v1.0-rc_1/current/link"),
            "x/_manifests/tags/v1.0-rc_1/current/link"
        );
    }
}
