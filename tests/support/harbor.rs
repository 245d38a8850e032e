//! A Harbor emulator: Harbor's control plane, which cannot run here, in front of the real distribution
//! registry (Debian `docker-registry`, with token auth), which does. Written from Harbor's REST API spec
//! (`../shared/reference/harbor-swagger-v2.0.yaml`) and the push-path facts in
//! `../shared/docs/harbor.md`. What it emulates:
//!
//! - `GET /api/v2.0/systeminfo` (to anyone; `harbor_version` only to logged-in callers), `GET /ping`,
//!   `GET /users/current` (basic auth), `POST /projects` (201, 409 when it exists, 400 for a bad name,
//!   401, 403 for project-level robots), `HEAD /projects?project_name=`;
//! - the token service `/service/token`: RS256 JWTs with `x5c`, every asked scope in one token, no
//!   rights on a project that does not exist, an anonymous token (not a 401) for a wrong password when a
//!   scope is asked, 401 for a wrong password without scope;
//! - on `/v2/`: 401 "project X not found" for a missing project; blob HEAD answered 404 for blobs missing
//!   from its own record (as Harbor's HeadBlobMiddleware answers from its database, never asking storage),
//!   and passed to the registry for known ones; mounts answered 201 only for
//!   recorded blobs, else 404 (after the registry below has linked the blob, as in Harbor); manifest
//!   GET/HEAD answered 404 for artifacts it has not recorded; an index accepted only once each child is a
//!   recorded artifact of the same repository (404 NOT_FOUND "artifact R@digest not found" otherwise);
//!   after a manifest PUT, every blob it references is recorded.
//!
//! Everything else is proxied to the real registry, whose own token validation, storage and digest
//! checks do the rest. Request counts (by method and path kind) are kept for tests.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use rcgen::{CertificateParams, KeyPair, SigningKey, PKCS_RSA_SHA256};

use super::fault_proxy::{self, registry_error, Body};
use super::Registry;

pub const SERVICE: &str = "harbor-registry";
pub const ISSUER: &str = "harbor-token-issuer";
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "Harbor12345-emulated";
pub const ROBOT: &str = "robot$rehydrate";
pub const ROBOT_PASSWORD: &str = "robot-secret-emulated";

/// What the emulator keeps, as Harbor's database would.
#[derive(Default)]
pub struct State {
    pub projects: HashSet<String>,
    /// Blobs known to "the database" (one table for the whole instance), with their sizes.
    pub blobs: HashMap<String, u64>,
    /// Artifacts (repository, digest) and tags (repository, tag) -> digest.
    pub artifacts: HashSet<(String, String)>,
    pub tags: HashMap<(String, String), String>,
    /// Requests seen, by "METHOD kind" (kind: manifest, blob, upload, token, api, other).
    pub requests: HashMap<String, u64>,
    /// Manifest PUTs the registry accepted (201), by (repository, reference).
    pub manifests_accepted: HashMap<(String, String), u64>,
}

pub struct HarborEmulator {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    pub registry: Registry,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

struct Shared {
    state: Arc<Mutex<State>>,
    registry_url: String,
    http: reqwest::Client,
    key: KeyPair,
    cert_der: Vec<u8>,
}

impl HarborEmulator {
    /// Starts the real registry on `storage_root` with token auth, and the emulator in front of it.
    pub fn start(storage_root: &Path) -> HarborEmulator {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap();
        let cert = CertificateParams::new(vec!["harbor-token".to_string()]).unwrap().self_signed(&key).unwrap();
        let cert_path = dir.path().join("token.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();

        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let url = format!("http://{address}");
        let auth = format!(
            "auth: {{token: {{realm: \"{url}/service/token\", service: {SERVICE}, issuer: {ISSUER}, rootcertbundle: {}}}}}",
            cert_path.display()
        );
        let registry = Registry::start_behind(storage_root, &auth, &url);
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::new(Shared {
            state: state.clone(),
            registry_url: registry.url.clone(),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            key,
            cert_der: cert.der().to_vec(),
        });
        runtime.spawn(fault_proxy::serve(listener, move |request| {
            let shared = shared.clone();
            async move { Ok(handle(&shared, request).await) }
        }));
        HarborEmulator { url, state, registry, _runtime: runtime, _dir: dir }
    }

    /// Requests seen of one kind, e.g. "POST upload".
    pub fn count(&self, kind: &str) -> u64 {
        self.state.lock().unwrap().requests.get(kind).copied().unwrap_or(0)
    }

    pub fn add_project(&self, name: &str) {
        self.state.lock().unwrap().projects.insert(name.to_string());
    }

    pub fn env_admin(&self) -> Vec<(&'static str, String)> {
        vec![("REHYDRATE_TARGET_USERNAME", ADMIN.into()), ("REHYDRATE_TARGET_PASSWORD", ADMIN_PASSWORD.into())]
    }
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    fault_proxy::full(status, "application/json", body)
}

/// The user a basic `Authorization` header names, if its password is right: `Some(None)` for no header,
/// `None` for a wrong one.
fn basic_user(request: &Request<Incoming>) -> Option<Option<String>> {
    let Some(header) = request.headers().get("authorization").and_then(|h| h.to_str().ok()) else { return Some(None) };
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    let valid = (user == ADMIN && password == ADMIN_PASSWORD) || (user == ROBOT && password == ROBOT_PASSWORD);
    valid.then(|| Some(user.to_string()))
}

fn query_values(request: &Request<Incoming>, name: &str) -> Vec<String> {
    url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect()
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let kind = if path.starts_with("/service/token") {
        "token"
    } else if path.starts_with("/api/") {
        "api"
    } else if path.contains("/blobs/uploads") {
        "upload"
    } else if path.contains("/blobs/") {
        "blob"
    } else if path.contains("/manifests/") {
        "manifest"
    } else {
        "other"
    };
    {
        let mut state = shared.state.lock().unwrap();
        *state.requests.entry(format!("{} {kind}", request.method())).or_default() += 1;
    }
    match kind {
        "token" => token(shared, &request),
        "api" => api(shared, request).await,
        _ => registry_api(shared, request).await,
    }
}

fn token(shared: &Shared, request: &Request<Incoming>) -> Response<Body> {
    let scopes = query_values(request, "scope");
    let user = match basic_user(request) {
        Some(user) => user,
        // Harbor: a wrong password still gets an (anonymous) token when a scope is asked.
        None if !scopes.is_empty() => None,
        None => return registry_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "wrong user name or password"),
    };
    let projects = shared.state.lock().unwrap().projects.clone();
    let mut access = Vec::new();
    for scope in &scopes {
        let mut parts = scope.split(':');
        let (Some("repository"), Some(name), Some(_actions)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let project = name.split('/').next().unwrap_or_default();
        // A token grants the caller's full rights on an existing project; nothing on a missing one.
        if user.is_some() && projects.contains(project) {
            access.push(serde_json::json!({"type": "repository", "name": name, "actions": ["pull", "push", "delete"]}));
        }
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [base64::engine::general_purpose::STANDARD.encode(&shared.cert_der)]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": user.clone().unwrap_or_default(), "aud": SERVICE,
        "exp": now + 1800, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", scopes.len()),
        "access": access,
    });
    let url_safe = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let signing_input = format!("{}.{}", url_safe(&header), url_safe(&claims));
    let signature = shared.key.sign(signing_input.as_bytes()).unwrap();
    let jwt = format!("{signing_input}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature));
    full(
        StatusCode::OK,
        serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": 1800, "issued_at": "2026-11-24T00:00:00Z"})
            .to_string(),
    )
}

async fn api(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().trim_start_matches("/api/v2.0").to_string();
    let user = basic_user(&request);
    match (request.method().clone(), path.as_str()) {
        (Method::GET, "/ping") => full(StatusCode::OK, "Pong"),
        (Method::GET, "/systeminfo") => {
            let mut info =
                serde_json::json!({"auth_mode": "db_auth", "registry_url": "127.0.0.1", "with_chartmuseum": false});
            if let Some(Some(_)) = user {
                info["harbor_version"] = "v2.15.2-emulator".into();
            }
            full(StatusCode::OK, info.to_string())
        }
        (Method::GET, "/users/current") => match user {
            Some(Some(name)) => full(StatusCode::OK, serde_json::json!({"username": name}).to_string()),
            _ => registry_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "unauthorized"),
        },
        (Method::HEAD, "/projects") => {
            let name = query_values(&request, "project_name").pop().unwrap_or_default();
            let exists = shared.state.lock().unwrap().projects.contains(&name);
            full(if exists { StatusCode::OK } else { StatusCode::NOT_FOUND }, "")
        }
        (Method::POST, "/projects") => {
            let user = match user {
                Some(Some(user)) => user,
                _ => return registry_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "unauthorized"),
            };
            if user.contains('+') {
                return registry_error(
                    StatusCode::FORBIDDEN,
                    "FORBIDDEN",
                    "project-level robots may not create projects",
                );
            }
            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let name = body["project_name"].as_str().unwrap_or_default().to_string();
            let metadata_ok = body["metadata"].as_object().is_none_or(|m| m.values().all(|v| v.is_string()));
            if name.len() > 255 {
                return registry_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "UNPROCESSABLE_ENTITY",
                    "project_name too long",
                );
            }
            if !valid_project_name(&name) || !metadata_ok {
                return registry_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "invalid project name or metadata");
            }
            if !shared.state.lock().unwrap().projects.insert(name.clone()) {
                return registry_error(
                    StatusCode::CONFLICT,
                    "CONFLICT",
                    &format!("The project named {name} already exists"),
                );
            }
            full(StatusCode::CREATED, "")
        }
        _ => registry_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such API in the emulator"),
    }
}

/// `^[a-z0-9]+(?:[._-][a-z0-9]+)*$`, 1 to 255 characters.
fn valid_project_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .split(['.', '_', '-'])
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// `/v2/<name>/<kind>/<reference>` split into its parts.
fn split_v2(path: &str) -> Option<(String, &'static str, String)> {
    let rest = path.strip_prefix("/v2/")?;
    for kind in ["/manifests/", "/blobs/uploads", "/blobs/", "/tags/"] {
        if let Some(at) = rest.find(kind) {
            let reference = rest[at + kind.len()..].trim_start_matches('/').to_string();
            let kind: &'static str = match kind {
                "/manifests/" => "manifests",
                "/blobs/uploads" => "uploads",
                "/blobs/" => "blobs",
                _ => "tags",
            };
            return Some((rest[..at].to_string(), kind, reference));
        }
    }
    None
}

async fn registry_api(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let Some((repository, kind, reference)) = split_v2(&path) else { return proxy(shared, request).await };
    let project = repository.split('/').next().unwrap_or_default().to_string();
    if !shared.state.lock().unwrap().projects.contains(&project) && request.headers().contains_key("authorization") {
        return registry_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", &format!("project {project} not found"));
    }
    let method = request.method().clone();
    match (kind, &method) {
        ("blobs", &Method::HEAD) => {
            // Harbor's HeadBlobMiddleware: a blob its database does not know is 404 without asking
            // storage; a known one is passed to the registry, which answers for this repository.
            let known = shared.state.lock().unwrap().blobs.contains_key(&reference);
            if known {
                proxy(shared, request).await
            } else {
                registry_error(StatusCode::NOT_FOUND, "NOT_FOUND", "blob unknown")
            }
        }
        ("uploads", &Method::POST) => {
            let mount = query_values(&request, "mount").pop();
            let response = proxy(shared, request).await;
            match mount {
                Some(digest)
                    if response.status() == StatusCode::CREATED
                        && !shared.state.lock().unwrap().blobs.contains_key(&digest) =>
                {
                    // The registry below linked it, but Harbor's database does not know the blob.
                    registry_error(StatusCode::NOT_FOUND, "NOT_FOUND", &format!("blob {digest} not found"))
                }
                _ => response,
            }
        }
        ("uploads", &Method::PUT) => {
            let digest = query_values(&request, "digest").pop();
            let response = proxy(shared, request).await;
            if let (StatusCode::CREATED, Some(digest)) = (response.status(), digest) {
                let size = blob_size(&response);
                shared.state.lock().unwrap().blobs.insert(digest, size);
            }
            response
        }
        ("manifests", &Method::GET) | ("manifests", &Method::HEAD) => {
            let known = {
                let state = shared.state.lock().unwrap();
                if reference.starts_with("sha256:") {
                    state.artifacts.contains(&(repository.clone(), reference.clone()))
                } else {
                    state.tags.contains_key(&(repository.clone(), reference.clone()))
                }
            };
            if !known {
                return registry_error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    &format!("artifact {repository}:{reference} not found"),
                );
            }
            proxy(shared, request).await
        }
        ("manifests", &Method::PUT) => put_manifest(shared, request, repository, reference).await,
        _ => proxy(shared, request).await,
    }
}

fn blob_size(response: &Response<Body>) -> u64 {
    response.headers().get("content-length").and_then(|h| h.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

async fn put_manifest(
    shared: &Shared,
    request: Request<Incoming>,
    repository: String,
    reference: String,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
    if let Some(children) = manifest["manifests"].as_array() {
        let state = shared.state.lock().unwrap();
        for child in children {
            let child = child["digest"].as_str().unwrap_or_default().to_string();
            if !state.artifacts.contains(&(repository.clone(), child.clone())) {
                drop(state);
                return registry_error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    &format!("artifact {repository}@{child} not found"),
                );
            }
        }
    }
    let response = fault_proxy::forward_parts(
        &shared.http,
        &shared.registry_url,
        None,
        parts,
        Full::new(bytes).map_err(|never: Infallible| match never {}).boxed(),
    )
    .await;
    if response.status() == StatusCode::CREATED {
        let mut state = shared.state.lock().unwrap();
        *state.manifests_accepted.entry((repository.clone(), reference.clone())).or_default() += 1;
        state.artifacts.insert((repository.clone(), digest.clone()));
        if !reference.starts_with("sha256:") {
            state.tags.insert((repository, reference), digest);
        }
        let referenced =
            manifest["layers"].as_array().into_iter().flatten().chain(std::iter::once(&manifest["config"]));
        for descriptor in referenced {
            if let (Some(d), Some(size)) = (descriptor["digest"].as_str(), descriptor["size"].as_u64()) {
                state.blobs.insert(d.to_string(), size);
            }
        }
    }
    response
}

/// Forwards a request to the real registry, streaming both bodies.
async fn proxy(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    fault_proxy::forward(&shared.http, &shared.registry_url, None, request).await
}
