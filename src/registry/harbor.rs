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

use super::credentials::Credentials;
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
    #[error("Harbor API {0}")]
    Transport(String),
}

/// A Harbor instance's projects API.
pub struct Harbor {
    api: Url,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    projects: Mutex<HashMap<String, ProjectReady>>,
}

/// The one creation (or check) of a project, shared by every tag that needs it.
type ProjectReady = Arc<OnceCell<Result<(), HarborError>>>;

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
        http: &reqwest::Client,
        credentials: Option<Credentials>,
    ) -> Result<Option<Harbor>, HarborError> {
        let api = base.join("/api/v2.0/").expect("a valid path");
        let url = api.join("systeminfo").expect("a valid path");
        let (status, body) = crate::net::fetch_with_retries("target", "harbor systeminfo", || http.get(url.clone()))
            .await
            .map_err(|e| HarborError::Transport(crate::net::describe_error(&e)))?;
        if status.is_server_error() {
            return Err(HarborError::Transport(format!("GET systeminfo: HTTP {}", status.as_u16())));
        }
        if !status.is_success() || serde_json::from_slice::<SystemInfo>(&body).is_err() {
            return Ok(None);
        }
        Ok(Some(Harbor { api, http: http.clone(), credentials, projects: Mutex::new(HashMap::new()) }))
    }

    /// The Harbor version, when the credentials may see it.
    pub async fn version(&self) -> Option<String> {
        let url = self.api.join("systeminfo").ok()?;
        let (_, body) = crate::net::fetch_with_retries("target", "harbor systeminfo", || {
            self.with_credentials(self.http.get(url.clone()))
        })
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
        let response = crate::net::send_with_retries("target", "harbor user", || {
            self.with_credentials(self.http.get(url.clone()))
        })
        .await
        .map_err(|e| HarborError::Transport(crate::net::describe_error(&e)))?;
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
        let response = crate::net::send_with_retries("target", "harbor delete tag", || {
            self.with_credentials(self.http.delete(url.clone()))
        })
        .await
        .map_err(|e| HarborError::Transport(crate::net::describe_error(&e)))?;
        match response.status() {
            // 404: gone already (a retry whose first answer was lost, or someone else).
            status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
            StatusCode::UNAUTHORIZED => Err(HarborError::WrongCredentials(credentials.username.clone())),
            status => Err(HarborError::Refused {
                what: format!("deleting tag {repository}:{tag}"),
                status: status.as_u16(),
                message: response.text().await.unwrap_or_default().chars().take(300).collect(),
            }),
        }
    }

    /// Creates `project` unless it exists; once per project whatever the number of callers.
    pub async fn ensure_project(&self, project: &str) -> Result<(), HarborError> {
        let cell = self.projects.lock().await.entry(project.to_string()).or_default().clone();
        cell.get_or_init(|| self.create_project(project)).await.clone()
    }

    async fn create_project(&self, project: &str) -> Result<(), HarborError> {
        let credentials = self.credentials.as_ref().ok_or(HarborError::NoCredentials)?;
        let body = serde_json::json!({"project_name": project, "metadata": {"public": "false"}});
        let url = self.api.join("projects").expect("valid path");
        // Retrying a POST is safe here: a project created by a try whose answer was lost answers 409.
        let response = crate::net::send_with_retries("target", "harbor create project", || {
            self.with_credentials(self.http.post(url.clone())).json(&body)
        })
        .await
        .map_err(|e| HarborError::Transport(crate::net::describe_error(&e)))?;
        match response.status() {
            StatusCode::CREATED | StatusCode::CONFLICT => Ok(()),
            StatusCode::UNAUTHORIZED => Err(HarborError::WrongCredentials(credentials.username.clone())),
            status => Err(HarborError::CreateProject {
                project: project.to_string(),
                status: status.as_u16(),
                message: response.text().await.unwrap_or_default().chars().take(300).collect(),
            }),
        }
    }
}
