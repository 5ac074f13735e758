//! Who may do what. Three modes: none; htpasswd (HTTP basic auth, bcrypt hashes); and
//! docker's token auth, where the registry accepts `Bearer` JWTs whose `access` claim grants
//! `pull`/`push`/`delete` on repositories — signed by this server's own issuer (its `/token`
//! endpoint, users from htpasswd, grants from an access file) or by an external issuer whose
//! public key is configured. Challenges are the `WWW-Authenticate` values docker understands.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::HeaderMap;
use jsonwebtoken::{Algorithm as JwtAlg, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::config::{AuthConfig, TokenConfig};

use crate::error::{RegistryError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// A resource and the action wanted on it (`repository:team/app:push`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub kind: String,
    pub name: String,
    pub action: Action,
}

impl Scope {
    pub fn repository(name: &str, action: Action) -> Scope {
        Scope {
            kind: "repository".into(),
            name: name.into(),
            action,
        }
    }

    pub fn catalog() -> Scope {
        Scope {
            kind: "registry".into(),
            name: "catalog".into(),
            action: Action::Pull,
        }
    }

    /// As a challenge's `scope`: a push asks for `pull,push`, as docker does.
    fn challenge(&self) -> String {
        let actions = match (self.kind.as_str(), self.action) {
            ("registry", _) => "*",
            (_, Action::Push) => "pull,push",
            (_, a) => a.as_str(),
        };
        format!("{}:{}:{}", self.kind, self.name, actions)
    }
}

/// One entry of the `access` claim.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    #[serde(default)]
    access: Vec<Grant>,
}

/// A rule of the access file: `account` (or `*`) may do `actions` on repositories matching
/// `name` (exact, or a prefix ending in `*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    pub account: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// htpasswd users (bcrypt only, as distribution).
struct Users {
    hashes: Vec<(String, String)>,
    /// `sha256(user:password)` of pairs already verified: bcrypt costs tens of ms by design,
    /// and docker sends credentials with every request.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Users {
    fn load(path: &Path) -> Result<Users, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read htpasswd file {}: {e}", path.display()))?;
        let hashes = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(u, h)| (u.to_string(), h.trim().to_string()))
            .collect();
        Ok(Users {
            hashes,
            verified: Mutex::new(HashSet::new()),
        })
    }

    fn verify(&self, user: &str, password: &str) -> bool {
        let key: [u8; 32] = sha2::Sha256::digest(format!("{user}:{password}")).into();
        if self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return true;
        }
        let ok = self
            .hashes
            .iter()
            .find(|(u, _)| u == user)
            .is_some_and(|(_, h)| bcrypt::verify(password, h).unwrap_or(false));
        if ok {
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key);
        }
        ok
    }
}

struct TokenAuth {
    config: TokenConfig,
    /// Keys tokens may be signed with (ours first).
    keys: Vec<(JwtAlg, DecodingKey)>,
    signer: Option<EncodingKey>,
    users: Option<Users>,
    rules: Vec<AccessRule>,
}

enum Mode {
    None,
    Basic { realm: String, users: Users },
    Token(Box<TokenAuth>),
}

pub struct Auth {
    mode: Mode,
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ").or(v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ").or(v.strip_prefix("bearer "))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads a public key PEM (EC or RSA) for verifying tokens.
fn decoding_key(path: &Path) -> Result<(JwtAlg, DecodingKey), String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
        return Ok((JwtAlg::ES256, k));
    }
    DecodingKey::from_rsa_pem(&pem)
        .map(|k| (JwtAlg::RS256, k))
        .map_err(|e| format!("{}: not an EC or RSA public key: {e}", path.display()))
}

/// The verifying half of our own ES256 signing key.
fn own_public_key(pkcs8_pem: &[u8], path: &Path) -> Result<DecodingKey, String> {
    let text = String::from_utf8_lossy(pkcs8_pem);
    let b64: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("{}: not PEM: {e}", path.display()))?;
    let rng = ring::rand::SystemRandom::new();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &der,
        &rng,
    )
    .map_err(|e| format!("{}: not a PKCS#8 P-256 key: {e}", path.display()))?;
    use ring::signature::KeyPair as _;
    let point = pair.public_key().as_ref();
    // An uncompressed point: 0x04 | x (32) | y (32).
    let b64url = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    DecodingKey::from_ec_components(&b64url(&point[1..33]), &b64url(&point[33..65]))
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Auth {
    pub fn none() -> Auth {
        Auth { mode: Mode::None }
    }

    pub fn from_config(config: Option<&AuthConfig>) -> Result<Auth, String> {
        let config = config.cloned().unwrap_or_default();
        let mode = match (&config.htpasswd, &config.token) {
            (None, None) => Mode::None,
            (Some(_), Some(_)) => {
                return Err("auth: choose htpasswd or token, not both".into());
            }
            (Some(h), None) => Mode::Basic {
                realm: h.realm.clone(),
                users: Users::load(&h.path)?,
            },
            (None, Some(t)) => {
                let mut keys = Vec::new();
                let mut signer = None;
                if let Some(path) = &t.signing_key {
                    let pem = std::fs::read(path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    signer = Some(
                        EncodingKey::from_ec_pem(&pem)
                            .map_err(|e| format!("{}: {e}", path.display()))?,
                    );
                    keys.push((JwtAlg::ES256, own_public_key(&pem, path)?));
                }
                for path in &t.trusted_keys {
                    keys.push(decoding_key(path)?);
                }
                if keys.is_empty() {
                    return Err("token auth needs a signing_key or trusted_keys".into());
                }
                let users = t.htpasswd.as_deref().map(Users::load).transpose()?;
                let rules = match &t.access {
                    Some(p) => {
                        let text = std::fs::read_to_string(p)
                            .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                        if text.trim_start().starts_with('[') {
                            serde_json::from_str(&text)
                                .map_err(|e| format!("{}: {e}", p.display()))?
                        } else {
                            serde_yaml_ng::from_str(&text)
                                .map_err(|e| format!("{}: {e}", p.display()))?
                        }
                    }
                    None => Vec::new(),
                };
                Mode::Token(Box::new(TokenAuth {
                    config: t.clone(),
                    keys,
                    signer,
                    users,
                    rules,
                }))
            }
        };
        Ok(Auth { mode })
    }

    /// Whether anyone may do anything (no auth configured).
    pub fn is_open(&self) -> bool {
        matches!(self.mode, Mode::None)
    }

    /// Whether this server issues tokens (serves `/token`).
    pub fn issues_tokens(&self) -> bool {
        matches!(&self.mode, Mode::Token(t) if t.signer.is_some())
    }

    /// Allows the request, or says why not: `UNAUTHORIZED` with a challenge.
    pub async fn check(&self, headers: &HeaderMap, scope: Option<&Scope>) -> Result<()> {
        match &self.mode {
            Mode::None => Ok(()),
            Mode::Basic { realm, users } => {
                let ok = match basic_credentials(headers) {
                    // bcrypt is CPU work by design: off the async workers.
                    Some((u, p)) => tokio::task::block_in_place(|| users.verify(&u, &p)),
                    None => false,
                };
                if ok {
                    Ok(())
                } else {
                    Err(RegistryError::Unauthorized {
                        challenge: format!("Basic realm=\"{realm}\""),
                    })
                }
            }
            Mode::Token(t) => {
                let challenge = || {
                    let mut c = format!(
                        "Bearer realm=\"{}\",service=\"{}\"",
                        t.config.realm, t.config.service
                    );
                    if let Some(s) = scope {
                        c.push_str(&format!(",scope=\"{}\"", s.challenge()));
                    }
                    c
                };
                let Some(token) = bearer(headers) else {
                    return Err(RegistryError::Unauthorized {
                        challenge: challenge(),
                    });
                };
                let claims = t.verify(token).map_err(|e| {
                    tracing::debug!(error = %e, "token refused");
                    RegistryError::Unauthorized {
                        challenge: format!("{},error=\"invalid_token\"", challenge()),
                    }
                })?;
                match scope {
                    None => Ok(()),
                    Some(s) if granted(&claims.access, s) => Ok(()),
                    Some(_) => Err(RegistryError::Unauthorized {
                        challenge: format!("{},error=\"insufficient_scope\"", challenge()),
                    }),
                }
            }
        }
    }

    /// Whether the request may do `scope` (a mount's source): no challenge, just yes or no.
    pub async fn allows(&self, headers: &HeaderMap, scope: &Scope) -> bool {
        self.check(headers, Some(scope)).await.is_ok()
    }

    /// The `/token` endpoint: a signed token with the grants the access file gives the
    /// (basic-auth) account for the requested scopes.
    pub fn issue(
        &self,
        headers: &HeaderMap,
        query: &[(String, String)],
    ) -> Result<serde_json::Value> {
        let Mode::Token(t) = &self.mode else {
            return Err(RegistryError::Unsupported(
                "this registry issues no tokens".into(),
            ));
        };
        let Some(signer) = &t.signer else {
            return Err(RegistryError::Unsupported(
                "this registry issues no tokens".into(),
            ));
        };
        let account = match basic_credentials(headers) {
            Some((u, p)) => {
                let ok = t
                    .users
                    .as_ref()
                    .is_some_and(|users| tokio::task::block_in_place(|| users.verify(&u, &p)));
                if !ok {
                    return Err(RegistryError::Unauthorized {
                        challenge: format!("Basic realm=\"{}\"", t.config.realm),
                    });
                }
                u
            }
            None => String::new(),
        };
        let mut access = Vec::new();
        for (k, v) in query {
            if k != "scope" {
                continue;
            }
            for scope in v.split(' ') {
                let mut parts = scope.rsplitn(2, ':');
                let (Some(actions), Some(rest)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let Some((kind, name)) = rest.split_once(':') else {
                    continue;
                };
                let allowed: Vec<String> = actions
                    .split(',')
                    .filter(|a| t.allowed(&account, kind, name, a))
                    .map(str::to_string)
                    .collect();
                access.push(Grant {
                    kind: kind.to_string(),
                    name: name.to_string(),
                    actions: allowed,
                });
            }
        }
        let issued = now();
        let claims = Claims {
            iss: t.config.issuer.clone(),
            sub: account,
            aud: t.config.service.clone(),
            exp: issued + t.config.ttl_secs,
            nbf: issued.saturating_sub(10),
            iat: issued,
            jti: format!("{:032x}", rand::random::<u128>()),
            access,
        };
        let token = jsonwebtoken::encode(&Header::new(JwtAlg::ES256), &claims, signer)
            .map_err(|e| RegistryError::Denied(format!("cannot sign a token: {e}")))?;
        Ok(serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": t.config.ttl_secs,
            "issued_at": chrono_like(issued),
        }))
    }
}

/// RFC 3339 of a Unix time, without a date crate (UTC, seconds).
fn chrono_like(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn granted(access: &[Grant], scope: &Scope) -> bool {
    access.iter().any(|g| {
        g.kind == scope.kind
            && g.name == scope.name
            && g.actions
                .iter()
                .any(|a| a == "*" || a == scope.action.as_str())
    })
}

impl TokenAuth {
    fn verify(&self, token: &str) -> Result<Claims, String> {
        let mut last = String::from("no key");
        for (alg, key) in &self.keys {
            let mut v = Validation::new(*alg);
            v.set_audience(&[&self.config.service]);
            v.set_issuer(&[&self.config.issuer]);
            match jsonwebtoken::decode::<Claims>(token, key, &v) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    fn allowed(&self, account: &str, kind: &str, name: &str, action: &str) -> bool {
        self.rules.iter().any(|r| {
            (r.account == "*" || (!account.is_empty() && r.account == account))
                && (kind == "repository" || (kind == "registry" && r.name == "catalog"))
                && match r.name.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => r.name == name,
                }
                && r.actions.iter().any(|a| a == "*" || a == action)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_and_challenges() {
        let s = Scope::repository("team/app", Action::Push);
        assert_eq!(s.challenge(), "repository:team/app:pull,push");
        let g = vec![Grant {
            kind: "repository".into(),
            name: "team/app".into(),
            actions: vec!["pull".into()],
        }];
        assert!(!granted(&g, &s));
        assert!(granted(&g, &Scope::repository("team/app", Action::Pull)));
        assert_eq!(chrono_like(0), "1970-01-01T00:00:00Z");
        assert_eq!(chrono_like(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
