//! Harbor detection and its REST API (`/api/v2.0`, basic auth): projects (Harbor never creates a project
//! on push, so each project is created before the first push into it; 409: it exists, as Harbor's own
//! replication treats it), and tag deletion for `sync --delete`.

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::StatusCode;
use serde::Deserialize;
use thiserror::Error;
use tokio::sync::{Mutex, OnceCell};
use url::Url;

use super::client::ErrorCode;
use super::credentials::Credentials;
use super::refusal::{self, RefusalClass};
use crate::layout::Digest;

#[derive(Debug, Error, Clone)]
pub enum HarborError {
    #[error("Harbor refused the credentials of {0:?} (check the user name and password; robot accounts log in as robot$name)")]
    WrongCredentials(String),
    #[error("Harbor needs credentials to create projects: set REHYDRATE_TARGET_USERNAME and REHYDRATE_TARGET_PASSWORD, or docker login")]
    NoCredentials,
    #[error("creating project {project:?}: HTTP {status}: {message}")]
    CreateProject { project: String, status: u16, message: String },
    #[error("{what}: HTTP {status}: {message}")]
    Refused { what: String, status: u16, message: String },
    /// Refused by one of Harbor's policies.
    #[error("{message}")]
    Policy { class: RefusalClass, message: String },
    #[error("Harbor API {0}")]
    Transport(#[source] crate::http::TransportError),
    /// An answer the API should not give (5xx after retries, unreadable JSON).
    #[error("Harbor API {0}")]
    Unexpected(String),
    /// The account may not do this through the REST API (403): a robot without the right.
    #[error("{what}: refused to {account} (a robot needs Harbor's '{right}' right)")]
    NoRight { what: String, account: String, right: &'static str },
}

impl super::control::ControlPlane for Harbor {
    /// A pull-side policy (412): the digest from the artifact API. A 401 whose words name no refused
    /// action (the credentials were checked up front and the project exists): the account has no rights
    /// in the project.
    fn read_failed_head<'a>(
        &'a self,
        repository: &'a str,
        reference: &'a str,
        error: super::client::RegistryError,
    ) -> super::control::BoxFuture<'a, Result<Option<Digest>, super::control::ControlError>> {
        use super::control::ControlError;
        Box::pin(async move {
            if error.is_pull_blocked() {
                return self.artifact_digest(repository, reference).await.map_err(ControlError::from);
            }
            if error.status() == Some(401) && error.refusal().is_none() {
                let account = self.credentials.as_ref().map_or("the anonymous caller", |c| c.username.as_str());
                return Err(ControlError::Refused {
                    class: RefusalClass::Permission,
                    message: format!(
                        "{account} has no rights in project {} ({error}): a robot needs Harbor's 'repository: \
                         pull, push' rights there",
                        project_of(repository)
                    ),
                });
            }
            Err(ControlError::Registry(error))
        })
    }

    fn charged_to<'r>(&self, repository: &'r str) -> &'r str {
        project_of(repository)
    }
}

/// A request that got no answer (each API call's transport failure).
impl From<reqwest::Error> for HarborError {
    fn from(error: reqwest::Error) -> Self {
        HarborError::Transport(crate::http::TransportError::new(error))
    }
}

impl From<HarborError> for super::control::ControlError {
    fn from(error: HarborError) -> Self {
        match error {
            HarborError::Policy { class, message } => super::control::ControlError::Refused { class, message },
            other => super::control::ControlError::Failed(other.to_string()),
        }
    }
}

/// Why Harbor refuses a repository name (its project is the first component).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameRefusal {
    #[error("a one-component name has no project")]
    NoProject,
    /// `fixed`: a valid project name close to it.
    #[error("{project:?} is not a valid Harbor project name (^[a-z0-9]+(?:[._-][a-z0-9]+)*$)")]
    BadProject { project: String, fixed: String },
    #[error("{0} characters: Harbor takes at most 255")]
    TooLong(usize),
}

/// Whether Harbor takes `repository` as a name, and why not.
pub fn name_refusal(repository: &str) -> Option<NameRefusal> {
    let project = project_of(repository);
    if !repository.contains('/') {
        return Some(NameRefusal::NoProject);
    }
    if !crate::filter::is_harbor_project_name(project) {
        return Some(NameRefusal::BadProject { project: project.to_string(), fixed: project_name_near(project) });
    }
    (repository.len() > 255).then_some(NameRefusal::TooLong(repository.len()))
}

/// A valid Harbor project name close to `name`: separator runs (`__`, `--`, `-_`) become one.
fn project_name_near(name: &str) -> String {
    let mut fixed = String::new();
    for c in name.chars() {
        let separator = matches!(c, '.' | '_' | '-');
        if separator && (fixed.is_empty() || fixed.ends_with(['.', '_', '-'])) {
            continue;
        }
        fixed.push(c);
    }
    let trimmed = fixed.trim_end_matches(['.', '_', '-']);
    if trimmed.is_empty() {
        "library".into()
    } else {
        trimmed.to_string()
    }
}

/// Repositories whose artifacts `each_tag` lists at once.
const EXPORT_CONCURRENCY: usize = 8;

/// The project a target repository belongs to (on Harbor, its first component).
pub fn project_of(repository: &str) -> &str {
    repository.split('/').next().unwrap_or(repository)
}

/// The right a robot needs for a read of the REST API (`what` names the read).
fn right_to_read(what: &str) -> &'static str {
    match what {
        "harbor artifact" => "artifact: read",
        "harbor artifacts" => "artifact: list",
        "harbor repositories" => "repository: list",
        _ => "project: read",
    }
}

/// The projects a scope set names, as the key of Harbor's tokens: one token serves them all. Harbor's
/// token service grants the caller's full rights on each repository asked for, whatever the actions
/// asked, and its `/v2` check keys those rights by project (the repository's first component: the
/// `v2token` security context), so a token asked for `p/a` pushes to `p/b` too (seen on v2.15.2). Every
/// token request costs Harbor a password check (PBKDF2 with 600,000 rounds since v2.15: 0.1 to 0.3 s of
/// its CPU), so one per project instead of one per repository is most of what a sync costs it.
pub fn token_key(scopes: &[String]) -> String {
    let mut projects: Vec<&str> = scopes
        .iter()
        .map(|scope| {
            let repository = scope.strip_prefix("repository:").unwrap_or(scope);
            repository.split(['/', ':']).next().unwrap_or(repository)
        })
        .collect();
    projects.sort_unstable();
    projects.dedup();
    projects.join(" ")
}

/// A Harbor instance's projects API.
pub struct Harbor {
    api: Url,
    http: crate::http::Client,
    credentials: Option<Credentials>,
    projects: Mutex<HashMap<String, ProjectCell>>,
}

/// The one creation (or check) of a project, shared by every tag that needs it.
type ProjectCell = Arc<OnceCell<Result<ProjectReady, HarborError>>>;

#[derive(Deserialize)]
struct SystemInfo {
    #[serde(default)]
    harbor_version: Option<String>,
}

impl Harbor {
    /// Tells a Harbor from a plain registry: Harbor answers `GET /api/v2.0/systeminfo` with a JSON
    /// object (to anonymous callers too). Returns the Harbor, or `None` for a plain registry (which
    /// answers 404). A target failing (5xx after retries, no connection) is an error, not a plain
    /// registry: taking a Harbor for one would skip its project creation and fail every push.
    pub async fn detect(
        base: &Url,
        http: &crate::http::Client,
        credentials: Option<Credentials>,
    ) -> Result<Option<Harbor>, HarborError> {
        let api = base.join("/api/v2.0/").expect("a valid path");
        let url = api.join("systeminfo").expect("a valid path");
        let (status, body) = http.fetch_with_retries("harbor systeminfo", || http.get(url.clone())).await?;
        if status.is_server_error() {
            return Err(HarborError::Unexpected(format!("GET systeminfo: HTTP {}", status.as_u16())));
        }
        if !status.is_success() || serde_json::from_slice::<SystemInfo>(&body).is_err() {
            return Ok(None);
        }
        Ok(Some(Harbor { api, http: http.clone(), credentials, projects: Mutex::new(HashMap::new()) }))
    }

    /// The Harbor version, when the credentials may see it.
    pub async fn version(&self) -> Option<String> {
        let url = self.api.join("systeminfo").ok()?;
        let (_, body) = self
            .http
            .fetch_with_retries("harbor systeminfo", || self.with_credentials(self.http.get(url.clone())))
            .await
            .ok()?;
        serde_json::from_slice::<SystemInfo>(&body).ok()?.harbor_version
    }

    fn with_credentials(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credentials {
            Some(c) => request.basic_auth(&c.username, Some(c.password())),
            None => request,
        }
    }

    /// Checks the credentials once, up front: Harbor hands out anonymous tokens for wrong passwords,
    /// so a push would only fail later with a puzzling 401.
    pub async fn check_credentials(&self) -> Result<(), HarborError> {
        let credentials = self.credentials.as_ref().ok_or(HarborError::NoCredentials)?;
        let url = self.api.join("users/current").expect("valid path");
        let response =
            self.http.send_with_retries("harbor user", || self.with_credentials(self.http.get(url.clone()))).await?;
        match response.status() {
            StatusCode::UNAUTHORIZED => Err(HarborError::WrongCredentials(credentials.username.clone())),
            // Robot accounts may not read users/current (403) but did authenticate.
            _ => Ok(()),
        }
    }

    /// Deletes one tag of an artifact through Harbor's API (the artifact itself stays). Harbor wants the
    /// repository's name inside its project with each `/` encoded twice (`a%252Fb`).
    pub async fn delete_tag(&self, repository: &str, digest: &Digest, tag: &str) -> Result<(), HarborError> {
        let credentials = self.credentials.as_ref().ok_or(HarborError::NoCredentials)?;
        let (project, name) = repository.split_once('/').unwrap_or((repository, ""));
        let path =
            format!("projects/{project}/repositories/{}/artifacts/{digest}/tags/{tag}", name.replace('/', "%252F"));
        let url = self.api.join(&path).expect("valid path");
        let response = self
            .http
            .send_with_retries("harbor delete tag", || self.with_credentials(self.http.delete(url.clone())))
            .await?;
        match response.status() {
            // 404: gone already (a retry whose first answer was lost, or someone else).
            status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
            StatusCode::UNAUTHORIZED => Err(HarborError::WrongCredentials(credentials.username.clone())),
            StatusCode::FORBIDDEN => Err(HarborError::NoRight {
                what: format!("deleting tag {repository}:{tag}"),
                account: credentials.username.clone(),
                right: "tag: delete",
            }),
            status => Err(HarborError::Refused {
                what: format!("deleting tag {repository}:{tag}"),
                status: status.as_u16(),
                message: response.text().await.unwrap_or_default().chars().take(300).collect(),
            }),
        }
    }

    /// Creates `project` unless it exists, then checks that it takes pushes; once per project whatever
    /// the number of callers. `alongside` (the project's first token) is asked for at the same time:
    /// each of the three costs Harbor a password check (0.1 to 0.3 s of its CPU), and one after the
    /// other they were most of the time to the first push. `after_creation` runs once, when this call
    /// created the project, after both and before any caller goes on: a token asked for before the
    /// project's creation does not cover it, so the one asked for alongside is dropped then.
    pub async fn ensure_project<F, G>(
        &self,
        project: &str,
        alongside: impl FnOnce() -> G,
        after_creation: impl FnOnce() -> F,
    ) -> Result<ProjectReady, HarborError>
    where
        F: std::future::Future<Output = ()>,
        G: std::future::Future<Output = ()>,
    {
        let cell = self.projects.lock().await.entry(project.to_string()).or_default().clone();
        let prepare = async {
            let (ready, ()) = futures::join!(self.prepare_project(project), alongside());
            if matches!(ready, Ok(ProjectReady::Created)) {
                after_creation().await;
            }
            ready
        };
        cell.get_or_init(|| prepare).await.clone()
    }

    /// Creates the project and reads its settings at once: a project that existed is checked from
    /// them; for one this run just made they say nothing (it is no proxy cache).
    async fn prepare_project(&self, project: &str) -> Result<ProjectReady, HarborError> {
        let (ready, info) = futures::join!(self.create_project(project), self.project(project));
        let ready = ready?;
        if ready == ProjectReady::Created {
            return Ok(ready);
        }
        let info = match info {
            Ok(info) => info,
            // Without the right, its settings are learnt from Harbor's answers to the pushes instead.
            Err(error @ HarborError::NoRight { .. }) => {
                crate::report::log::warn(format!(
                    "{error}: its proxy-cache setting is found at the first push instead"
                ));
                None
            }
            Err(error) => return Err(error),
        };
        if info.is_some_and(|info| info.is_proxy_cache()) {
            return Err(HarborError::Policy {
                class: RefusalClass::ProxyCache,
                message: format!("project {project} is a proxy-cache project: Harbor takes no pushes into it"),
            });
        }
        Ok(ready)
    }

    async fn create_project(&self, project: &str) -> Result<ProjectReady, HarborError> {
        let credentials = self.credentials.as_ref().ok_or(HarborError::NoCredentials)?;
        let body = serde_json::json!({"project_name": project, "metadata": {"public": "false"}});
        let url = self.api.join("projects").expect("valid path");
        // Retrying a POST is safe here: a project created by a try whose answer was lost answers 409.
        let response = self
            .http
            .send_with_retries("harbor create project", || {
                self.with_credentials(self.http.post(url.clone())).json(&body)
            })
            .await?;
        let status = response.status();
        match status {
            StatusCode::CREATED => return Ok(ProjectReady::Created),
            StatusCode::CONFLICT => return Ok(ProjectReady::Existed),
            StatusCode::UNAUTHORIZED => return Err(HarborError::WrongCredentials(credentials.username.clone())),
            _ => {}
        }
        let text: String = response.text().await.unwrap_or_default().chars().take(300).collect();
        let codes = serde_json::from_str::<ErrorBody>(&text).map(|body| body.errors).unwrap_or_default();
        match refusal::classify(status.as_u16(), &codes) {
            Some(RefusalClass::Permission) => Err(HarborError::Policy {
                class: RefusalClass::Permission,
                message: format!(
                    "{} may not create project {project} (only system-level robots and administrators may): create \
                     it first, or use an account that may",
                    credentials.username
                ),
            }),
            Some(class) => Err(HarborError::Policy { class, message: format!("creating project {project}: {text}") }),
            None => {
                Err(HarborError::CreateProject { project: project.to_string(), status: status.as_u16(), message: text })
            }
        }
    }

    /// GETs a JSON document of the API; `None` when it is not there (or the caller may not read it).
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
    ) -> Result<Option<T>, HarborError> {
        let url = self.api.join(path).expect("valid path");
        let (status, body) =
            self.http.fetch_with_retries(what, || self.with_credentials(self.http.get(url.clone()))).await?;
        match status.as_u16() {
            200 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| HarborError::Unexpected(format!("{what}: unreadable answer: {e}"))),
            403 => Err(HarborError::NoRight {
                what: format!("{what} {}", path.split('?').next().unwrap_or(path)),
                account: self.credentials.as_ref().map_or("the anonymous caller".into(), |c| c.username.clone()),
                right: right_to_read(what),
            }),
            401 | 404 => Ok(None),
            other => Err(HarborError::Refused {
                what: what.to_string(),
                status: other,
                message: String::from_utf8_lossy(&body).chars().take(300).collect(),
            }),
        }
    }

    /// Every tag Harbor's database holds, as (repository, tag, digest), handed to `each` project by
    /// project: since v2.15 a tag's name lives nowhere else (its storage holds none), so this is what a
    /// rebuild after a lost database needs kept (`rehydrate export-tags`).
    pub async fn each_tag(
        &self,
        wanted: impl Fn(&str) -> bool,
        mut each: impl FnMut(&str, &str, &str),
    ) -> Result<u64, HarborError> {
        #[derive(Deserialize)]
        struct Named {
            name: String,
        }
        #[derive(Deserialize)]
        struct Artifact {
            digest: String,
            #[serde(default)]
            tags: Option<Vec<Named>>,
        }
        use futures::StreamExt;
        let mut count = 0;
        for project in self.all_pages::<Named>("harbor projects", "projects").await? {
            let repositories = format!("projects/{}/repositories", project.name);
            let listed = self.all_pages::<Named>("harbor repositories", &repositories).await?;
            let listings = listed.into_iter().filter(|repository| wanted(&repository.name)).map(|repository| {
                let within = repository.name.strip_prefix(&format!("{}/", project.name)).unwrap_or(&repository.name);
                let path = format!("{repositories}/{}/artifacts?with_tag=true", within.replace('/', "%252F"));
                async move {
                    Ok::<_, HarborError>((self.all_pages::<Artifact>("harbor artifacts", &path).await?, repository))
                }
            });
            // Each call costs Harbor a password check: a few at once, not one after the other.
            let mut artifacts = futures::stream::iter(listings).buffer_unordered(EXPORT_CONCURRENCY);
            while let Some(listed) = artifacts.next().await {
                let (artifacts, repository) = listed?;
                for artifact in artifacts {
                    for tag in artifact.tags.unwrap_or_default() {
                        each(&repository.name, &tag.name, &artifact.digest);
                        count += 1;
                    }
                }
            }
        }
        Ok(count)
    }

    /// Every item of a paged list (`page`, `page_size` 100), page after page.
    async fn all_pages<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
    ) -> Result<Vec<T>, HarborError> {
        const PAGE: usize = 100;
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut all = Vec::new();
        for page in 1.. {
            let items: Vec<T> = self
                .get_json(what, &format!("{path}{separator}page={page}&page_size={PAGE}"))
                .await?
                .unwrap_or_default();
            let last = items.len() < PAGE;
            all.extend(items);
            if last {
                break;
            }
        }
        Ok(all)
    }

    /// A project as the API shows it; `None` when it does not exist (or may not be read).
    pub async fn project(&self, project: &str) -> Result<Option<ProjectInfo>, HarborError> {
        self.get_json("harbor project", &format!("projects/{project}")).await
    }

    /// A project's storage quota: (hard limit, `None` when unlimited; usage).
    pub async fn quota(&self, project: &str) -> Result<Option<(Option<u64>, u64)>, HarborError> {
        let summary: Option<ProjectSummary> =
            self.get_json("harbor project summary", &format!("projects/{project}/summary")).await?;
        Ok(summary.and_then(|s| s.quota).map(|q| {
            let hard = q.hard.storage.filter(|limit| *limit >= 0).map(|limit| limit as u64);
            (hard, q.used.storage.unwrap_or(0).max(0) as u64)
        }))
    }

    /// The digest of an artifact by tag or digest, through the API: what a manifest HEAD cannot tell when
    /// a pull-side policy (content trust, vulnerability prevention) blocks it.
    pub async fn artifact_digest(&self, repository: &str, reference: &str) -> Result<Option<Digest>, HarborError> {
        #[derive(Deserialize)]
        struct Artifact {
            digest: String,
        }
        let (project, name) = repository.split_once('/').unwrap_or((repository, ""));
        let path = format!("projects/{project}/repositories/{}/artifacts/{reference}", name.replace('/', "%252F"));
        let artifact: Option<Artifact> = self.get_json("harbor artifact", &path).await?;
        Ok(artifact.and_then(|a| Digest::parse(&a.digest).ok()))
    }
}

/// What preparing a project found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectReady {
    /// Created now: tokens asked for before do not cover it.
    Created,
    Existed,
}

/// What the project API says of a project that matters here.
#[derive(Debug, Deserialize)]
pub struct ProjectInfo {
    /// The registry a proxy-cache project caches. Harbor leaves a zero out of its JSON (omitempty), but
    /// a gateway in front of it, or another version, may write 0 or null: all mean none.
    #[serde(default)]
    pub registry_id: Option<i64>,
}

impl ProjectInfo {
    /// Harbor's own rule (`Project.IsProxy`): a registry id above 0.
    pub fn is_proxy_cache(&self) -> bool {
        self.registry_id.is_some_and(|id| id > 0)
    }
}

#[derive(Deserialize)]
struct ProjectSummary {
    #[serde(default)]
    quota: Option<SummaryQuota>,
}

#[derive(Deserialize)]
struct SummaryQuota {
    #[serde(default)]
    hard: ResourceList,
    #[serde(default)]
    used: ResourceList,
}

#[derive(Deserialize, Default)]
struct ResourceList {
    #[serde(default)]
    storage: Option<i64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorCode>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_is_a_proxy_cache_only_with_a_registry_id_above_zero() {
        let info = |json: &str| serde_json::from_str::<ProjectInfo>(json).unwrap().is_proxy_cache();
        assert!(!info(r#"{"name": "p"}"#), "Harbor leaves a zero out");
        assert!(!info(r#"{"registry_id": 0}"#), "a gateway may write it");
        assert!(!info(r#"{"registry_id": null}"#));
        assert!(info(r#"{"registry_id": 3}"#));
    }

    #[test]
    fn one_token_key_per_set_of_projects() {
        let scopes = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let key = |list: &[&str]| token_key(&scopes(list));
        assert_eq!(key(&["repository:p/a:pull,push"]), key(&["repository:p/b/c:pull,push"]));
        assert_eq!(key(&["repository:p/a:pull,push", "repository:q/x:pull"]), "p q");
        assert_eq!(key(&["repository:q/x:pull", "repository:p/a:pull,push"]), "p q");
        assert_eq!(key(&["repository:p/a:pull,push", "repository:p/b:pull"]), "p");
        assert_ne!(key(&["repository:p/a:pull"]), key(&["repository:pp/a:pull"]));
    }
}
