//! A Harbor emulator: Harbor's control plane, which cannot run here, in front of the real distribution
//! registry (Debian `docker-registry`, with token auth), which does. Written from Harbor's REST API spec
//! (`../shared/reference/harbor-swagger-v2.0.yaml`) and the push-path facts in
//! `../shared/docs/harbor.md`. What it emulates:
//!
//! - `GET /api/v2.0/systeminfo` (to anyone; `harbor_version` only to logged-in callers), `GET /ping`,
//!   `GET /users/current` (basic auth), `POST /projects` (201, 409 when it exists, 400 for a bad name,
//!   401, 403 for project-level robots), `HEAD /projects?project_name=`, `DELETE .../repositories/
//!   {repository_name}/artifacts/{reference}/tags/{tag_name}` (the repository name encoded twice, as the
//!   spec says; the tag leaves Harbor's database, the artifact stays; 404 for a tag not on that artifact);
//! - the token service `/service/token`: RS256 JWTs with `x5c`, every asked scope in one token, no
//!   rights on a project that does not exist, an anonymous token (not a 401) for a wrong password when a
//!   scope is asked, 401 for a wrong password without scope;
//! - on `/v2/`: a client's token serves every repository of the projects it names (Harbor keys a
//!   token's rights by project), passed on to the registry as a token for exactly the repositories
//!   involved; 401 "project X not found" for a missing project; blob HEAD answered 404 for blobs missing
//!   from its own record (as Harbor's HeadBlobMiddleware answers from its database, never asking storage),
//!   and passed to the registry for known ones; mounts answered 201 only for
//!   recorded blobs, else 404 (after the registry below has linked the blob, as in Harbor); manifest
//!   GET/HEAD answered 404 for artifacts it has not recorded; an index accepted only once each child is a
//!   recorded artifact of the same repository (404 NOT_FOUND "artifact R@digest not found" otherwise);
//!   after a manifest PUT, every blob it references is recorded.
//!
//! Harbor's policies on the push path, as v2.15.2's middlewares apply them (set by tests through `State`):
//! read-only mode (403 for every write, project creation included, before anything else); robots scoped
//! to projects (a token without rights elsewhere, then 401 "unauthorized to access repository"; project
//! robots may not create projects); proxy-cache projects (403 on upload POSTs and manifest PUTs,
//! `registry_id` in the project API); content trust (412 `PROJECTPOLICYVIOLATION` on manifest GET and
//! HEAD of an existing artifact); storage quotas with Harbor's accounting (each blob once per project:
//! a mount, a final upload PUT by its length or, empty, by its PATCHes, a manifest PUT by its size and
//! its blobs not yet in the project; 403 with Harbor's message, before the registry is asked); immutable
//! tag rules (412 `PRECONDITION` on a PUT by tag onto an existing tag a rule matches, even at the same
//! digest). The REST API answers `GET /projects/{name}`, `/projects/{name}/summary` (quota hard and
//! used) and `/projects/{p}/repositories/{r}/artifacts/{reference}` (its digest).
//!
//! Everything else is proxied to the real registry, whose own token validation, storage and digest
//! checks do the rest. Request counts (by method and path kind, and by path) are kept for tests, and
//! every refusal by policy (by class and path).

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
/// A system robot whose rights cover only the projects listed in `State::limited_robot_projects`.
pub const LIMITED_ROBOT: &str = "robot$migrator";
pub const LIMITED_ROBOT_PASSWORD: &str = "migrator-secret-emulated";
/// A project robot of project `team`: rights there only, and no project creation.
pub const PROJECT_ROBOT: &str = "robot$team+pusher";
pub const PROJECT_ROBOT_PASSWORD: &str = "pusher-secret-emulated";

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
    /// Requests seen, by "METHOD path" (no query).
    pub paths: HashMap<String, u64>,
    /// Manifest PUTs the registry accepted (201), by (repository, reference).
    pub manifests_accepted: HashMap<(String, String), u64>,
    /// Tags deleted through the API, by (repository, tag).
    pub tags_deleted: HashMap<(String, String), u64>,
    /// Read-only mode: every write refused.
    pub read_only: bool,
    /// Storage quota per project, in bytes (absent: unlimited).
    pub quotas: HashMap<String, u64>,
    /// What each project holds (Harbor's `project_blob` table): blob (and manifest) digest -> size.
    pub project_blobs: HashMap<String, HashMap<String, u64>>,
    /// Each project's quota usage: what was charged, request by request. Harbor decides a request's
    /// charge (what the project does not hold yet) when the request comes in, so two requests adding
    /// the same blob at once are both charged, and the usage exceeds the blobs held.
    pub quota_used: HashMap<String, u64>,
    /// Bytes sent by PATCH into each upload session (by its path), for an empty final PUT.
    pub session_bytes: HashMap<String, u64>,
    /// Immutable tag rules: project -> tag patterns (`*` matches any run of characters).
    pub immutable: HashMap<String, Vec<String>>,
    pub proxy_cache: HashSet<String>,
    pub content_trust: HashSet<String>,
    /// The projects `LIMITED_ROBOT` may act on.
    pub limited_robot_projects: HashSet<String>,
    /// Refusals by policy answered, by "class METHOD path".
    pub refusals: HashMap<String, u64>,
}

impl State {
    /// Storage used by a project, as its quota counts it.
    pub fn usage(&self, project: &str) -> u64 {
        self.quota_used.get(project).copied().unwrap_or(0)
    }

    /// Manifests the registry accepted more than once, by (repository, reference).
    pub fn pushed_twice(&self) -> Vec<(String, String)> {
        self.manifests_accepted.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k.clone()).collect()
    }

    /// Refusals answered of one class.
    pub fn refused(&self, class: &str) -> u64 {
        self.refusals.iter().filter(|(key, _)| key.starts_with(&format!("{class} "))).map(|(_, n)| n).sum()
    }
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

    /// `rehydrate sync SOURCE <this Harbor> --plain-http --journal JOURNAL EXTRA...` as the administrator,
    /// in a clean environment, for tests that start, kill and start it again.
    pub fn sync_command(&self, source: &str, journal: &Path, extra: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(super::rehydrate_binary());
        command
            .args(["sync", source, &self.url, "--plain-http"])
            .arg("--journal")
            .arg(journal)
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env_admin());
        command
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
    let valid = [
        (ADMIN, ADMIN_PASSWORD),
        (ROBOT, ROBOT_PASSWORD),
        (LIMITED_ROBOT, LIMITED_ROBOT_PASSWORD),
        (PROJECT_ROBOT, PROJECT_ROBOT_PASSWORD),
    ]
    .contains(&(user, password));
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
    } else {
        v2_kind(&path)
    };
    {
        let mut state = shared.state.lock().unwrap();
        *state.requests.entry(format!("{} {kind}", request.method())).or_default() += 1;
        *state.paths.entry(format!("{} {path}", request.method())).or_default() += 1;
    }
    let writes = ![Method::GET, Method::HEAD, Method::OPTIONS].contains(request.method());
    if writes && kind != "token" && shared.state.lock().unwrap().read_only {
        let message = "The system is in read only mode. Any modification is prohibited.";
        return refuse(shared, "read_only", request.method(), &path, StatusCode::FORBIDDEN, "DENIED", message);
    }
    match kind {
        "token" => token(shared, &request),
        "api" => api(shared, request).await,
        _ => registry_api(shared, request).await,
    }
}

/// The kind of a registry API request, as requests are counted: upload, blob, manifest or other.
pub fn v2_kind(path: &str) -> &'static str {
    if path.contains("/blobs/uploads") {
        "upload"
    } else if path.contains("/blobs/") {
        "blob"
    } else if path.contains("/manifests/") {
        "manifest"
    } else {
        "other"
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
    let (projects, limited) = {
        let state = shared.state.lock().unwrap();
        (state.projects.clone(), state.limited_robot_projects.clone())
    };
    let mut access = Vec::new();
    for scope in &scopes {
        let mut parts = scope.split(':');
        let (Some("repository"), Some(name), Some(_actions)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let project = name.split('/').next().unwrap_or_default();
        // A token grants the caller's full rights on an existing project; nothing on a missing one, nor
        // on a project the caller (a scoped robot) has no rights in.
        if user.as_deref().is_some_and(|user| may_act_on(user, project, &limited)) && projects.contains(project) {
            access.push(serde_json::json!({"type": "repository", "name": name, "actions": ["pull", "push", "delete"]}));
        }
    }
    let jwt = mint(shared, &user.unwrap_or_default(), access);
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
                let message = "Only system level robot can create project";
                return refuse(
                    shared,
                    "permission",
                    &Method::POST,
                    "/api/v2.0/projects",
                    StatusCode::FORBIDDEN,
                    "FORBIDDEN",
                    message,
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
        // Lists answer everything on their first page, nothing on the next.
        _ if query_values(&request, "page").first().is_some_and(|page| page != "1") => full(StatusCode::OK, "[]"),
        (Method::GET, "/projects") => match user {
            Some(Some(_)) => {
                let state = shared.state.lock().unwrap();
                let mut names: Vec<&String> = state.projects.iter().collect();
                names.sort();
                let list: Vec<serde_json::Value> = names.iter().map(|name| serde_json::json!({"name": name})).collect();
                full(StatusCode::OK, serde_json::Value::Array(list).to_string())
            }
            _ => registry_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "unauthorized"),
        },
        (Method::GET, _) if path.starts_with("/projects/") => match user {
            Some(Some(_)) => project_api(shared, &path),
            _ => registry_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "unauthorized"),
        },
        (Method::DELETE, _) if path.contains("/tags/") => match user {
            Some(Some(_)) => delete_tag(shared, &path),
            _ => registry_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "unauthorized"),
        },
        _ => registry_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such API in the emulator"),
    }
}

/// `GET /projects/{name}` (with `registry_id` set for a proxy-cache project), `/projects/{name}/summary`
/// (the quota's hard limit, -1 when unlimited, and its usage) and
/// `/projects/{p}/repositories/{r, encoded twice}/artifacts/{reference}` (the artifact's digest).
fn project_api(shared: &Shared, path: &str) -> Response<Body> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let state = shared.state.lock().unwrap();
    let project = parts.get(1).copied().unwrap_or_default();
    if !state.projects.contains(project) {
        return registry_error(StatusCode::NOT_FOUND, "NOT_FOUND", &format!("project {project} not found"));
    }
    let decode = |text: &str| percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned();
    match parts[..] {
        ["projects", _] => {
            let mut ids: Vec<&String> = state.projects.iter().collect();
            ids.sort();
            let id = ids.iter().position(|p| *p == project).unwrap_or(0) + 1;
            let registry_id = state.proxy_cache.contains(project).then_some(1);
            let trust = state.content_trust.contains(project).to_string();
            let body = serde_json::json!({"project_id": id, "name": project, "registry_id": registry_id,
                "metadata": {"public": "false", "enable_content_trust_cosign": trust}});
            full(StatusCode::OK, body.to_string())
        }
        ["projects", _, "summary"] => {
            let hard = state.quotas.get(project).map(|q| *q as i64).unwrap_or(-1);
            let repositories = state
                .tags
                .keys()
                .filter(|(r, _)| r.split('/').next() == Some(project))
                .map(|(r, _)| r)
                .collect::<HashSet<_>>()
                .len();
            let body = serde_json::json!({"repo_count": repositories,
                "quota": {"hard": {"storage": hard}, "used": {"storage": state.usage(project)}}});
            full(StatusCode::OK, body.to_string())
        }
        ["projects", _, "repositories"] => {
            let mut names: Vec<&String> = state
                .artifacts
                .iter()
                .map(|(repository, _)| repository)
                .filter(|repository| repository.split('/').next() == Some(project))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            names.sort();
            let list: Vec<serde_json::Value> = names.iter().map(|name| serde_json::json!({"name": name})).collect();
            full(StatusCode::OK, serde_json::Value::Array(list).to_string())
        }
        ["projects", _, "repositories", name, "artifacts"] => {
            let repository = format!("{project}/{}", decode(&decode(name)));
            let mut list = Vec::new();
            for (_, digest) in state.artifacts.iter().filter(|(r, _)| r == &repository) {
                let tags: Vec<serde_json::Value> = state
                    .tags
                    .iter()
                    .filter(|((r, _), d)| r == &repository && *d == digest)
                    .map(|((_, tag), _)| serde_json::json!({"name": tag}))
                    .collect();
                list.push(serde_json::json!({"digest": digest, "tags": tags}));
            }
            full(StatusCode::OK, serde_json::Value::Array(list).to_string())
        }
        ["projects", _, "repositories", name, "artifacts", reference] => {
            let repository = format!("{project}/{}", decode(&decode(name)));
            let reference = decode(reference);
            let digest = if reference.starts_with("sha256:") {
                state.artifacts.contains(&(repository.clone(), reference.clone())).then(|| reference.clone())
            } else {
                state.tags.get(&(repository.clone(), reference.clone())).cloned()
            };
            match digest {
                Some(digest) => full(StatusCode::OK, serde_json::json!({"digest": digest}).to_string()),
                None => registry_error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    &format!("artifact {repository}:{reference} not found"),
                ),
            }
        }
        _ => registry_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such API in the emulator"),
    }
}

/// `/projects/{p}/repositories/{r, encoded twice}/artifacts/{reference}/tags/{tag}`: the tag leaves
/// Harbor's database (tags live there only since 2.15); the artifact and the registry's storage stay.
fn delete_tag(shared: &Shared, path: &str) -> Response<Body> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["projects", project, "repositories", name, "artifacts", reference, "tags", tag] = parts[..] else {
        return registry_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such API in the emulator");
    };
    let decode = |text: &str| percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned();
    let repository = format!("{project}/{}", decode(&decode(name)));
    let (reference, tag) = (decode(reference), decode(tag));
    let mut state = shared.state.lock().unwrap();
    let key = (repository.clone(), tag.clone());
    if state.tags.get(&key) != Some(&reference) {
        return registry_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("tag {tag} not found on {repository}@{reference}"),
        );
    }
    state.tags.remove(&key);
    *state.tags_deleted.entry(key).or_default() += 1;
    full(StatusCode::OK, "")
}

/// Whether `user` has rights in `project`: robots are scoped (a project robot to its project, the
/// limited system robot to the listed projects); the administrator and the other robot to every one.
fn may_act_on(user: &str, project: &str, limited: &HashSet<String>) -> bool {
    match user {
        LIMITED_ROBOT => limited.contains(project),
        PROJECT_ROBOT => project == "team",
        _ => true,
    }
}

/// The user a bearer token was issued to (its `sub`), read without checking it: the registry checks.
fn bearer_subject(request: &Request<Incoming>) -> Option<String> {
    bearer_claims(request.headers())?["sub"].as_str().map(str::to_string)
}

/// The claims of the bearer token a request carries.
fn bearer_claims(headers: &hyper::HeaderMap) -> Option<serde_json::Value> {
    let header = headers.get("authorization")?.to_str().ok()?;
    let payload = header.strip_prefix("Bearer ")?.split('.').nth(1)?;
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// A token signed by the emulator's token service, for `subject`, with `access`.
fn mint(shared: &Shared, subject: &str, access: Vec<serde_json::Value>) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [base64::engine::general_purpose::STANDARD.encode(&shared.cert_der)]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now + 1800, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let url_safe = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let signing_input = format!("{}.{}", url_safe(&header), url_safe(&claims));
    let signature = shared.key.sign(signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature))
}

/// What Harbor's core does with a client's token on `/v2/` before the registry sees the request: it
/// keys the token's rights by project (its `v2token` security context: a token asked for `p/a` serves
/// `p/b`), and, where they cover the repository (and a mount's source), passes the request on with its
/// own credentials. Here those are a token for exactly the repositories involved, which the registry
/// below (with token auth) takes. A token without those rights goes on unchanged, and the registry
/// refuses it as Harbor would.
fn pass_on_as_core_does(shared: &Shared, request: &mut hyper::http::request::Parts) {
    let Some(claims) = bearer_claims(&request.headers) else { return };
    let Some((repository, _, _)) = split_v2(request.uri.path()) else { return };
    let projects: HashSet<&str> = claims["access"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|access| access["name"].as_str()?.split('/').next())
        .collect();
    let mut repositories = vec![repository];
    let query = request.uri.query().unwrap_or_default().as_bytes();
    repositories.extend(url::form_urlencoded::parse(query).filter(|(k, _)| k == "from").map(|(_, v)| v.into_owned()));
    let covered = repositories.iter().all(|name| projects.contains(name.split('/').next().unwrap_or_default()));
    if covered {
        let access = repositories
            .iter()
            .map(|name| serde_json::json!({"type": "repository", "name": name, "actions": ["pull", "push", "delete"]}))
            .collect();
        let token = mint(shared, claims["sub"].as_str().unwrap_or_default(), access);
        request.headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
}

/// Answers a refusal by policy, and counts it.
fn refuse(
    shared: &Shared,
    class: &str,
    method: &Method,
    path: &str,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<Body> {
    *shared.state.lock().unwrap().refusals.entry(format!("{class} {method} {path}")).or_default() += 1;
    registry_error(status, code, message)
}

/// Harbor's quota message for `adding` bytes on top of `used`, over `limit`.
fn quota_message(adding: u64, used: u64, limit: u64) -> String {
    // One decimal and a space, as in "adding 21.0 MiB of storage resource ..."; the unit by size.
    let mib = |bytes: u64| {
        let units = ["B", "KiB", "MiB", "GiB"];
        let (mut value, mut unit) = (bytes as f64, 0);
        while value >= 1024.0 && unit < units.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        format!("{value:.1} {}", units[unit])
    };
    format!(
        "adding {} of storage resource, which when updated to current usage of {} will exceed the configured upper limit of {}.",
        mib(adding),
        mib(used),
        mib(limit)
    )
}

/// The blobs among `blobs` the project does not hold yet, and their total size.
fn not_yet_in(state: &State, project: &str, blobs: &[(String, u64)]) -> (Vec<(String, u64)>, u64) {
    let held = state.project_blobs.get(project);
    let mut new: Vec<(String, u64)> = Vec::new();
    for (digest, size) in blobs {
        if !held.is_some_and(|h| h.contains_key(digest)) && !new.iter().any(|(d, _)| d == digest) {
            new.push((digest.clone(), *size));
        }
    }
    let total = new.iter().map(|(_, size)| size).sum();
    (new, total)
}

/// Harbor's quota check when a request comes in that adds `blobs` to a project: the bytes it will
/// charge (what the project does not hold now), or the quota message when they do not fit.
fn quota_check(state: &State, project: &str, blobs: &[(String, u64)]) -> Result<u64, String> {
    let (_, adding) = not_yet_in(state, project, blobs);
    let used = state.usage(project);
    match state.quotas.get(project) {
        Some(&limit) if adding > 0 && used + adding > limit => Err(quota_message(adding, used, limit)),
        _ => Ok(adding),
    }
}

/// After the request succeeded: the project holds `blobs` (once each), and its usage grows by the
/// charge decided when the request came in.
fn charge(state: &mut State, project: &str, blobs: &[(String, u64)], charged: u64) {
    let held = state.project_blobs.entry(project.to_string()).or_default();
    for (digest, size) in blobs {
        held.entry(digest.clone()).or_insert(*size);
    }
    *state.quota_used.entry(project.to_string()).or_default() += charged;
}

/// Whether an immutable rule of `project` matches `tag` (`*` matches any run of characters).
fn immutable(state: &State, project: &str, tag: &str) -> bool {
    let matches = |pattern: &str| {
        let parts: Vec<&str> = pattern.split('*').collect();
        let mut rest = tag;
        for (i, part) in parts.iter().enumerate() {
            match rest.find(part) {
                Some(0) if i == 0 => rest = &rest[part.len()..],
                Some(at) if i > 0 => rest = &rest[at + part.len()..],
                _ => return false,
            }
        }
        parts.last().is_some_and(|last| last.is_empty()) || rest.is_empty()
    };
    state.immutable.get(project).is_some_and(|patterns| patterns.iter().any(|p| matches(p)))
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
    if let Some(refused) = refused_by_policy(shared, &request, &repository, &project, kind) {
        return refused;
    }
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
            // A mount of a blob Harbor knows is charged to the project (once).
            let known = mount.as_ref().and_then(|d| shared.state.lock().unwrap().blobs.get(d).map(|s| (d.clone(), *s)));
            let mut charged = 0;
            if let Some(blob) = &known {
                // The check's lock is let go before a refusal is recorded (which locks the state again).
                let checked = quota_check(&shared.state.lock().unwrap(), &project, std::slice::from_ref(blob));
                match checked {
                    Ok(adding) => charged = adding,
                    Err(message) => {
                        return refuse(shared, "quota", &method, &path, StatusCode::FORBIDDEN, "DENIED", &message)
                    }
                }
            }
            let response = proxy(shared, request).await;
            match (mount, known) {
                (Some(_), Some(blob)) if response.status() == StatusCode::CREATED => {
                    charge(&mut shared.state.lock().unwrap(), &project, &[blob], charged);
                    response
                }
                (Some(digest), None) if response.status() == StatusCode::CREATED => {
                    // The registry below linked it, but Harbor's database does not know the blob.
                    registry_error(StatusCode::NOT_FOUND, "NOT_FOUND", &format!("blob {digest} not found"))
                }
                _ => response,
            }
        }
        ("uploads", &Method::PATCH) => {
            let length = content_length(&request);
            *shared.state.lock().unwrap().session_bytes.entry(path.clone()).or_default() += length;
            proxy(shared, request).await
        }
        ("uploads", &Method::PUT) => {
            let digest = query_values(&request, "digest").pop().unwrap_or_default();
            // Harbor charges a final PUT by its length, or, when it is empty, by what the PATCHes sent.
            let length = match content_length(&request) {
                0 => shared.state.lock().unwrap().session_bytes.get(&path).copied().unwrap_or(0),
                length => length,
            };
            let blob = (digest.clone(), length);
            let checked = quota_check(&shared.state.lock().unwrap(), &project, std::slice::from_ref(&blob));
            let charged = match checked {
                Ok(adding) => adding,
                Err(message) => {
                    return refuse(shared, "quota", &method, &path, StatusCode::FORBIDDEN, "DENIED", &message)
                }
            };
            let response = proxy(shared, request).await;
            if response.status() == StatusCode::CREATED {
                let mut state = shared.state.lock().unwrap();
                state.blobs.insert(digest, length);
                charge(&mut state, &project, &[blob], charged);
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

fn content_length(request: &Request<Incoming>) -> u64 {
    request.headers().get("content-length").and_then(|h| h.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Harbor's policy middlewares in their order, for a `/v2/` request into `project`: the caller's rights
/// (a scoped robot), proxy-cache projects, content trust. Quotas and immutable rules are checked where
/// the request's size and tag are known.
fn refused_by_policy(
    shared: &Shared,
    request: &Request<Incoming>,
    repository: &str,
    project: &str,
    kind: &str,
) -> Option<Response<Body>> {
    let (method, path) = (request.method(), request.uri().path());
    let state = shared.state.lock().unwrap();
    if let Some(user) = bearer_subject(request) {
        if !user.is_empty() && !may_act_on(&user, project, &state.limited_robot_projects) {
            drop(state);
            let action = if [Method::GET, Method::HEAD].contains(method) { "pull" } else { "push" };
            let message = format!("unauthorized to access repository: {repository}, action: {action}: unauthorized to access repository: {repository}, action: {action}");
            return Some(refuse(
                shared,
                "permission",
                method,
                path,
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                &message,
            ));
        }
    }
    let pushes = (kind == "uploads" && method == Method::POST) || (kind == "manifests" && method == Method::PUT);
    if pushes && state.proxy_cache.contains(project) {
        drop(state);
        let message = format!("can not push artifact to a proxy project: {project}");
        return Some(refuse(shared, "proxy_cache", method, path, StatusCode::FORBIDDEN, "DENIED", &message));
    }
    let reads_manifest = kind == "manifests" && [Method::GET, Method::HEAD].contains(method);
    if reads_manifest && state.content_trust.contains(project) {
        let reference = path.rsplit('/').next().unwrap_or_default().to_string();
        let exists = if reference.starts_with("sha256:") {
            state.artifacts.contains(&(repository.to_string(), reference))
        } else {
            state.tags.contains_key(&(repository.to_string(), reference))
        };
        if exists {
            drop(state);
            let message = "The image is not signed by cosign.";
            return Some(refuse(
                shared,
                "policy",
                method,
                path,
                StatusCode::PRECONDITION_FAILED,
                "PROJECTPOLICYVIOLATION",
                message,
            ));
        }
    }
    None
}

async fn put_manifest(
    shared: &Shared,
    request: Request<Incoming>,
    repository: String,
    reference: String,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    pass_on_as_core_does(shared, &mut parts);
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
    let project = repository.split('/').next().unwrap_or_default().to_string();
    let path = parts.uri.path().to_string();
    // The manifest itself and its blobs, each once per project.
    let mut charged = vec![(digest.clone(), bytes.len() as u64)];
    let referenced = manifest["layers"].as_array().into_iter().flatten().chain(std::iter::once(&manifest["config"]));
    for descriptor in referenced {
        if let (Some(d), Some(size)) = (descriptor["digest"].as_str(), descriptor["size"].as_u64()) {
            charged.push((d.to_string(), size));
        }
    }
    let quota_charge;
    {
        let state = shared.state.lock().unwrap();
        let is_tag = !reference.starts_with("sha256:");
        if is_tag
            && immutable(&state, &project, &reference)
            && state.tags.contains_key(&(repository.clone(), reference.clone()))
        {
            drop(state);
            // Harbor v2.15.2 names the repository without its project here ('app:v2').
            let within = repository.split_once('/').map_or(repository.as_str(), |(_, name)| name);
            let message = format!("Failed to process request due to '{within}:{reference}' configured as immutable.");
            return refuse(
                shared,
                "immutable",
                &Method::PUT,
                &path,
                StatusCode::PRECONDITION_FAILED,
                "PRECONDITION",
                &message,
            );
        }
        quota_charge = match quota_check(&state, &project, &charged) {
            Ok(adding) => adding,
            Err(message) => {
                drop(state);
                return refuse(shared, "quota", &Method::PUT, &path, StatusCode::FORBIDDEN, "DENIED", &message);
            }
        };
    }
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
        for (blob, size) in &charged[1..] {
            state.blobs.insert(blob.clone(), *size);
        }
        charge(&mut state, &project, &charged, quota_charge);
    }
    response
}

/// Forwards a request to the real registry, streaming both bodies.
async fn proxy(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    pass_on_as_core_does(shared, &mut parts);
    let body = body.map_err(|e| std::io::Error::other(e.to_string())).boxed();
    fault_proxy::forward_parts(&shared.http, &shared.registry_url, None, parts, body).await
}
