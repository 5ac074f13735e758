//! One registry, spoken to directly over reqwest for pushes: the upload protocol needs what
//! oci-client does not expose (the upload session's `Location` and `Range`, `Content-Range`
//! on PATCH, a status GET to resume, a mount with a token scoped to two repositories).
//!
//! Auth follows the registry's challenge: HTTP basic where it asks for basic, Bearer tokens
//! from its token service (`WWW-Authenticate: Bearer realm=,service=,scope=`) where it asks
//! for those. Tokens are cached process-wide per registry, user and scope set until they
//! expire, so a push of ten layers (or the next push) asks the token service once.

use crate::pool::error_chain;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::client::{Credentials, RegistryError, Result};

/// How long a token lives when the token service does not say (the spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A read that gets no byte for this long is a stalled registry, not a slow one.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

type TokenKey = (String, String, String);
static TOKENS: LazyLock<Mutex<HashMap<TokenKey, (String, Instant)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// What a registry's 401 asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// A response, read whole (upload answers are small; blob bodies are never read here).
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A registry endpoint with credentials.
pub(crate) struct Session {
    client: reqwest::Client,
    /// `http://127.0.0.1:5000`.
    pub base: String,
    /// `127.0.0.1:5000`.
    pub registry: String,
    credentials: Credentials,
    challenge: Mutex<Option<Challenge>>,
    /// One token request at a time: parallel uploads that meet the same challenge wait for
    /// the first one's token instead of each asking for one.
    token_fetch: tokio::sync::Mutex<()>,
}

/// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
fn parse_challenge(value: &str) -> Option<Challenge> {
    let (scheme, params) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    // Values are quoted and may contain commas (a scope with `pull,push`).
    let mut rest = params;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        match key {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            _ => {}
        }
        rest = next;
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
    })
}

impl Session {
    pub fn new(base: String, registry: String, credentials: Credentials) -> Result<Session> {
        crate::client::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(READ_TIMEOUT)
            // Upload locations are followed by hand (they carry the session state).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RegistryError::Transport(format!("cannot build an HTTP client: {e}")))?;
        Ok(Session {
            client,
            base,
            registry,
            credentials,
            challenge: Mutex::new(None),
            token_fetch: tokio::sync::Mutex::new(()),
        })
    }

    /// `location` (absolute, or a path the registry answered with) as a full URL.
    pub fn url(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }

    fn user(&self) -> String {
        match &self.credentials {
            Credentials::Basic { username, .. } => username.clone(),
            Credentials::Bearer(_) => "<token>".into(),
            Credentials::Anonymous => String::new(),
        }
    }

    fn basic(&self) -> Option<(String, String)> {
        match &self.credentials {
            Credentials::Basic { username, password } => Some((username.clone(), password.clone())),
            _ => None,
        }
    }

    fn cached_token(&self, scopes: &[String]) -> Option<String> {
        let key = (self.registry.clone(), self.user(), scopes.join(" "));
        let tokens = TOKENS.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(&key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.clone())
    }

    /// Asks the token service for a token covering `scopes`.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for s in scopes {
            query.push(("scope", s));
        }
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| RegistryError::Transport(format!("invalid token realm {realm}: {e}")))?;
        url.query_pairs_mut().extend_pairs(query);
        let mut request = self.client.get(url);
        if let Some((u, p)) = self.basic() {
            request = request.basic_auth(u, Some(p));
        }
        let response = request.send().await.map_err(|e| {
            RegistryError::Transport(format!("Get \"{realm}\": {}", error_chain(&e)))
        })?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized(
                "unauthorized: incorrect username or password".into(),
            ));
        }
        if !status.is_success() {
            return Err(RegistryError::Transport(format!(
                "token service {realm} answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            RegistryError::Transport(format!("invalid answer from token service {realm}: {e}"))
        })?;
        let token = if parsed.token.is_empty() {
            parsed.access_token
        } else {
            parsed.token
        };
        let lifetime = parsed
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        // Renewed a little before it runs out: a request in flight must not carry a dead one.
        let until = Instant::now() + lifetime.saturating_sub(Duration::from_secs(5));
        let key = (self.registry.clone(), self.user(), scopes.join(" "));
        TOKENS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (token.clone(), until));
        Ok(token)
    }

    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        scopes: &[String],
    ) -> reqwest::RequestBuilder {
        if let Credentials::Bearer(token) = &self.credentials {
            return request.bearer_auth(token);
        }
        let challenge = self
            .challenge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match challenge {
            Some(Challenge::Bearer { .. }) => match self.cached_token(scopes) {
                Some(t) => request.bearer_auth(t),
                None => request,
            },
            Some(Challenge::Basic) => match self.basic() {
                Some((u, p)) => request.basic_auth(u, Some(p)),
                None => request,
            },
            None => request,
        }
    }

    /// Sends a request built by `build` with the credentials `scopes` need, answering one
    /// challenge (and a token that the registry no longer takes) by authenticating and sending
    /// it again. Transport failures are `RegistryError::Transport` (worth a retry).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
        scopes: &[String],
    ) -> Result<Answer> {
        let mut renewed = false;
        loop {
            let mut request = self.client.request(method.clone(), url);
            for (k, v) in headers {
                request = request.header(*k, v);
            }
            if let Some(b) = &body {
                request = request.body(b.clone());
            }
            let request = self.authorize(request, scopes);
            let response = request.send().await.map_err(|e| {
                RegistryError::Transport(format!(
                    "{} \"{url}\": {}",
                    title_case(method.as_str()),
                    error_chain(&e)
                ))
            })?;
            let status = response.status();
            let headers = response.headers().clone();
            let body_bytes = if method == Method::HEAD {
                Bytes::new()
            } else {
                response.bytes().await.map_err(|e| {
                    RegistryError::Transport(format!("{} \"{url}\": {}", method, error_chain(&e)))
                })?
            };
            if status == StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                let challenge = headers
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                match &challenge {
                    Some(Challenge::Bearer { realm, service })
                        if !matches!(self.credentials, Credentials::Bearer(_)) =>
                    {
                        let sent = self.cached_token(scopes);
                        let _one = self.token_fetch.lock().await;
                        // Another request may have fetched a token meanwhile.
                        let cached = self.cached_token(scopes);
                        if cached.is_none() || cached == sent {
                            self.fetch_token(realm, service.as_deref(), scopes).await?;
                        }
                    }
                    Some(Challenge::Basic) if self.basic().is_some() => {}
                    _ => {
                        return Ok(Answer {
                            status,
                            headers,
                            body: body_bytes,
                        });
                    }
                }
                *self.challenge.lock().unwrap_or_else(|e| e.into_inner()) = challenge;
                continue;
            }
            return Ok(Answer {
                status,
                headers,
                body: body_bytes,
            });
        }
    }

    /// Pings `/v2/` (as dockerd does before a push) to learn how the registry authenticates,
    /// and fetches the token `scopes` need before parallel uploads all meet the challenge.
    pub async fn prepare(&self, scopes: &[String]) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let response =
            self.client.get(&url).send().await.map_err(|e| {
                RegistryError::Transport(format!("Get \"{url}\": {}", error_chain(&e)))
            })?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(());
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        *self.challenge.lock().unwrap_or_else(|e| e.into_inner()) = challenge.clone();
        if let Some(Challenge::Bearer { realm, service }) = challenge
            && !matches!(self.credentials, Credentials::Bearer(_))
            && self.cached_token(scopes).is_none()
        {
            self.fetch_token(&realm, service.as_deref(), scopes).await?;
        }
        Ok(())
    }

    /// Docker's words for a refusal (401/403) from the registry.
    pub fn refusal(&self, answer: &Answer) -> RegistryError {
        let challenge = answer
            .header(WWW_AUTHENTICATE.as_str())
            .and_then(parse_challenge);
        if answer.status == StatusCode::UNAUTHORIZED
            && challenge == Some(Challenge::Basic)
            && self.basic().is_none()
        {
            return RegistryError::Unauthorized("no basic auth credentials".into());
        }
        if let Some(text) = error_text(&answer.body) {
            return RegistryError::Unauthorized(text);
        }
        RegistryError::Unauthorized(if answer.status == StatusCode::FORBIDDEN {
            "denied: requested access to the resource is denied".into()
        } else {
            "unauthorized: authentication required".into()
        })
    }

    /// An unexpected answer as an error: refusals in Docker's words, the rest with the
    /// registry's own error text.
    pub fn unexpected(&self, what: &str, answer: &Answer) -> RegistryError {
        if answer.status == StatusCode::UNAUTHORIZED || answer.status == StatusCode::FORBIDDEN {
            return self.refusal(answer);
        }
        let text = error_text(&answer.body).unwrap_or_else(|| {
            format!(
                "unexpected status {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body).trim()
            )
        });
        if answer.status.is_server_error() {
            RegistryError::Transport(format!("{what}: {text}"))
        } else {
            RegistryError::Invalid(format!("{what}: {text}"))
        }
    }

    /// `repository:<path>:pull,push`.
    pub fn push_scope(path: &str) -> String {
        format!("repository:{path}:pull,push")
    }

    /// `repository:<path>:pull`.
    pub fn pull_scope(path: &str) -> String {
        format!("repository:{path}:pull")
    }
}

/// `errcode` text of a registry's error body: `unauthorized: authentication required`.
pub(crate) fn error_text(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    let first = envelope.errors.first()?;
    Some(format!(
        "{}: {}",
        first.code.to_lowercase().replace('_', " "),
        first.message
    ))
}

fn title_case(method: &str) -> String {
    let lower = method.to_lowercase();
    let mut chars = lower.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: Some("reg".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn registry_error_bodies() {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#;
        assert_eq!(
            error_text(body).unwrap(),
            "unauthorized: authentication required"
        );
        assert_eq!(error_text(b"nope"), None);
    }
}
