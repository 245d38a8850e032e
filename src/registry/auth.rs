//! Registry authentication: `WWW-Authenticate` challenges, the token flow (several scopes in one token,
//! cached per scope set until shortly before expiry), and basic auth where the registry asks for it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::credentials::Credentials;

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

/// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`. Parameter values may be
/// quoted (with `\"` escapes) or bare tokens; unknown schemes give `None`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let parameters = parse_parameters(rest);
            let realm = parameters.get("realm")?.clone();
            Some(Challenge::Bearer { realm, service: parameters.get("service").cloned() })
        }
        _ => None,
    }
}

fn parse_parameters(text: &str) -> HashMap<String, String> {
    let mut parameters = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_ascii_lowercase();
        if name.is_empty() {
            return parameters;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        parameters.insert(name, value);
    }
}

/// A scope as the token service takes it: `repository:<name>:pull,push`.
pub fn repository_scope(repository: &str, actions: &str) -> String {
    format!("repository:{repository}:{actions}")
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Tokens are renewed this long before they expire, so that none expires mid-request.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Registries that give no `expires_in` mean 60 s (distribution's token spec).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

struct CachedToken {
    token: String,
    renew_at: Instant,
    /// The scopes it was asked for.
    scopes: Vec<String>,
}

/// Which scope sets one token serves: the cache key of a scope set.
pub type TokenKey = fn(&[String]) -> String;

/// Fetches and caches bearer tokens, one per scope set (or per what the registry's `TokenKey` says
/// one token serves).
pub struct TokenCache {
    http: crate::http::Client,
    credentials: Option<Credentials>,
    tokens: Mutex<HashMap<String, CachedToken>>,
    /// One fetch at a time per key: the copies that need the same token wait for the one request (a
    /// token request costs a registry a password check; Harbor's is expensive).
    fetching: Mutex<HashMap<String, std::sync::Arc<Mutex<()>>>>,
    key: std::sync::OnceLock<TokenKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the token service at {realm} refused the credentials (HTTP {status})")]
    Refused { realm: String, status: u16 },
    #[error("the token service at {realm} failed: {message}")]
    Failed { realm: String, message: String },
    #[error("the token service at {realm} failed: {source}")]
    Unreachable { realm: String, source: crate::http::TransportError },
}

impl TokenCache {
    pub fn new(http: crate::http::Client, credentials: Option<Credentials>) -> TokenCache {
        TokenCache {
            http,
            credentials,
            tokens: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
            key: std::sync::OnceLock::new(),
        }
    }

    /// From now on, one token serves every scope set with the same `key` (a registry whose tokens are
    /// wider than the scopes asked, such as Harbor's).
    pub fn share_by(&self, key: TokenKey) {
        let _ = self.key.set(key);
    }

    fn key_of(&self, scopes: &[String]) -> String {
        match self.key.get() {
            Some(key) => key(scopes),
            None => scopes.join(" "),
        }
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// Drops every cached token that names a repository of `project`: Harbor ignores a token issued
    /// before its project was created, so a new project gets new tokens.
    pub async fn forget_project(&self, project: &str) {
        let named = format!("repository:{project}/");
        self.tokens.lock().await.retain(|_, token| !token.scopes.iter().any(|scope| scope.starts_with(&named)));
    }

    /// A cached token for exactly these scopes, if still fresh.
    pub async fn cached(&self, scopes: &[String]) -> Option<String> {
        let tokens = self.tokens.lock().await;
        tokens.get(&self.key_of(scopes)).filter(|t| Instant::now() < t.renew_at).map(|t| t.token.clone())
    }

    /// A token for `scopes`: the cached one, or one fetched once for all the callers that ask at the same
    /// time.
    pub async fn get(&self, realm: &str, service: Option<&str>, scopes: &[String]) -> Result<String, AuthError> {
        if let Some(token) = self.cached(scopes).await {
            return Ok(token);
        }
        let key = self.key_of(scopes);
        let gate = self.fetching.lock().await.entry(key.clone()).or_default().clone();
        let _turn = gate.lock().await;
        if let Some(token) = self.cached(scopes).await {
            return Ok(token);
        }
        let fetched = self.fetch(realm, service, scopes).await;
        self.fetching.lock().await.remove(&key);
        fetched
    }

    /// Asks the token service for a token covering every scope at once (repeated `scope=` parameters).
    pub async fn fetch(&self, realm: &str, service: Option<&str>, scopes: &[String]) -> Result<String, AuthError> {
        let mut url = url::Url::parse(realm)
            .map_err(|e| AuthError::Failed { realm: realm.to_string(), message: e.to_string() })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        let request = || {
            let request = self.http.get(url.clone());
            match &self.credentials {
                Some(credentials) => request.basic_auth(&credentials.username, Some(credentials.password())),
                None => request,
            }
        };
        let (status, body) = self.http.fetch_with_retries("token", request).await.map_err(|e| {
            AuthError::Unreachable { realm: realm.to_string(), source: crate::http::TransportError::new(e) }
        })?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(AuthError::Refused { realm: realm.to_string(), status: status.as_u16() });
        }
        if !status.is_success() {
            return Err(AuthError::Failed { realm: realm.to_string(), message: format!("HTTP {status}") });
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| AuthError::Failed {
            realm: realm.to_string(),
            message: format!("unreadable token answer: {e}"),
        })?;
        let token = answer.token.or(answer.access_token).ok_or_else(|| AuthError::Failed {
            realm: realm.to_string(),
            message: "the answer holds no token".to_string(),
        })?;
        let lifetime = answer.expires_in.map(Duration::from_secs).unwrap_or(DEFAULT_LIFETIME);
        let renew_at = Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN).max(Duration::from_secs(1));
        let cached = CachedToken { token: token.clone(), renew_at, scopes: scopes.to_vec() };
        self.tokens.lock().await.insert(self.key_of(scopes), cached);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_harbor_and_distribution_challenges() {
        let harbor = r#"Bearer realm="https://harbor.example.com/service/token",service="harbor-registry",scope="repository:p/r:pull,push""#;
        assert_eq!(
            parse_challenge(harbor),
            Some(Challenge::Bearer {
                realm: "https://harbor.example.com/service/token".into(),
                service: Some("harbor-registry".into())
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge("bearer realm=http://x/token"),
            Some(Challenge::Bearer { realm: "http://x/token".into(), service: None })
        );
        assert_eq!(
            parse_challenge(r#"Bearer service="s", realm="http://x/t\"q""#),
            Some(Challenge::Bearer { realm: "http://x/t\"q".into(), service: Some("s".into()) })
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge("Bearer service=\"s\""), None, "no realm, no token flow");
    }
}
