//! Target credentials: from the environment, a password file or standard input, or the user's Docker
//! credential config as Docker reads it (`~/.docker/config.json`: the host's `credHelpers` entry, else
//! `credsStore`, each asked through `docker-credential-NAME get`; else `auths`, as `docker login` leaves
//! it). Never from the command line, and never printed: `Debug` shows the user name only.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use thiserror::Error;

/// Environment variables read for the target's credentials.
pub const USERNAME_VAR: &str = "REHYDRATE_TARGET_USERNAME";
pub const PASSWORD_VAR: &str = "REHYDRATE_TARGET_PASSWORD";

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials { username: username.into(), password: password.into() }
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ username: {:?}, password: <redacted> }}", self.username)
    }
}

#[derive(Debug, Error)]
pub enum CredentialsError {
    #[error("reading the password file {path}: {source}")]
    PasswordFile { path: PathBuf, source: std::io::Error },
    #[error("reading the password from standard input: {0}")]
    Stdin(std::io::Error),
    #[error("a password was given but no user name: set {USERNAME_VAR} or --username")]
    NoUsername,
    #[error("the Docker config {path} is not valid JSON: {message}")]
    DockerConfig { path: PathBuf, message: String },
    #[error(
        "the Docker credential helper docker-credential-{helper} (named in {config}), asked for {host}, {problem}"
    )]
    Helper { helper: String, config: PathBuf, host: String, problem: String },
}

/// Where a password may come from, as the command line says.
#[derive(Debug, Default, Clone)]
pub struct CredentialSources {
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_stdin: bool,
    /// The registry host (with port) to look up in the Docker config.
    pub registry_host: String,
}

/// Resolves credentials: an explicit password (file, stdin, then environment) with the user name from
/// the flag or environment; otherwise the Docker config's entry for the host; otherwise none.
pub fn resolve(sources: &CredentialSources) -> Result<Option<Credentials>, CredentialsError> {
    let username = sources.username.clone().or_else(|| std::env::var(USERNAME_VAR).ok().filter(|u| !u.is_empty()));
    let password = if let Some(path) = &sources.password_file {
        Some(read_password_file(path)?)
    } else if sources.password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(CredentialsError::Stdin)?;
        Some(line.trim_end_matches(['\r', '\n']).to_string())
    } else {
        std::env::var(PASSWORD_VAR).ok().filter(|p| !p.is_empty())
    };
    match (username, password) {
        (Some(username), Some(password)) => Ok(Some(Credentials::new(username, password))),
        (None, Some(_)) => Err(CredentialsError::NoUsername),
        (_, None) => docker_config_credentials(&sources.registry_host),
    }
}

fn read_password_file(path: &Path) -> Result<String, CredentialsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| CredentialsError::PasswordFile { path: path.to_path_buf(), source })?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// The Docker config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config_path() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var("HOME").ok().map(|home| PathBuf::from(home).join(".docker/config.json"))
}

fn docker_config_credentials(host: &str) -> Result<Option<Credentials>, CredentialsError> {
    let Some(path) = docker_config_path() else { return Ok(None) };
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CredentialsError::DockerConfig { path: path.clone(), message: e.to_string() })?;
    if let Some(helper) = helper_for(&config, host) {
        let from_helper = ask_helper(helper, host).map_err(|problem| CredentialsError::Helper {
            helper: helper.to_string(),
            config: path.clone(),
            host: host.to_string(),
            problem,
        })?;
        if from_helper.is_some() {
            return Ok(from_helper);
        }
    }
    Ok(credentials_from_docker_config(&config, host))
}

/// The credential helper Docker would ask for `host`: its `credHelpers` entry, else `credsStore`.
pub fn helper_for<'a>(config: &'a serde_json::Value, host: &str) -> Option<&'a str> {
    let per_host = config.get("credHelpers").and_then(|helpers| helpers.as_object()).and_then(|helpers| {
        helpers.iter().find(|(key, _)| registry_host_of(key) == host).and_then(|(_, helper)| helper.as_str())
    });
    per_host.or_else(|| config.get("credsStore").and_then(|store| store.as_str())).filter(|name| !name.is_empty())
}

/// Asks `docker-credential-HELPER get` for `host`, as Docker does: the server address on standard input,
/// `{"Username", "Secret"}` on standard output; `None` when the helper has nothing for it. The problem
/// in words otherwise, never with what the helper printed on success (the secret).
fn ask_helper(helper: &str, host: &str) -> Result<Option<Credentials>, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "is not on PATH".to_string(),
            _ => format!("could not be started: {e}"),
        })?;
    // A helper that exits without reading its input is answered by its exit status below.
    let _ = child.stdin.take().expect("piped").write_all(host.as_bytes());
    let output = child.wait_with_output().map_err(|e| format!("could not be read: {e}"))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(if output.stdout.is_empty() { &output.stderr } else { &output.stdout });
        let said = said.trim();
        // The helpers' own words for "nothing stored for that server" (credentials.errCredentialsNotFound).
        if said.contains("credentials not found") {
            return Ok(None);
        }
        return Err(format!("failed ({}): {}", output.status, said.lines().next().unwrap_or("no message")));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("answered something that is not its JSON credentials ({e})"))?;
    if answer.username == "<token>" {
        return Err("gave an identity token; use a user name and password (a robot account)".to_string());
    }
    Ok(Some(Credentials::new(answer.username, answer.secret)))
}

#[derive(serde::Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Finds `host` in a Docker config's `auths` (keys may be bare hosts or URLs) and decodes its `auth`
/// (`base64(user:password)`) or its `username`/`password` fields.
pub fn credentials_from_docker_config(config: &serde_json::Value, host: &str) -> Option<Credentials> {
    let auths = config.get("auths")?.as_object()?;
    let entry = auths.iter().find(|(key, _)| registry_host_of(key) == host).map(|(_, entry)| entry)?;
    if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()).filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (username, password) = decoded.split_once(':')?;
        return Some(Credentials::new(username, password));
    }
    let username = entry.get("username")?.as_str()?;
    let password = entry.get("password")?.as_str()?;
    Some(Credentials::new(username, password))
}

/// `https://harbor.example.com/v2/` -> `harbor.example.com`; `host:5000` stays as it is.
pub fn registry_host_of(key: &str) -> &str {
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    without_scheme.split('/').next().unwrap_or(without_scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let credentials = Credentials::new("robot$proj+ci", "s3cr3t-value");
        let shown = format!("{credentials:?}");
        assert!(shown.contains("robot$proj+ci"));
        assert!(!shown.contains("s3cr3t-value"));
    }

    #[test]
    fn reads_docker_config_auths() {
        let auth = base64::engine::general_purpose::STANDARD.encode("admin:Harbor12345");
        let config = serde_json::json!({"auths": {
            "https://harbor.example.com": {"auth": auth},
            "other:5000": {"username": "u", "password": "p"},
            "empty.example.com": {"auth": ""},
        }});
        assert_eq!(
            credentials_from_docker_config(&config, "harbor.example.com"),
            Some(Credentials::new("admin", "Harbor12345"))
        );
        assert_eq!(credentials_from_docker_config(&config, "other:5000"), Some(Credentials::new("u", "p")));
        assert_eq!(credentials_from_docker_config(&config, "empty.example.com"), None);
        assert_eq!(credentials_from_docker_config(&config, "missing"), None);
    }

    #[test]
    fn the_host_helper_comes_before_the_store() {
        let config = serde_json::json!({
            "credsStore": "desktop",
            "credHelpers": {"harbor.example.com": "pass", "https://other.example.com": "ecr-login"},
        });
        assert_eq!(helper_for(&config, "harbor.example.com"), Some("pass"));
        assert_eq!(helper_for(&config, "other.example.com"), Some("ecr-login"));
        assert_eq!(helper_for(&config, "third.example.com"), Some("desktop"));
        assert_eq!(helper_for(&serde_json::json!({"credsStore": ""}), "a"), None);
        assert_eq!(helper_for(&serde_json::json!({}), "a"), None);
    }

    #[test]
    fn hosts_are_taken_from_keys() {
        assert_eq!(registry_host_of("https://harbor.example.com/v2/"), "harbor.example.com");
        assert_eq!(registry_host_of("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
