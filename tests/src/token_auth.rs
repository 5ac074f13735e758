//! A token issuer of the tests' own for docker-registry's `auth: token`: a tiny HTTP server
//! on 127.0.0.1 that answers `GET /token?service=&scope=...` with RS256 JWTs signed by a key
//! and self-signed certificate made with the `openssl` CLI (the certificate rides in the
//! token's `x5c` header and is the registry's `rootcertbundle`). [`TOKEN_USER`] gets every
//! action it asks for; anonymous requests get `pull` only. Token requests are counted, so
//! tests can see that clients cache tokens.

use std::io::{BufRead, BufReader, Write};
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
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let work = dir.to_path_buf();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut user = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line
                        .split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                        .map(|(_, v)| v.trim().to_string())
                        && let Some(b) = v.strip_prefix("Basic ")
                    {
                        let pair = base64::engine::general_purpose::STANDARD
                            .decode(b)
                            .ok()
                            .and_then(|p| String::from_utf8(p).ok())
                            .unwrap_or_default();
                        user = Some(pair);
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let target = request_line.split_whitespace().nth(1).unwrap_or("");
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
                let scopes: Vec<String> = query
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .filter(|(k, _)| *k == "scope")
                    .map(|(_, v)| unescape(v))
                    .collect();
                let (status, body) = match user.as_deref() {
                    Some(pair) if pair != format!("{TOKEN_USER}:{TOKEN_PASSWORD}") => (
                        "401 Unauthorized",
                        r#"{"details":"incorrect username or password"}"#.to_string(),
                    ),
                    _ => {
                        let granted = user.is_some();
                        let access: Vec<serde_json::Value> = scopes
                            .iter()
                            .filter_map(|s| {
                                let mut parts = s.splitn(3, ':');
                                let kind = parts.next()?;
                                let name = parts.next()?;
                                let actions: Vec<&str> = parts
                                    .next()?
                                    .split(',')
                                    .filter(|a| granted || *a == "pull")
                                    .collect();
                                Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
                            })
                            .collect();
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap()
                            .as_secs();
                        let claims = serde_json::json!({
                            "iss": ISSUER,
                            "sub": if granted { TOKEN_USER } else { "" },
                            "aud": SERVICE,
                            "exp": now + 300,
                            "nbf": now - 10,
                            "iat": now,
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
                        (
                            "200 OK",
                            serde_json::json!({"token": token, "access_token": token, "expires_in": 300})
                                .to_string(),
                        )
                    }
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenIssuer {
            port,
            requests,
            cert,
        }
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
