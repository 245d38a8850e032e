//! The distribution API calls a copy needs, each one small and named (after go-containerregistry's
//! `remote` write path): HEAD a manifest or blob, mount, start an upload, upload (monolithic or chunked),
//! PUT a manifest, GET a manifest. Errors carry the registry's error codes so callers can decide.

use std::fmt;

use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use thiserror::Error;
use tokio::sync::Mutex;
use url::Url;

use super::auth::{parse_challenge, repository_scope, AuthError, Challenge, TokenCache};
use super::credentials::Credentials;
pub use super::error_code::ErrorCode;
use super::refusal::{self, RefusalClass};
use crate::layout::Digest;

/// Every manifest media type a copy may meet, for `Accept`.
pub const MANIFEST_ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5";

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("{operation} {target}: HTTP {status}{}", describe_codes(codes))]
    Status {
        operation: &'static str,
        target: String,
        status: u16,
        codes: Vec<ErrorCode>,
        /// The wait the registry asked for (`Retry-After`), if any.
        retry_after: Option<std::time::Duration>,
    },
    #[error("{operation} {target}: {source}")]
    Transport { operation: &'static str, target: String, source: crate::http::TransportError },
    #[error("{operation} {target}: {message}")]
    Protocol { operation: &'static str, target: String, message: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
}

fn describe_codes(codes: &[ErrorCode]) -> String {
    codes.iter().map(|c| format!(" {}: {}", c.code, c.message)).collect::<Vec<_>>().join(";")
}

impl RegistryError {
    /// True when the registry answered with this error code (e.g. `MANIFEST_BLOB_UNKNOWN`).
    pub fn has_code(&self, code: &str) -> bool {
        matches!(self, RegistryError::Status { codes, .. } if codes.iter().any(|c| c.code == code))
    }

    /// The wait the registry asked for before another try.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The class of Harbor policy that refused the request, if one did.
    pub fn refusal(&self) -> Option<RefusalClass> {
        match self {
            RegistryError::Status { status, codes, .. } => refusal::classify(*status, codes),
            _ => None,
        }
    }

    /// The error in the operator's words: a permission refusal also names the robot right Harbor's
    /// words ask for.
    pub fn explained(&self) -> String {
        let message = self.to_string();
        match (self.refusal(), refusal::right_asked_for(&message)) {
            (Some(RefusalClass::Permission), Some(right)) => {
                format!("{message} (a robot needs Harbor's '{right}' right)")
            }
            _ => message,
        }
    }

    /// A manifest GET or HEAD refused by a pull-side policy: the artifact exists.
    pub fn is_pull_blocked(&self) -> bool {
        matches!(self, RegistryError::Status { status, codes, .. } if refusal::is_pull_blocked_by_policy(*status, codes))
    }
}

/// What a mount attempt gave.
#[derive(Debug)]
pub enum Mount {
    /// 201: the blob is now in the repository.
    Mounted,
    /// 202: the registry opened an ordinary upload instead; here is where to send the bytes.
    Upload(Url),
}

/// The next page a `Link: <...>; rel="next"` header names, relative to `url`.
fn next_page(url: &Url, headers: &HeaderMap) -> Option<Url> {
    let link = headers.get("link")?.to_str().ok()?;
    let (target, relation) = link.split_once(';')?;
    relation.contains("rel=\"next\"").then(|| url.join(target.trim().trim_matches(['<', '>']))).and_then(Result::ok)
}

/// A registry's `/v2/` API, with its authentication.
pub struct RegistryClient {
    base: Url,
    http: crate::http::Client,
    tokens: TokenCache,
    /// How the registry asked to be authenticated, learned from its first 401.
    challenge: Mutex<Option<Challenge>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorCode>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegistryClient({})", self.base)
    }
}

impl RegistryClient {
    pub fn new(base: Url, http: crate::http::Client, credentials: Option<Credentials>) -> RegistryClient {
        RegistryClient { base, tokens: TokenCache::new(http.clone(), credentials), http, challenge: Mutex::new(None) }
    }

    /// The HTTP client the target's requests go through.
    pub fn http(&self) -> &crate::http::Client {
        &self.http
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("registry paths are valid")
    }

    /// Adds what the registry asked for (basic credentials or a bearer token for `scopes`).
    async fn authorize(&self, request: RequestBuilder, scopes: &[String]) -> Result<RequestBuilder, RegistryError> {
        let challenge = self.challenge.lock().await.clone();
        Ok(match challenge {
            Some(Challenge::Basic) => match self.tokens.credentials() {
                Some(c) => request.basic_auth(&c.username, Some(c.password())),
                None => request,
            },
            Some(Challenge::Bearer { realm, service }) => {
                let token = self.tokens.get(&realm, service.as_deref(), scopes).await?;
                request.bearer_auth(token)
            }
            None => request,
        })
    }

    /// Sends a request (rebuilt by `build` for each attempt): authenticated for `scopes`, answering a 401
    /// challenge once, retrying connection failures, 429 and 5xx a few times with backoff.
    async fn send(
        &self,
        operation: &'static str,
        target: &str,
        scopes: &[String],
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut answered_challenge = false;
        let mut backoff = self.http.backoff();
        loop {
            let request = self.authorize(build(), scopes).await?;
            let outcome = self.http.execute(operation, request).await;
            let (transient, retry_after) = match &outcome {
                Ok(response) => (
                    crate::http::retry::is_transient(response.status()),
                    crate::http::retry::retry_after(response.headers()),
                ),
                Err(error) => (crate::http::retry::is_transient_error(error), None),
            };
            if transient && backoff.wait(retry_after).await {
                continue;
            }
            let response = outcome.map_err(|e| RegistryError::Transport {
                operation,
                target: target.to_string(),
                source: crate::http::TransportError::new(e),
            })?;
            if response.status() == StatusCode::UNAUTHORIZED && !answered_challenge {
                if let Some(challenge) =
                    response.headers().get(WWW_AUTHENTICATE).and_then(|h| h.to_str().ok()).and_then(parse_challenge)
                {
                    let known = self.challenge.lock().await.replace(challenge.clone());
                    answered_challenge = true;
                    // A token we sent was refused (expired, or issued before its project existed): drop it.
                    if known.is_some() {
                        if let Challenge::Bearer { realm, service } = &challenge {
                            self.tokens.fetch(realm, service.as_deref(), scopes).await?;
                        }
                    }
                    continue;
                }
            }
            if response.status() == StatusCode::UNAUTHORIZED {
                let (response, database_down) = Self::read_unauthorized(response).await;
                if database_down && backoff.wait(None).await {
                    continue;
                }
                return Ok(response);
            }
            return Ok(response);
        }
    }

    /// A 401 read whole (it is small), and whether it is worth another try: its words say Harbor's
    /// database is away rather than refusing anything. The answer is given back as it came. (A HEAD's
    /// 401 has no words: the HEADs ask again by GET to learn which it is.)
    async fn read_unauthorized(response: Response) -> (Response, bool) {
        let (status, version, headers) = (response.status(), response.version(), response.headers().clone());
        let body = response.bytes().await.unwrap_or_default();
        let database_down = refusal::is_database_unavailable(&String::from_utf8_lossy(&body));
        let mut rebuilt = http::Response::builder().status(status).version(version);
        if let Some(all) = rebuilt.headers_mut() {
            *all = headers;
        }
        (Response::from(rebuilt.body(body).expect("the parts of a valid answer")), database_down)
    }

    /// Turns a non-success answer into an error with the registry's codes.
    async fn fail(operation: &'static str, target: &str, response: Response) -> RegistryError {
        let status = response.status().as_u16();
        let retry_after = crate::http::retry::retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        let codes = serde_json::from_str::<ErrorBody>(&text).map(|b| b.errors).unwrap_or_default();
        let codes = if codes.is_empty() && !text.trim().is_empty() {
            vec![ErrorCode { code: "HTTP".to_string(), message: text.chars().take(200).collect() }]
        } else {
            codes
        };
        RegistryError::Status { operation, target: target.to_string(), status, codes, retry_after }
    }

    /// From now on, one token serves every scope set with the same `key` (see `TokenCache::share_by`).
    pub fn share_tokens_by(&self, key: super::auth::TokenKey) {
        self.tokens.share_by(key);
    }

    /// Fetches the token a push into `repository` will ask for, if the registry wants tokens and has
    /// none cached for it: so that it can be asked for beside other work. A failure is left to the push,
    /// which asks again and says why.
    pub async fn warm_token(&self, repository: &str) {
        let challenge = self.challenge.lock().await.clone();
        if let Some(Challenge::Bearer { realm, service }) = challenge {
            let scopes = [repository_scope(repository, "pull,push")];
            let _ = self.tokens.get(&realm, service.as_deref(), &scopes).await;
        }
    }

    /// Forgets the tokens naming `project` (just created: Harbor ignores tokens issued before).
    pub async fn forget_tokens_for(&self, project: &str) {
        self.tokens.forget_project(project).await;
    }

    /// `GET /v2/`: reachable, and which authentication it wants. Fails on refused credentials.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let url = self.url("/v2/");
        let response = self.send("ping", "/v2/", &[], || self.http.get(url.clone())).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Self::fail("ping", "/v2/", response).await)
        }
    }

    /// The digest a tag (or digest) resolves to on the registry; `None` when it is unknown.
    pub async fn manifest_digest(&self, repository: &str, reference: &str) -> Result<Option<Digest>, RegistryError> {
        let target = format!("{repository}:{reference}");
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let scopes = [repository_scope(repository, "pull")];
        let response = self
            .send("HEAD manifest", &target, &scopes, || self.http.head(url.clone()).header(ACCEPT, MANIFEST_ACCEPT))
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                let header =
                    response.headers().get("docker-content-digest").and_then(|h| h.to_str().ok()).map(Digest::parse);
                match header {
                    Some(Ok(digest)) => Ok(Some(digest)),
                    // No (or a bad) digest header: read the manifest and hash it ourselves.
                    _ => {
                        Ok(self.get_manifest(repository, reference).await?.map(|(_, bytes)| Digest::sha256_of(&bytes)))
                    }
                }
            }
            // A HEAD's 401 has no body to say why (no right, or Harbor's database away for a moment):
            // the same manifest's GET says it, and is tried again while the database is away.
            StatusCode::UNAUTHORIZED => {
                Ok(self.get_manifest(repository, reference).await?.map(|(_, bytes)| Digest::sha256_of(&bytes)))
            }
            _ => Err(Self::fail("HEAD manifest", &target, response).await),
        }
    }

    /// A manifest's media type and bytes; `None` when it is unknown.
    pub async fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<(String, Bytes)>, RegistryError> {
        let target = format!("{repository}:{reference}");
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let scopes = [repository_scope(repository, "pull")];
        let response = self
            .send("GET manifest", &target, &scopes, || self.http.get(url.clone()).header(ACCEPT, MANIFEST_ACCEPT))
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                let media_type = content_type(response.headers());
                let bytes = response.bytes().await.map_err(|e| RegistryError::Transport {
                    operation: "GET manifest",
                    target: target.clone(),
                    source: crate::http::TransportError::new(e),
                })?;
                Ok(Some((media_type, bytes)))
            }
            _ => Err(Self::fail("GET manifest", &target, response).await),
        }
    }

    /// PUTs a manifest with its exact bytes and media type, under a tag or its digest.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), RegistryError> {
        let target = format!("{repository}:{reference}");
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let scopes = [repository_scope(repository, "pull,push")];
        let response = self
            .send("PUT manifest", &target, &scopes, || {
                self.http.put(url.clone()).header(CONTENT_TYPE, media_type).body(bytes.clone())
            })
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Self::fail("PUT manifest", &target, response).await)
        }
    }

    /// Deletes a manifest by digest (a registry removes every tag pointing at it too).
    pub async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<(), RegistryError> {
        let target = format!("{repository}@{digest}");
        let url = self.url(&format!("/v2/{repository}/manifests/{digest}"));
        let scopes = [repository_scope(repository, "delete")];
        let response = self.send("DELETE manifest", &target, &scopes, || self.http.delete(url.clone())).await?;
        match response.status() {
            status if status.is_success() => Ok(()),
            _ => Err(Self::fail("DELETE manifest", &target, response).await),
        }
    }

    /// Every tag of a repository (`tags/list`, page by page); none for an unknown repository.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let scopes = [repository_scope(repository, "pull")];
        let mut tags = Vec::new();
        let mut next = Some(self.url(&format!("/v2/{repository}/tags/list?n=1000")));
        while let Some(url) = next.take() {
            let response = self.send("GET tags", repository, &scopes, || self.http.get(url.clone())).await?;
            match response.status() {
                StatusCode::NOT_FOUND => return Ok(tags),
                status if status.is_success() => {}
                _ => return Err(Self::fail("GET tags", repository, response).await),
            }
            next = next_page(&url, response.headers());
            let page: TagList = response.json().await.map_err(|e| RegistryError::Protocol {
                operation: "GET tags",
                target: repository.to_string(),
                message: e.to_string(),
            })?;
            tags.extend(page.tags.unwrap_or_default());
        }
        Ok(tags)
    }

    /// HEAD on a blob: true when the registry says it has it in this repository.
    pub async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let target = format!("{repository}@{digest}");
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let scopes = [repository_scope(repository, "pull,push")];
        let response = self.send("HEAD blob", &target, &scopes, || self.http.head(url.clone())).await?;
        let (operation, response) = match response.status() {
            // No words to say why (no right, or Harbor's database away for a moment): the blob's first
            // byte by GET says it, and is tried again while the database is away.
            StatusCode::UNAUTHORIZED => {
                let first_byte = || self.http.get(url.clone()).header(reqwest::header::RANGE, "bytes=0-0");
                ("GET blob", self.send("GET blob", &target, &scopes, first_byte).await?)
            }
            _ => ("HEAD blob", response),
        };
        match response.status() {
            StatusCode::NOT_FOUND => Ok(false),
            status if status.is_success() => Ok(true),
            _ => Err(Self::fail(operation, &target, response).await),
        }
    }

    /// Asks the registry to mount a blob from another repository (one token with pull on `from`).
    pub async fn mount_blob(&self, repository: &str, digest: &Digest, from: &str) -> Result<Mount, RegistryError> {
        let target = format!("{repository}@{digest}");
        let mut url = self.url(&format!("/v2/{repository}/blobs/uploads/"));
        url.query_pairs_mut().append_pair("mount", digest.as_str()).append_pair("from", from);
        let scopes = [repository_scope(repository, "pull,push"), repository_scope(from, "pull")];
        let response = self
            .send("mount blob", &target, &scopes, || self.http.post(url.clone()).header(CONTENT_LENGTH, "0"))
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Upload(self.location("mount blob", &target, &response)?)),
            _ => Err(Self::fail("mount blob", &target, response).await),
        }
    }

    /// Opens an upload session; returns where to send the bytes.
    pub async fn start_upload(&self, repository: &str) -> Result<Url, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/blobs/uploads/"));
        let scopes = [repository_scope(repository, "pull,push")];
        let response = self
            .send("start upload", repository, &scopes, || self.http.post(url.clone()).header(CONTENT_LENGTH, "0"))
            .await?;
        if response.status() == StatusCode::ACCEPTED {
            self.location("start upload", repository, &response)
        } else {
            Err(Self::fail("start upload", repository, response).await)
        }
    }

    fn location(&self, operation: &'static str, target: &str, response: &Response) -> Result<Url, RegistryError> {
        let location =
            response.headers().get(LOCATION).and_then(|h| h.to_str().ok()).ok_or_else(|| RegistryError::Protocol {
                operation,
                target: target.to_string(),
                message: "the answer has no Location".to_string(),
            })?;
        self.base.join(location).map_err(|e| RegistryError::Protocol {
            operation,
            target: target.to_string(),
            message: format!("bad Location: {e}"),
        })
    }

    /// Sends a request that carries part of a blob once, authenticated for `repository`: a body that was
    /// partly sent is never sent again as if nothing had gone (the upload asks the target where it
    /// stands instead, see `upload_status`).
    async fn send_body_once(
        &self,
        operation: &'static str,
        repository: &str,
        target: &str,
        request: RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let scopes = [repository_scope(repository, "pull,push")];
        self.http.execute(operation, self.authorize(request, &scopes).await?).await.map_err(|e| {
            RegistryError::Transport {
                operation,
                target: target.to_string(),
                source: crate::http::TransportError::new(e),
            }
        })
    }

    /// Sends a whole blob in one PUT (`?digest=`), its body streamed, once. The registry checks the
    /// digest before it commits anything.
    pub async fn put_blob(
        &self,
        repository: &str,
        location: &Url,
        digest: &Digest,
        size: u64,
        body: reqwest::Body,
    ) -> Result<(), RegistryError> {
        let target = format!("{repository}@{digest}");
        let mut url = location.clone();
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let request =
            self.http.put(url).header(CONTENT_TYPE, "application/octet-stream").header(CONTENT_LENGTH, size).body(body);
        let response = self.send_body_once("upload blob", repository, &target, request).await?;
        if response.status() == StatusCode::CREATED {
            Ok(())
        } else {
            Err(Self::fail("upload blob", &target, response).await)
        }
    }

    /// Sends `length` bytes of a blob from `offset` on in one PATCH, its body streamed, once; returns
    /// where the upload goes on.
    pub async fn patch_blob(
        &self,
        repository: &str,
        location: &Url,
        offset: u64,
        length: u64,
        body: reqwest::Body,
    ) -> Result<Url, RegistryError> {
        let target = format!("{repository} upload");
        let request = self
            .http
            .request(Method::PATCH, location.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_RANGE, format!("{offset}-{}", offset + length - 1))
            .header(CONTENT_LENGTH, length)
            .body(body);
        let response = self.send_body_once("upload chunk", repository, &target, request).await?;
        if response.status() == StatusCode::ACCEPTED {
            self.location("upload chunk", &target, &response)
        } else {
            Err(Self::fail("upload chunk", &target, response).await)
        }
    }

    /// Commits an upload whose bytes were all sent by PATCH: an empty PUT `?digest=` (no body, so it
    /// may be sent again).
    pub async fn finish_upload(&self, repository: &str, location: &Url, digest: &Digest) -> Result<(), RegistryError> {
        let target = format!("{repository}@{digest}");
        let scopes = [repository_scope(repository, "pull,push")];
        let mut url = location.clone();
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let response = self
            .send("finish upload", &target, &scopes, || self.http.put(url.clone()).header(CONTENT_LENGTH, "0"))
            .await?;
        if response.status() == StatusCode::CREATED {
            Ok(())
        } else {
            Err(Self::fail("finish upload", &target, response).await)
        }
    }

    /// Where an upload session stands: how many bytes the target holds (its `Range`) and where to send
    /// the rest, or that it no longer knows the session.
    pub async fn upload_status(&self, repository: &str, location: &Url) -> Result<UploadStatus, RegistryError> {
        let target = format!("{repository} upload");
        let scopes = [repository_scope(repository, "pull,push")];
        let response = self.send("upload status", &target, &scopes, || self.http.get(location.clone())).await?;
        match response.status() {
            // Distribution answers 404 (BLOB_UPLOAD_UNKNOWN, or BLOB_UPLOAD_INVALID for a session a cut
            // request left at another offset than its Location says; it cancels that session).
            StatusCode::NOT_FOUND => Ok(UploadStatus::Forgotten),
            StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::ACCEPTED => {
                let range = response.headers().get("range").and_then(|h| h.to_str().ok());
                let offset = range.and_then(held_bytes).ok_or_else(|| RegistryError::Protocol {
                    operation: "upload status",
                    target: target.clone(),
                    message: format!("unreadable Range {range:?}"),
                })?;
                let location = self.location("upload status", &target, &response)?;
                Ok(UploadStatus::At { offset, location })
            }
            _ => Err(Self::fail("upload status", &target, response).await),
        }
    }
}

/// Where an upload session stands on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStatus {
    /// The target holds the blob's first `offset` bytes; the rest goes to `location`.
    At { offset: u64, location: Url },
    /// The target no longer knows the session (expired, cancelled, or invalidated by a cut request).
    Forgotten,
}

/// The bytes an upload's `Range: 0-LAST` says the target holds. Distribution writes `0-0` for an empty
/// session as for a one-byte one: read as empty (a wrong guess costs a refused digest and a new session).
fn held_bytes(range: &str) -> Option<u64> {
    let (first, last) = range.trim().trim_start_matches("bytes=").split_once('-')?;
    let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
    match (first, last) {
        (0, 0) => Some(0),
        (0, last) => Some(last + 1),
        _ => None,
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ranges_give_the_bytes_held() {
        assert_eq!(held_bytes("0-1048575"), Some(1 << 20));
        assert_eq!(held_bytes("bytes=0-9"), Some(10));
        assert_eq!(held_bytes("0-0"), Some(0));
        assert_eq!(held_bytes("5-9"), None);
        assert_eq!(held_bytes("garbage"), None);
    }

    #[test]
    fn errors_show_registry_codes() {
        let error = RegistryError::Status {
            operation: "PUT manifest",
            target: "p/r:t".into(),
            status: 400,
            codes: vec![ErrorCode { code: "MANIFEST_BLOB_UNKNOWN".into(), message: "blob unknown to registry".into() }],
            retry_after: None,
        };
        assert!(error.has_code("MANIFEST_BLOB_UNKNOWN"));
        assert_eq!(error.to_string(), "PUT manifest p/r:t: HTTP 400 MANIFEST_BLOB_UNKNOWN: blob unknown to registry");
    }
}
