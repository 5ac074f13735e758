//! The client's end of a build session (protocol: `berth_build::session`): `--secret` values
//! and `--ssh` agents, served over HTTP/2 on the hijacked `POST /session` connection while the
//! build runs. Flags are spelled as docker buildx's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use berth_build::session::{self as proto, ID_HEADER, SECRET_PATH, SSH_CHECK_PATH, SSH_PATH};
use bytes::Bytes;

/// What the session offers.
#[derive(Default)]
pub struct Offer {
    secrets: HashMap<String, Vec<u8>>,
    agents: HashMap<String, PathBuf>,
    /// `ssh-agent`s started for `--ssh id=KEYFILE`, killed when the build ends.
    spawned: Vec<SpawnedAgent>,
}

/// An `ssh-agent` of this build's own, killed when dropped.
pub struct SpawnedAgent {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Drop for SpawnedAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

impl Offer {
    /// The agents this process started: the caller keeps them until the build is over.
    pub fn take_spawned(&mut self) -> Vec<SpawnedAgent> {
        std::mem::take(&mut self.spawned)
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.agents.is_empty()
    }
}

/// `--secret id=x[,src=FILE|,env=VAR][,type=file|env]` (buildx's rules: without a source, the
/// variable named as the id, else the file named as the id).
fn parse_secret(spec: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(String, Vec<u8>)> {
    let (mut id, mut src, mut var, mut kind) = (None, None, None, None);
    for field in spec.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid field '{field}' must be a key=value pair"))?;
        match k.to_ascii_lowercase().as_str() {
            "type" => {
                if v != "file" && v != "env" {
                    bail!("unsupported secret type {v:?}");
                }
                kind = Some(v.to_string());
            }
            "id" => id = Some(v.to_string()),
            "source" | "src" => src = Some(v.to_string()),
            "env" => var = Some(v.to_string()),
            _ => bail!("unexpected key '{k}' in '{field}'"),
        }
    }
    if kind.as_deref() == Some("env") && var.is_none() {
        var = src.take();
    }
    let id = id
        .or_else(|| src.clone())
        .or_else(|| var.clone())
        .ok_or_else(|| anyhow!("secret ID missing from --secret {spec:?}"))?;
    let value = match (src, var) {
        (Some(path), _) => std::fs::read(&path).with_context(|| format!("secret {id}"))?,
        (None, Some(v)) => env(&v)
            .ok_or_else(|| anyhow!("secret {id}: environment variable {v} is not set"))?
            .into_bytes(),
        (None, None) => match env(&id) {
            Some(v) => v.into_bytes(),
            None => std::fs::read(&id).with_context(|| format!("secret {id}"))?,
        },
    };
    Ok((id, value))
}

/// `--ssh default|ID[=SOCKET|KEYFILE[,KEYFILE...]]`: a socket is forwarded as it is; key
/// files are loaded into an `ssh-agent` of this build's own.
fn parse_ssh(spec: &str, env: &dyn Fn(&str) -> Option<String>, offer: &mut Offer) -> Result<()> {
    let (id, paths) = match spec.split_once('=') {
        Some((id, p)) => (id.to_string(), p.split(',').map(str::to_string).collect()),
        None => (spec.to_string(), Vec::new()),
    };
    if id.is_empty() {
        bail!("invalid --ssh value {spec:?}");
    }
    if paths.is_empty() {
        let sock = env("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                anyhow!("invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set")
            })?;
        offer.agents.insert(id, PathBuf::from(sock));
        return Ok(());
    }
    use std::os::unix::fs::FileTypeExt as _;
    let is_socket = |p: &str| {
        std::fs::metadata(p)
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false)
    };
    if paths.len() == 1 && is_socket(&paths[0]) {
        offer.agents.insert(id, PathBuf::from(&paths[0]));
        return Ok(());
    }
    let dir = tempfile::Builder::new().prefix("berth-ssh-").tempdir()?;
    let sock = dir.path().join("agent.sock");
    let child = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("--ssh with key files needs ssh-agent")?;
    let agent = SpawnedAgent { child, dir };
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for key in &paths {
        let out = std::process::Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &sock)
            .stdin(std::process::Stdio::null())
            .output()
            .context("--ssh with key files needs ssh-add")?;
        if !out.status.success() {
            bail!(
                "failed to parse {key}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    offer.agents.insert(id, sock);
    offer.spawned.push(agent);
    Ok(())
}

/// The offer for the `--secret` and `--ssh` flags.
pub fn offer(
    secrets: &[String],
    ssh: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Offer> {
    let mut offer = Offer::default();
    for s in secrets {
        let (id, value) = parse_secret(s, env).context("could not parse secrets")?;
        offer.secrets.insert(id, value);
    }
    for s in ssh {
        parse_ssh(s, env, &mut offer).context("could not parse ssh")?;
    }
    Ok(offer)
}

fn session_id() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read as _;
        let _ = f.read_exact(&mut b);
    }
    hex::encode(b)
}

/// Opens the session and serves it in the background; returns its id for `/build?session=`.
pub async fn start(client: &berth_client::Client, offer: Arc<Offer>) -> Result<String> {
    let id = session_id();
    let hijacked = client.build_session(&id).await?;
    let io = tokio::io::join(hijacked.reader, hijacked.writer);
    let mut conn = h2::server::handshake(io)
        .await
        .map_err(|e| anyhow!("build session: {e}"))?;
    tokio::spawn(async move {
        while let Some(next) = conn.accept().await {
            let Ok((req, respond)) = next else { break };
            tokio::spawn(serve(req, respond, offer.clone()));
        }
    });
    Ok(id)
}

async fn serve(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    offer: Arc<Offer>,
) {
    let id = req
        .headers()
        .get(ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let status = |code: u16| {
        http::Response::builder()
            .status(code)
            .body(())
            .unwrap_or_default()
    };
    match req.uri().path() {
        SECRET_PATH => match offer.secrets.get(&id) {
            Some(value) => {
                if let Ok(mut tx) = respond.send_response(status(200), false) {
                    let _ = proto::send_all(&mut tx, Bytes::from(value.clone())).await;
                    let _ = tx.send_data(Bytes::new(), true);
                }
            }
            None => {
                let _ = respond.send_response(status(404), true);
            }
        },
        SSH_CHECK_PATH => {
            let code = if offer.agents.contains_key(&id) {
                200
            } else {
                404
            };
            let _ = respond.send_response(status(code), true);
        }
        SSH_PATH => {
            let Some(path) = offer.agents.get(&id) else {
                let _ = respond.send_response(status(404), true);
                return;
            };
            let Ok(agent) = tokio::net::UnixStream::connect(path).await else {
                let _ = respond.send_response(status(502), true);
                return;
            };
            let Ok(mut tx) = respond.send_response(status(200), false) else {
                return;
            };
            let (rd, wr) = agent.into_split();
            let mut body = req.into_body();
            let up = proto::pump_from_h2(&mut body, wr);
            let down = proto::pump_to_h2(rd, &mut tx);
            let _ = tokio::join!(up, down);
        }
        _ => {
            let _ = respond.send_response(status(404), true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_as_buildx_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.txt");
        std::fs::write(&file, "from-file").unwrap();
        let env = |k: &str| (k == "TOKEN" || k == "tok").then(|| format!("env:{k}"));
        let src = format!("id=a,src={}", file.display());
        assert_eq!(
            parse_secret(&src, &env).unwrap(),
            ("a".into(), b"from-file".to_vec())
        );
        assert_eq!(
            parse_secret("id=b,env=TOKEN", &env).unwrap(),
            ("b".into(), b"env:TOKEN".to_vec())
        );
        // type=env with the variable given as the source.
        assert_eq!(
            parse_secret("id=c,type=env,src=TOKEN", &env).unwrap().1,
            b"env:TOKEN".to_vec()
        );
        // No source: the variable named as the id.
        assert_eq!(parse_secret("id=tok", &env).unwrap().1, b"env:tok".to_vec());
        assert!(parse_secret("id=x,env=UNSET", &env).is_err());
        assert!(parse_secret("id=x,bogus=1", &env).is_err());
        assert!(parse_secret("id=x,type=socket", &env).is_err());
        assert!(parse_secret("src", &env).is_err());
    }

    #[test]
    fn ssh_specs_as_buildx_reads_them() {
        let env = |k: &str| (k == "SSH_AUTH_SOCK").then(|| "/run/agent.sock".to_string());
        let mut offer = Offer::default();
        parse_ssh("default", &env, &mut offer).unwrap();
        assert_eq!(offer.agents["default"], PathBuf::from("/run/agent.sock"));
        let none = |_: &str| None;
        assert!(parse_ssh("default", &none, &mut Offer::default()).is_err());
        assert!(parse_ssh("=x", &env, &mut Offer::default()).is_err());
        // A key file that is not one: ssh-add's refusal (when ssh-agent is installed).
        if std::process::Command::new("ssh-agent")
            .arg("-h")
            .output()
            .is_ok()
        {
            let dir = tempfile::tempdir().unwrap();
            let bad = dir.path().join("not-a-key");
            std::fs::write(&bad, "x").unwrap();
            let spec = format!("k={}", bad.display());
            let mut offer = Offer::default();
            assert!(parse_ssh(&spec, &env, &mut offer).is_err());
        }
    }
}
