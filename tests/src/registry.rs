//! A real registry for the pull tests: Debian's `docker-registry` (CNCF distribution) on
//! 127.0.0.1 with a config and storage of its own (the package's config binds every
//! interface: never used), and a small raw-HTTP pusher to put blobs and manifests in it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::api::{ApiResponse, parse_response};
use crate::daemon::ChildGuard;
use crate::fixtures::{ImageSpec, sha256_hex};

pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A running registry, killed (by its PID) with its storage removed when dropped.
pub struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    /// `Authorization` for the test's own requests (a registry with htpasswd auth).
    authorization: Option<String>,
    _child: ChildGuard,
}

/// The user of [`Registry::start_with_basic_auth`] and its password.
pub const BASIC_USER: &str = "ci";
pub const BASIC_PASSWORD: &str = "s3cret";
/// bcrypt of [`BASIC_PASSWORD`] (distribution's htpasswd takes bcrypt only).
const BASIC_HASH: &str = "$2b$10$Wv6FD/sLhcYISxAUnBWq1eWsMVc5o1nT1xRuIP6epl1C3yb7mhFcq";

/// A free port on 127.0.0.1 (bound, then released for the registry to take).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

impl Registry {
    /// Starts a registry, or returns `None` (after saying why) when it is not installed.
    pub fn start(test: &str) -> Option<Registry> {
        Registry::start_with(test, false)
    }

    /// Like [`Registry::start`], requiring HTTP basic auth ([`BASIC_USER`], [`BASIC_PASSWORD`]).
    pub fn start_with_basic_auth(test: &str) -> Option<Registry> {
        Registry::start_with(test, true)
    }

    /// Like [`Registry::start`], with `auth_yaml` (an `auth:` section) in its config; the
    /// test's own requests carry `authorization` when given.
    pub fn start_with_auth_config(
        test: &str,
        auth_yaml: &str,
        authorization: Option<String>,
    ) -> Option<Registry> {
        Registry::start_configured(test, false, Some((auth_yaml.to_string(), authorization)))
    }

    fn start_with(test: &str, basic_auth: bool) -> Option<Registry> {
        Registry::start_configured(test, basic_auth, None)
    }

    fn start_configured(
        test: &str,
        basic_auth: bool,
        custom_auth: Option<(String, Option<String>)>,
    ) -> Option<Registry> {
        if !Path::new(REGISTRY_BINARY).exists() {
            eprintln!(
                "skipped {test}: {REGISTRY_BINARY} is missing (apt package docker-registry; see scripts/install-test-peers.sh)"
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("registry dir");
        let port = free_port();
        let config = dir.path().join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        let mut authorization = None;
        if basic_auth {
            yaml.push_str(&basic_auth_yaml(dir.path()));
            authorization = Some(format!(
                "Basic {}",
                base64_encode(format!("{BASIC_USER}:{BASIC_PASSWORD}").as_bytes())
            ));
        }
        if let Some((auth_yaml, auth_header)) = custom_auth.clone() {
            yaml.push_str(&auth_yaml);
            authorization = auth_header;
        }
        std::fs::write(&config, yaml).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Registry {
            dir,
            port,
            authorization,
            _child: ChildGuard(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // A token-auth registry answers 401 until a client has a token.
            if matches!(probe_status(port), Some(200 | 401)) {
                break;
            }
            // The free port was taken meanwhile (by a server of a test running beside this
            // one): the registry could not listen and exited; again on another port.
            if matches!(registry._child.0.try_wait(), Ok(Some(_))) {
                return Registry::start_configured(test, basic_auth, custom_auth);
            }
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                std::fs::read_to_string(registry.dir.path().join("registry.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(registry)
    }

    /// Berth's own registry (`berth registry serve`) with `config_yaml` (may be empty) as its
    /// config file (`{PORT}` in it becomes the port it listens on) and its storage in
    /// `<dir>/data`; the test's requests carry `authorization`.
    pub fn start_berth(config_yaml: &str, authorization: Option<String>) -> Registry {
        let dir = tempfile::tempdir().expect("registry dir");
        let port = free_port();
        let config = dir.path().join("registry.yaml");
        std::fs::write(&config, config_yaml.replace("{PORT}", &port.to_string()))
            .expect("write registry config");
        Registry::spawn_berth(dir, port, authorization)
    }

    /// Starts `berth registry serve` on `dir` (config `registry.yaml`) and `port`.
    fn spawn_berth(dir: tempfile::TempDir, port: u16, authorization: Option<String>) -> Registry {
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new(crate::daemon::binary("berth"))
            .args(["registry", "serve", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--root")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(dir.path().join("registry.yaml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start berth registry serve");
        let registry = Registry {
            dir,
            port,
            authorization,
            _child: ChildGuard(child),
        };
        registry.wait_ready();
        registry
    }

    /// Stops the server (SIGKILL, as a crash) and starts it again on the same storage and port.
    pub fn restart_berth(self) -> Registry {
        let Registry {
            dir,
            port,
            authorization,
            _child,
        } = self;
        drop(_child);
        Registry::spawn_berth(dir, port, authorization)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Sets the `Authorization` the test's own requests carry.
    pub fn set_authorization(&mut self, authorization: Option<String>) {
        self.authorization = authorization;
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && matches!(self.request("GET", "/v2/", &[], &[]).status, 200 | 401)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// One request on a fresh connection.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> ApiResponse {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect registry");
        stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host(),
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(a) = &self.authorization {
            head.push_str(&format!("Authorization: {a}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("write head");
        stream.write_all(body).expect("write body");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read response");
        parse_response(&raw, method == "HEAD")
    }

    /// Uploads a blob (monolithically); returns its digest.
    pub fn push_blob(&self, repo: &str, blob: &[u8]) -> String {
        let digest = format!("sha256:{}", sha256_hex(blob));
        let start = self.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[]);
        assert_eq!(start.status, 202, "start upload: {}", start.text());
        let location = start
            .header("Location")
            .expect("upload location")
            .to_string();
        let path = location
            .strip_prefix(&format!("http://{}", self.host()))
            .unwrap_or(&location);
        let sep = if path.contains('?') { '&' } else { '?' };
        let put = self.request(
            "PUT",
            &format!("{path}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            blob,
        );
        assert_eq!(put.status, 201, "upload {digest}: {}", put.text());
        digest
    }

    /// Puts a manifest under `reference` (a tag or digest); returns its digest.
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let put = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            body,
        );
        assert_eq!(put.status, 201, "put manifest: {}", put.text());
        format!("sha256:{}", sha256_hex(body))
    }

    /// Pushes `spec` (layers gzip-compressed, as registries hold them) as an image manifest of
    /// `media_type` (OCI or Docker schema 2), tagged `tag` when given; returns the manifest's
    /// digest and bytes.
    pub fn push_image(
        &self,
        repo: &str,
        tag: Option<&str>,
        spec: &ImageSpec,
        media_type: &str,
    ) -> (String, Vec<u8>) {
        let manifest = self.image_manifest(repo, spec, media_type);
        let digest = format!("sha256:{}", sha256_hex(&manifest));
        self.push_manifest(repo, tag.unwrap_or(&digest), media_type, &manifest);
        (digest, manifest)
    }

    /// Uploads the config and layers of `spec` and returns the manifest describing them.
    pub fn image_manifest(&self, repo: &str, spec: &ImageSpec, media_type: &str) -> Vec<u8> {
        let docker = media_type == DOCKER_MANIFEST;
        let config = spec.config_json();
        let config_digest = self.push_blob(repo, &config);
        let layers: Vec<serde_json::Value> = spec
            .layers
            .iter()
            .map(|layer| {
                let blob = crate::fixtures::gzip(layer);
                let digest = self.push_blob(repo, &blob);
                serde_json::json!({
                    "mediaType": if docker { "application/vnd.docker.image.rootfs.diff.tar.gzip" } else { "application/vnd.oci.image.layer.v1.tar+gzip" },
                    "digest": digest,
                    "size": blob.len(),
                })
            })
            .collect();
        serde_json::to_vec_pretty(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": if docker { "application/vnd.docker.container.image.v1+json" } else { "application/vnd.oci.image.config.v1+json" },
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": layers,
        }))
        .expect("manifest json")
    }

    /// Where the registry keeps a blob's bytes (to corrupt it behind its back).
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// Whether the client on `stream` opened with a TLS handshake: Berth (as dockerd) tries HTTPS
/// first on an insecure registry, and the tests' plain-HTTP servers close such a connection at
/// once, as a real HTTP server answers it, instead of waiting for a request that never comes.
pub fn opens_with_tls(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    // 0x16: a TLS handshake record.
    matches!(stream.peek(&mut first), Ok(1) if first[0] == 0x16)
}

/// Runs `openssl ARGS` (split at spaces) in `dir`.
fn openssl(dir: &Path, args: &str) {
    let args: Vec<&str> = args.split_whitespace().collect();
    let out = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// In `dir`: a CA (`ca.crt`), a server certificate for 127.0.0.1 (`server.crt`, `server.key`)
/// and a client certificate (`client.cert`, `client.key`, as certs.d names them), both signed
/// by it. Nothing trusts the CA unless a test puts it somewhere.
pub fn make_certs(dir: &Path) {
    openssl(
        dir,
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=berth-test-ca",
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &format!(
                "req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj /CN={name}"
            ),
        );
        openssl(
            dir,
            &format!(
                "x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out {name}.crt -days 2 -extfile {name}.ext"
            ),
        );
    }
    std::fs::rename(dir.join("client.crt"), dir.join("client.cert")).unwrap();
}

/// A registry serving `storage` (another registry's `data`, or a fresh directory) over TLS on
/// 127.0.0.1 with the certificates [`make_certs`] made in `certs`; with `client_certs`, it
/// requires a client certificate signed by the test CA. `auth_yaml` is an `auth:` section
/// (or empty). Returns its `host:port` and the process (killed when dropped).
pub fn tls_registry(
    storage: &Path,
    certs: &Path,
    client_certs: bool,
    auth_yaml: &str,
) -> (String, ChildGuard) {
    let port = free_port();
    let config = certs.join(format!("config-{port}.yml"));
    let mut yaml = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{auth_yaml}http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {}\n    key: {}\n",
        storage.display(),
        certs.join("server.crt").display(),
        certs.join("server.key").display(),
    );
    if client_certs {
        yaml.push_str(&format!(
            "    clientcas:\n      - {}\n",
            certs.join("ca.crt").display()
        ));
    }
    std::fs::write(&config, yaml).unwrap();
    let child = Command::new(REGISTRY_BINARY)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry");
    let guard = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the TLS registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (format!("127.0.0.1:{port}"), guard)
}

/// An htpasswd `auth:` section for [`BASIC_USER`] (the file is written in `dir`).
pub fn basic_auth_yaml(dir: &Path) -> String {
    let htpasswd = dir.join("htpasswd");
    std::fs::write(&htpasswd, format!("{BASIC_USER}:{BASIC_HASH}\n")).expect("htpasswd");
    format!(
        "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
        htpasswd.display()
    )
}

/// Standard base64 with padding (for `Authorization: Basic` and docker's config.json).
pub fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One request a [`FaultProxy`] forwarded: its path, its `Range` header, and the body bytes
/// it passed back.
#[derive(Debug, Clone)]
pub struct ProxiedRequest {
    pub path: String,
    pub range: Option<String>,
    pub bytes_sent: usize,
}

/// A proxy in front of a registry that cuts the first whole-blob response for the blob `cut`
/// after half of its body (a dropped connection), and records every request.
pub struct FaultProxy {
    port: u16,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<ProxiedRequest>>>,
}

impl FaultProxy {
    pub fn start(registry_port: u16, cut: &str) -> FaultProxy {
        let cut = cut.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = requests.clone();
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The thread ends with the test process; it only ever talks to 127.0.0.1.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let log = log.clone();
                let dropped = dropped.clone();
                let cut = cut.clone();
                std::thread::spawn(move || {
                    let _ = proxy_one(client, registry_port, &cut, &log, &dropped);
                });
            }
        });
        FaultProxy { port, requests }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn proxy_one(
    mut client: TcpStream,
    registry_port: u16,
    cut_blob: &str,
    log: &std::sync::Mutex<Vec<ProxiedRequest>>,
    dropped: &std::sync::atomic::AtomicBool,
) -> std::io::Result<()> {
    if opens_with_tls(&client) {
        return Ok(());
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let path = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let range = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("range: ")
                .or_else(|| l.strip_prefix("Range: "))
        })
        .map(str::to_string);
    // One request per connection: the registry closes after answering.
    let mut forwarded: String = text
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut upstream = TcpStream::connect(("127.0.0.1", registry_port))?;
    upstream.write_all(forwarded.as_bytes())?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |i| i + 4);
    let body_len = response.len() - split;
    let cut = path.ends_with(&format!("/blobs/{cut_blob}"))
        && range.is_none()
        && !dropped.swap(true, std::sync::atomic::Ordering::SeqCst);
    let sent = if cut { body_len / 2 } else { body_len };
    log.lock().unwrap().push(ProxiedRequest {
        path,
        range,
        bytes_sent: sent,
    });
    client.write_all(&response[..split + sent])?;
    // Dropping the socket closes it: mid-body when cut.
    Ok(())
}

/// The status of a plain `GET /v2/` on `port`, or `None` when nothing (or something else,
/// e.g. a TLS server) answers there.
fn probe_status(port: u16) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let head = format!("GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}
