//! Registry authentication, shared by pulls, pushes and logins, as dockerd does it (CNCF
//! distribution's `auth` package). A registry's 401 names the scheme (`WWW-Authenticate`):
//! HTTP basic sends the credentials with each request; Bearer exchanges them at the
//! registry's token service for a token scoped to the repositories and actions at hand:
//! - username and password: `GET realm?service=&scope=&account=` with basic auth; a login
//!   adds `offline_token=true&client_id=docker`, asking for a refresh token, which becomes
//!   the identity token `POST /auth` answers with;
//! - an identity token: the OAuth2 form `POST realm` with `grant_type=refresh_token`;
//! - a registry token (`registrytoken`): sent as it is, never exchanged.
//!
//! Challenges are kept per endpoint and tokens per endpoint, credentials and scopes, for the
//! whole process until they expire: the next pull or push authenticates its first request
//! without asking the token service again. A request refused with a token gets a fresh one
//! once (a token revoked or expired early).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::client::{Credentials, RegistryError, Result};
use crate::pool::error_chain;

/// The `client_id` dockerd names itself with to token services.
const CLIENT_ID: &str = "docker";

/// distribution's floor on a token's lifetime (also its lifetime when the service omits it).
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A token is renewed this long before it runs out: a request in flight must not carry a
/// dead one.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// What a registry's 401 asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Challenges by endpoint (`scheme://host[:port]`).
static CHALLENGES: LazyLock<Mutex<HashMap<String, Challenge>>> = LazyLock::new(Mutex::default);

/// (endpoint, credentials fingerprint, scopes).
type TokenKey = (String, String, String);
type Tokens = Mutex<HashMap<TokenKey, (String, Instant)>>;
static TOKENS: LazyLock<Tokens> = LazyLock::new(Mutex::default);

/// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
pub(crate) fn parse_challenge(value: &str) -> Option<Challenge> {
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

/// The challenge of a 401's headers.
pub(crate) fn challenge_of(headers: &HeaderMap) -> Option<Challenge> {
    headers
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_challenge)
}

/// What [`Auth::apply`] put on a request.
#[derive(PartialEq, Eq)]
enum Sent {
    Nothing,
    Basic,
    Token(String),
}

/// One endpoint's credentials, applied as its challenge asks.
pub(crate) struct Auth {
    /// `scheme://host[:port]` the requests go to.
    endpoint: String,
    credentials: Credentials,
    /// A login: ask the token service for a refresh token.
    offline: bool,
    /// The refresh token the service answered `offline` with.
    refresh_token: Mutex<Option<String>>,
    /// A login's tokens: a login checks the credentials with the token service every time,
    /// so it neither reuses the process's tokens nor leaves its own among them.
    private: Tokens,
    /// One token request at a time: parallel requests that meet the same challenge wait for
    /// the first one's token instead of each asking for one.
    token_fetch: tokio::sync::Mutex<()>,
}

impl Auth {
    pub fn new(endpoint: String, credentials: Credentials) -> Auth {
        Auth {
            endpoint,
            credentials,
            offline: false,
            refresh_token: Mutex::new(None),
            private: Mutex::default(),
            token_fetch: tokio::sync::Mutex::new(()),
        }
    }

    /// For `POST /auth`: token requests ask for a refresh token (dockerd's offline access).
    pub fn for_login(mut self) -> Auth {
        self.offline = true;
        self
    }

    /// The refresh token a login obtained (the identity token to give the client).
    pub fn refresh_token(&self) -> Option<String> {
        self.refresh_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether there is a username and password to answer a basic challenge with.
    pub fn has_basic(&self) -> bool {
        self.basic().is_some()
    }

    fn basic(&self) -> Option<(&str, &str)> {
        match &self.credentials {
            Credentials::Basic { username, password } => Some((username, password)),
            _ => None,
        }
    }

    fn challenge(&self) -> Option<Challenge> {
        CHALLENGES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.endpoint)
            .cloned()
    }

    /// Remembers what the registry asked for in a 401 (`None` when it named no scheme known).
    pub fn learn(&self, headers: &HeaderMap) -> Option<Challenge> {
        let challenge = challenge_of(headers)?;
        CHALLENGES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.endpoint.clone(), challenge.clone());
        Some(challenge)
    }

    /// Who is asking, without the secret: a hash of the credentials, so a client with a wrong
    /// password never gets the token another client's right one obtained.
    fn fingerprint(&self) -> String {
        let text = match &self.credentials {
            Credentials::Anonymous => return String::new(),
            Credentials::Basic { username, password } => format!("basic\0{username}\0{password}"),
            Credentials::Identity { username, token } => format!("identity\0{username}\0{token}"),
            Credentials::Bearer(token) => format!("bearer\0{token}"),
        };
        berth_image::Digest::of_bytes(text.as_bytes()).to_string()
    }

    fn key(&self, scopes: &[String]) -> TokenKey {
        (self.endpoint.clone(), self.fingerprint(), scopes.join(" "))
    }

    fn tokens(&self) -> &Tokens {
        if self.offline { &self.private } else { &TOKENS }
    }

    fn cached(&self, scopes: &[String]) -> Option<String> {
        self.tokens()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.key(scopes))
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.clone())
    }

    /// `request` with what the registry's challenge asks for, as far as it is known.
    fn apply(&self, request: RequestBuilder, scopes: &[String]) -> (RequestBuilder, Sent) {
        if let Credentials::Bearer(token) = &self.credentials {
            return (request.bearer_auth(token), Sent::Token(token.clone()));
        }
        match self.challenge() {
            Some(Challenge::Bearer { .. }) => match self.cached(scopes) {
                Some(t) => (request.bearer_auth(&t), Sent::Token(t)),
                None => (request, Sent::Nothing),
            },
            Some(Challenge::Basic) => match self.basic() {
                Some((u, p)) => (request.basic_auth(u, Some(p)), Sent::Basic),
                None => (request, Sent::Nothing),
            },
            None => (request, Sent::Nothing),
        }
    }

    /// Sends the request `build` makes with the credentials `scopes` need, answering a
    /// challenge (or a token the registry no longer takes) by authenticating and sending it
    /// again. A 401 that cannot be answered is returned as it is; `fail` words a transport
    /// error; a token service's refusal is [`RegistryError::Unauthorized`].
    pub async fn send(
        &self,
        client: &reqwest::Client,
        scopes: &[String],
        build: impl Fn() -> RequestBuilder,
        fail: impl Fn(reqwest::Error) -> RegistryError,
    ) -> Result<Response> {
        // A request sent without a token gets one; one refused with its token (expired or
        // revoked early, or just fetched that way) gets a fresh one; no more than twice.
        let mut renewals = 0;
        loop {
            let (request, sent) = self.apply(build(), scopes);
            let response = request.send().await.map_err(&fail)?;
            if response.status() != StatusCode::UNAUTHORIZED || renewals == 2 {
                return Ok(response);
            }
            renewals += 1;
            match self.learn(response.headers()) {
                Some(Challenge::Bearer { realm, service })
                    if !matches!(self.credentials, Credentials::Bearer(_)) =>
                {
                    self.renew(client, &realm, service.as_deref(), scopes, &sent)
                        .await?;
                }
                // Basic credentials not sent yet (the challenge was not known).
                Some(Challenge::Basic) if self.basic().is_some() && sent != Sent::Basic => {}
                _ => return Ok(response),
            }
        }
    }

    /// Makes sure a token for `scopes` is known, e.g. before parallel uploads all meet the
    /// challenge (the challenge must have been learnt: see [`Auth::learn`]).
    pub async fn prefetch(&self, client: &reqwest::Client, scopes: &[String]) -> Result<()> {
        if let Some(Challenge::Bearer { realm, service }) = self.challenge()
            && !matches!(self.credentials, Credentials::Bearer(_))
            && self.cached(scopes).is_none()
        {
            self.renew(client, &realm, service.as_deref(), scopes, &Sent::Nothing)
                .await?;
        }
        Ok(())
    }

    /// Fetches a token for `scopes`, unless another request did so since `sent` was sent.
    async fn renew(
        &self,
        client: &reqwest::Client,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        sent: &Sent,
    ) -> Result<()> {
        let _one = self.token_fetch.lock().await;
        if let Some(current) = self.cached(scopes)
            && *sent != Sent::Token(current)
        {
            return Ok(());
        }
        let (token, lifetime) = self.fetch_token(client, realm, service, scopes).await?;
        let now = Instant::now();
        let mut tokens = self.tokens().lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, (_, until)| *until > now);
        tokens.insert(
            self.key(scopes),
            (token, now + lifetime.saturating_sub(EXPIRY_MARGIN)),
        );
        Ok(())
    }

    /// Asks the token service for a token covering `scopes`, and its lifetime.
    async fn fetch_token(
        &self,
        client: &reqwest::Client,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(String, Duration)> {
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| RegistryError::Transport(format!("invalid token realm {realm}: {e}")))?;
        let (request, method) = match &self.credentials {
            Credentials::Identity { token, .. } => {
                // The OAuth2 refresh grant (dockerd's fetchTokenWithOAuth).
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", token)
                    .append_pair("service", service.unwrap_or_default())
                    .append_pair("client_id", CLIENT_ID)
                    .append_pair("scope", &scopes.join(" "));
                let request = client
                    .post(url.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form.finish());
                (request, "Post")
            }
            _ => {
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(s) = service {
                        query.append_pair("service", s);
                    }
                    for s in scopes {
                        query.append_pair("scope", s);
                    }
                    if self.offline {
                        query
                            .append_pair("offline_token", "true")
                            .append_pair("client_id", CLIENT_ID);
                    }
                    if let Some((user, _)) = self.basic() {
                        query.append_pair("account", user);
                    }
                }
                let mut request = client.get(url.clone());
                if let Some((u, p)) = self.basic() {
                    request = request.basic_auth(u, Some(p));
                }
                (request, "Get")
            }
        };
        let response = request.send().await.map_err(|e| {
            RegistryError::Transport(format!("{method} \"{realm}\": {}", error_chain(&e)))
        })?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized(match self.credentials {
                Credentials::Identity { .. } => {
                    "unauthorized: the identity token was refused; log in again".into()
                }
                _ => "unauthorized: incorrect username or password".into(),
            }));
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
            #[serde(default)]
            refresh_token: String,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            RegistryError::Transport(format!("invalid answer from token service {realm}: {e}"))
        })?;
        // `access_token` and `token` mean the same (OAuth2's name and Docker's).
        let token = if parsed.access_token.is_empty() {
            parsed.token
        } else {
            parsed.access_token
        };
        if token.is_empty() {
            return Err(RegistryError::Transport(format!(
                "token service {realm}: authorization server did not include a token in the response"
            )));
        }
        if self.offline && !parsed.refresh_token.is_empty() {
            *self.refresh_token.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(parsed.refresh_token);
        }
        let lifetime = parsed
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(MIN_TOKEN_LIFETIME)
            .max(MIN_TOKEN_LIFETIME);
        Ok((token, lifetime))
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
    fn fingerprints_tell_secrets_apart_without_holding_them() {
        let auth = |username: &str, password: &str| {
            Auth::new(
                "http://r".into(),
                Credentials::Basic {
                    username: username.into(),
                    password: password.into(),
                },
            )
        };
        let right = auth("ci", "s3cret").fingerprint();
        assert_eq!(right, auth("ci", "s3cret").fingerprint());
        assert_ne!(right, auth("ci", "wrong").fingerprint());
        assert!(!right.contains("s3cret"));
        assert_eq!(
            Auth::new("http://r".into(), Credentials::Anonymous).fingerprint(),
            ""
        );
    }
}
