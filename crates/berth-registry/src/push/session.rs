//! One registry, spoken to directly over reqwest for pushes: the upload protocol needs what
//! oci-client does not expose (the upload session's `Location` and `Range`, `Content-Range`
//! on PATCH, a status GET to resume, a mount with a token scoped to two repositories).
//! Authentication is [`crate::auth`]'s, shared with pulls (tokens cached process-wide per
//! registry, credentials and scope set until they expire, so a push of ten layers, or the
//! next push, asks the token service once). The endpoint and its TLS files are the pull
//! side's: `certs.d` CAs and client certificates, HTTPS then HTTP for an insecure registry.

use crate::pool::error_chain;

use bytes::Bytes;
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::auth::{Auth, Challenge, parse_challenge};
use crate::client::{ClientCache, Credentials, RegistryError, RemoteOptions, Result, endpoints};

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
    auth: Auth,
}

impl Session {
    /// Opens a session with `registry`: pings `/v2/` (as dockerd does before a push) on each of
    /// its endpoints until one answers, learns how it authenticates, and fetches the token
    /// `scopes` need before parallel uploads all meet the challenge.
    pub async fn open(
        registry: &str,
        credentials: Credentials,
        options: &RemoteOptions,
        scopes: &[String],
    ) -> Result<Session> {
        crate::client::install_crypto_provider();
        let clients = ClientCache::default();
        let mut last = None;
        for ep in endpoints(registry, options)
            .into_iter()
            .filter(|e| !e.mirror)
        {
            let client = clients.get(&ep, options)?.upload;
            let base = ep.base();
            let url = format!("{base}/v2/");
            let response = match client.get(&url).send().await {
                Ok(r) => r,
                Err(e) => {
                    // Not reachable this way: the next endpoint (plain HTTP) is tried.
                    last = Some(RegistryError::Transport(format!(
                        "Get \"{url}\": {}",
                        error_chain(&e)
                    )));
                    continue;
                }
            };
            let session = Session {
                client,
                auth: Auth::new(base.clone(), credentials),
                base,
                registry: registry.to_string(),
            };
            if response.status() == StatusCode::UNAUTHORIZED {
                session.auth.learn(response.headers());
                session.auth.prefetch(&session.client, scopes).await?;
            }
            return Ok(session);
        }
        Err(last.unwrap_or_else(|| RegistryError::Transport("no endpoint".into())))
    }

    /// `location` (absolute, or a path the registry answered with) as a full URL.
    pub fn url(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }

    /// Sends a request with the credentials `scopes` need, answering one challenge (and a
    /// token that the registry no longer takes) by authenticating and sending it again.
    /// Transport failures are `RegistryError::Transport` (worth a retry).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
        scopes: &[String],
    ) -> Result<Answer> {
        let fail = |e: reqwest::Error| {
            RegistryError::Transport(format!(
                "{} \"{url}\": {}",
                title_case(method.as_str()),
                error_chain(&e)
            ))
        };
        let build = || {
            let mut request = self.client.request(method.clone(), url);
            for (k, v) in headers {
                request = request.header(*k, v);
            }
            if let Some(b) = &body {
                request = request.body(b.clone());
            }
            request
        };
        let response = self.auth.send(&self.client, scopes, build, fail).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = if method == Method::HEAD {
            Bytes::new()
        } else {
            response.bytes().await.map_err(fail)?
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Docker's words for a refusal (401/403) from the registry.
    pub fn refusal(&self, answer: &Answer) -> RegistryError {
        let challenge = answer
            .header(WWW_AUTHENTICATE.as_str())
            .and_then(parse_challenge);
        if answer.status == StatusCode::UNAUTHORIZED
            && challenge == Some(Challenge::Basic)
            && !self.auth.has_basic()
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
    fn registry_error_bodies() {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#;
        assert_eq!(
            error_text(body).unwrap(),
            "unauthorized: authentication required"
        );
        assert_eq!(error_text(b"nope"), None);
    }
}
