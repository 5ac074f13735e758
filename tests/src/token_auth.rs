//! A token issuer of the tests' own for docker-registry's `auth: token`: a tiny HTTP server
//! on 127.0.0.1 speaking Docker's token protocol (../shared/specs: `GET /token?service=&scope=`
//! with optional basic auth, and the OAuth2 form `POST /token` with `grant_type=password` or
//! `refresh_token`), answering RS256 JWTs signed by a key and self-signed certificate made
//! with the `openssl` CLI (the certificate rides in the token's `x5c` header and is the
//! registry's `rootcertbundle`). [`TOKEN_USER`] gets every action it asks for; anonymous
//! requests get `pull` only. A login's request (`offline_token=true`, or `access_type=offline`)
//! also gets a refresh token, which the refresh grant takes instead of the password (and
//! answers with a new one). Token
//! requests are counted and logged, so tests can see that clients cache tokens and which
//! grant they used; [`TokenIssuer::expire_next`] makes the next tokens already expired (the
//! registry refuses them: a revoked token).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::registry::Registry;

pub const TOKEN_USER: &str = "tokenuser";
pub const TOKEN_PASSWORD: &str = "t0ken-pass";
const ISSUER: &str = "berth-test-issuer";
const SERVICE: &str = "berth-test-registry";

/// A running token issuer (its thread lives as long as the test process; it only ever
/// listens on 127.0.0.1).
pub struct TokenIssuer {
    pub port: u16,
    /// Token requests answered (granted or not).
    pub requests: Arc<AtomicUsize>,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    expire_next: Arc<AtomicUsize>,
    pub cert: PathBuf,
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Percent-decoding of a query value.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request as the issuer read it.
struct TokenRequest {
    method: String,
    /// `user:password` of a basic `Authorization`.
    basic: Option<String>,
    /// Query parameters, then the form body's.
    params: Vec<(String, String)>,
}

impl TokenRequest {
    fn read(stream: &std::net::TcpStream) -> Option<TokenRequest> {
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).ok()?;
        let mut basic = None;
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if key.eq_ignore_ascii_case("authorization")
                && let Some(b) = value.strip_prefix("Basic ")
            {
                basic = base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .ok()
                    .and_then(|p| String::from_utf8(p).ok());
            } else if key.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).ok()?;
        let mut parts = request_line.split_whitespace();
        let method = parts.next()?.to_string();
        let target = parts.next().unwrap_or("");
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let body = String::from_utf8_lossy(&body).into_owned();
        let params = query
            .split('&')
            .chain(body.split('&'))
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (unescape(k), unescape(v)))
            .collect();
        Some(TokenRequest {
            method,
            basic,
            params,
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The scopes asked: `scope` parameters, each possibly several space-separated ones.
    fn scopes(&self) -> Vec<String> {
        self.params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// What the issuer decided: who the token is for (`None`: anonymous), or a refusal.
enum Grant {
    User { refresh: bool },
    Anonymous,
    Refused(&'static str),
}

fn grant(request: &TokenRequest, refresh_tokens: &std::sync::Mutex<Vec<String>>) -> Grant {
    let right = format!("{TOKEN_USER}:{TOKEN_PASSWORD}");
    if request.method == "POST" {
        return match request.param("grant_type") {
            Some("password") => {
                let pair = format!(
                    "{}:{}",
                    request.param("username").unwrap_or_default(),
                    request.param("password").unwrap_or_default()
                );
                if pair != right {
                    return Grant::Refused("incorrect username or password");
                }
                Grant::User {
                    refresh: request.param("access_type") == Some("offline"),
                }
            }
            Some("refresh_token") => {
                let known = refresh_tokens.lock().unwrap();
                if request
                    .param("refresh_token")
                    .is_some_and(|t| known.iter().any(|k| k == t))
                {
                    // Rotated, as OAuth2 services may (the old one stays valid here).
                    Grant::User { refresh: true }
                } else {
                    Grant::Refused("invalid refresh token")
                }
            }
            _ => Grant::Refused("unsupported grant type"),
        };
    }
    match request.basic.as_deref() {
        Some(pair) if pair != right => Grant::Refused("incorrect username or password"),
        Some(_) => Grant::User {
            refresh: request.param("offline_token") == Some("true"),
        },
        None => Grant::Anonymous,
    }
}

impl TokenIssuer {
    /// Makes a key and certificate in `dir` and starts serving tokens.
    pub fn start(dir: &Path) -> TokenIssuer {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=berth-test-token-issuer",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        let der_path = dir.join("token.der");
        openssl(&[
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            der_path.to_str().unwrap(),
        ]);
        let der = std::fs::read(&der_path).expect("read der");
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&der)],
        });
        let header = b64url(header.to_string().as_bytes());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token issuer");
        let port = listener.local_addr().unwrap().port();
        let issuer = TokenIssuer {
            port,
            requests: Arc::default(),
            log: Arc::default(),
            expire_next: Arc::default(),
            cert,
        };
        let counter = issuer.requests.clone();
        let log = issuer.log.clone();
        let expire_next = issuer.expire_next.clone();
        let refresh_tokens = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let work = dir.to_path_buf();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = TokenRequest::read(&stream) else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                log.lock().unwrap().push(match request.method.as_str() {
                    "POST" => format!(
                        "POST {} client_id={}",
                        request.param("grant_type").unwrap_or_default(),
                        request.param("client_id").unwrap_or_default()
                    ),
                    m => format!(
                        "{m}{}{}",
                        if request.basic.is_some() {
                            " basic"
                        } else {
                            ""
                        },
                        if request.param("offline_token") == Some("true") {
                            " offline"
                        } else {
                            ""
                        }
                    ),
                });
                let (status, body) = match grant(&request, &refresh_tokens) {
                    Grant::Refused(why) => (
                        "401 Unauthorized",
                        serde_json::json!({"details": why}).to_string(),
                    ),
                    granted => {
                        let user = matches!(granted, Grant::User { .. });
                        let access: Vec<serde_json::Value> = request
                            .scopes()
                            .iter()
                            .filter_map(|s| {
                                let mut parts = s.splitn(3, ':');
                                let kind = parts.next()?;
                                let name = parts.next()?;
                                let actions: Vec<&str> = parts
                                    .next()?
                                    .split(',')
                                    .filter(|a| user || *a == "pull")
                                    .collect();
                                Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
                            })
                            .collect();
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap()
                            .as_secs();
                        // An expired token: past distribution's 60 s leeway.
                        let expired = expire_next
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        let (exp, nbf) = if expired {
                            (now - 600, now - 900)
                        } else {
                            (now + 300, now - 10)
                        };
                        let claims = serde_json::json!({
                            "iss": ISSUER,
                            "sub": if user { TOKEN_USER } else { "" },
                            "aud": SERVICE,
                            "exp": exp,
                            "nbf": nbf,
                            "iat": nbf,
                            "jti": format!("berth-{n}-{now}"),
                            "access": access,
                        });
                        let signing_input =
                            format!("{header}.{}", b64url(claims.to_string().as_bytes()));
                        let input_path = work.join(format!("jwt-{n}.in"));
                        let sig_path = work.join(format!("jwt-{n}.sig"));
                        std::fs::write(&input_path, &signing_input).unwrap();
                        openssl(&[
                            "dgst",
                            "-sha256",
                            "-sign",
                            work.join("token.key").to_str().unwrap(),
                            "-out",
                            sig_path.to_str().unwrap(),
                            input_path.to_str().unwrap(),
                        ]);
                        let sig = std::fs::read(&sig_path).unwrap();
                        let token = format!("{signing_input}.{}", b64url(&sig));
                        let mut body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300});
                        if let Grant::User { refresh: true } = granted {
                            let refresh = format!("berth-refresh-{n}-{now}");
                            refresh_tokens.lock().unwrap().push(refresh.clone());
                            body["refresh_token"] = refresh.into();
                        }
                        ("200 OK", body.to_string())
                    }
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        issuer
    }

    /// The requests answered so far: `GET`, `GET basic`, `GET basic offline`,
    /// `POST password client_id=docker`, `POST refresh_token client_id=docker`.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Makes the next `n` tokens expired when issued.
    pub fn expire_next(&self, n: usize) {
        self.expire_next.store(n, Ordering::SeqCst);
    }

    /// The `auth:` section of a `berth registry serve` config trusting this issuer (its
    /// certificate's public key, extracted with openssl into `dir`).
    pub fn berth_auth_yaml(&self, dir: &Path) -> String {
        let public = dir.join("issuer-pub.pem");
        openssl(&[
            "x509",
            "-in",
            self.cert.to_str().unwrap(),
            "-pubkey",
            "-noout",
            "-out",
            public.to_str().unwrap(),
        ]);
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    trusted_keys: [{}]\n",
            self.port,
            public.display()
        )
    }

    /// A registry that asks this issuer's tokens; the test's own requests to it go with a
    /// token for [`TOKEN_USER`] over every repository it names (`team/*` patterns are not
    /// needed: the tests' raw requests ask only what they name).
    pub fn registry(&self, test: &str) -> Option<Registry> {
        let yaml = format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.port,
            self.cert.display()
        );
        Registry::start_with_auth_config(test, &yaml, None)
    }
}
