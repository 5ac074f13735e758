//! Builds from the network: `ADD https://...` (with `--checksum`) and `remote=https://...`
//! trusting a test CA through the daemon's `certs.d`, and git contexts: `remote=` a git URL
//! cloned by the daemon, `berth build <git URL>` and the docker CLI's (cloned client-side, as
//! the docker CLI does for the legacy builder), served by `git daemon` on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;

use berth_e2e::containers::daemon_with_busybox;
use berth_e2e::pki::{Pki, free_port};
use berth_e2e::{Daemon, require_root};
use serde_json::Value;

fn context(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn build(d: &Daemon, query: &str, ctx: Option<&[u8]>) -> (u16, Option<String>, String) {
    let r = d.api().request(
        "POST",
        &format!("/build?{query}"),
        &[("Content-Type", "application/x-tar")],
        ctx,
    );
    if r.status != 200 {
        return (r.status, Some(r.message()), String::new());
    }
    let lines: Vec<Value> = r.json_lines();
    let text: String = lines.iter().filter_map(|m| m["stream"].as_str()).collect();
    let error = lines
        .iter()
        .find_map(|m| m["error"].as_str().map(str::to_string));
    (r.status, error, text)
}

fn run_in(d: &Daemon, image: &str, script: &str) -> String {
    d.berth(&["run", "--rm", image, "sh", "-c", script])
        .success()
        .stdout
}

/// Serves `files` over HTTPS (the PKI's server certificate for 127.0.0.1) until the test ends.
fn serve_tls(pki: &Pki, files: Vec<(&'static str, Vec<u8>)>) -> u16 {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(pki.path("server"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(pki.dir.join("server-key.pem")).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut first = String::new();
            {
                let mut reader = BufReader::new(&mut tls);
                if reader.read_line(&mut first).is_err() {
                    continue; // the client refused our certificate
                }
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                        break;
                    }
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
            let _ = match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .and_then(|_| tls.write_all(body)),
                None => write!(
                    tls,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            };
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    port
}

#[test]
fn add_https_urls_and_remote_contexts_with_a_test_ca() {
    require_root!();
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: no openssl");
        return;
    }
    let d = daemon_with_busybox();
    let pki = Pki::new(&d.dir().join("pki"));
    // A few MiB, so that the body spans many TLS records.
    let payload: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sum = format!("sha256:{}", berth_e2e::fixtures::sha256_hex(&payload));
    let remote_tar = context(&[
        ("Dockerfile", b"FROM busybox\nCOPY x /x\n"),
        ("x", b"tarred over tls\n"),
    ]);
    let port = serve_tls(
        &pki,
        vec![("/blob.bin", payload.clone()), ("/ctx.tar", remote_tar)],
    );
    let df = format!("FROM busybox\nADD --checksum={sum} https://127.0.0.1:{port}/blob.bin /dl/\n");
    let ctx = context(&[("Dockerfile", df.as_bytes())]);

    // The test CA is not trusted yet: the TLS error, as a failed ADD.
    let (_, error, text) = build(&d, "t=tls:1", Some(&ctx));
    let error = error.unwrap_or_else(|| panic!("built without trusting the CA: {text}"));
    assert!(
        error.contains(&format!("https://127.0.0.1:{port}/blob.bin"))
            && error.contains("certificate"),
        "{error}"
    );

    // Trusted through certs.d/<host:port>/, as a registry on that host would be.
    let dir = d.dir().join("certs.d").join(format!("127.0.0.1:{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(pki.path("ca"), dir.join("ca.crt")).unwrap();
    let (_, error, text) = build(&d, "t=tls:1", Some(&ctx));
    assert_eq!(error, None, "{text}");
    let got = run_in(&d, "tls:1", "sha256sum /dl/blob.bin | cut -c1-64");
    assert_eq!(format!("sha256:{}", got.trim()), sum);

    // --checksum is checked on https too.
    let bad = format!(
        "FROM busybox\nADD --checksum=sha256:{} https://127.0.0.1:{port}/blob.bin /dl/\n",
        "0".repeat(64)
    );
    let (_, error, _) = build(&d, "", Some(&context(&[("Dockerfile", bad.as_bytes())])));
    assert!(error.unwrap_or_default().contains("digest mismatch"));

    // remote= an https tarball.
    let (status, error, text) = build(
        &d,
        &format!("t=tls:2&remote=https://127.0.0.1:{port}/ctx.tar"),
        None,
    );
    assert_eq!((status, error), (200, None), "{text}");
    assert_eq!(run_in(&d, "tls:2", "cat /x"), "tarred over tls\n");
}

/// `git daemon` serving `base` on 127.0.0.1, killed (by pid) when dropped.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn git_daemon(base: &Path) -> GitDaemon {
    let port = free_port();
    // git-daemon itself (not `git daemon`, whose child would outlive a kill of the wrapper).
    let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
    let exec_path = String::from_utf8_lossy(&exec_path.stdout)
        .trim()
        .to_string();
    let child = Command::new(Path::new(&exec_path).join("git-daemon"))
        .arg("--reuseaddr")
        .arg("--export-all")
        .arg(format!("--base-path={}", base.display()))
        .arg("--listen=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(base)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("git daemon");
    let gd = GitDaemon { child, port };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    gd
}

#[test]
fn git_contexts_on_the_daemon_and_the_client() {
    require_root!();
    if Command::new("git").arg("--version").output().is_err() {
        eprintln!("skipped: no git");
        return;
    }
    let d = daemon_with_busybox();
    let repos = d.dir().join("repos");
    let repo = repos.join("app");
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("sub/Dockerfile"), "FROM busybox\nCOPY . /c\n").unwrap();
    std::fs::write(repo.join("sub/f"), "from-git main\n").unwrap();
    std::fs::write(repo.join("top"), "not in the subdir context\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["checkout", "-q", "-b", "other"]);
    std::fs::write(repo.join("sub/f"), "from-git other\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "two"]);
    git(&repo, &["checkout", "-q", "main"]);
    let gd = git_daemon(&repos);
    let url = format!("git://127.0.0.1:{}/app", gd.port);

    // remote= a git URL: the daemon clones it (ref and subdirectory from the fragment).
    let (status, error, text) = build(&d, &format!("t=git:1&remote={url}%23other:sub"), None);
    assert_eq!((status, error), (200, None), "{text}");
    assert_eq!(
        run_in(&d, "git:1", "ls -A /c; cat /c/f"),
        "Dockerfile\nf\nfrom-git other\n"
    );
    // No fragment: master, as docker (there is none here: dockerd's error).
    let (status, error, _) = build(&d, &format!("remote={url}"), None);
    assert_eq!(status, 400);
    assert!(
        error.unwrap_or_default().contains("unable to 'git clone'"),
        "a missing ref is an error"
    );

    // berth build <git URL>: cloned by the CLI.
    let out = d
        .berth(&["build", "-t", "git:2", &format!("{url}#main:sub")])
        .success();
    assert!(
        out.stdout.contains("Successfully tagged git:2"),
        "{}",
        out.stdout
    );
    assert_eq!(run_in(&d, "git:2", "cat /c/f"), "from-git main\n");

    // And the docker CLI, which clones it too for the legacy builder.
    if let Some(docker) = berth_e2e::docker_cli() {
        // It clones into $TMPDIR/docker-build-git* and leaves the clone: inside the test's
        // directory, which goes with the daemon.
        let tmp = d.dir().join("docker-cli-tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let out = Command::new(docker)
            .args(["build", "-t", "git:3", &format!("{url}#other:sub")])
            .env("TMPDIR", &tmp)
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_HOST", d.host())
            .env("DOCKER_CONFIG", d.dir().join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .output()
            .unwrap();
        let out = berth_e2e::Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
        .success();
        assert!(
            out.stdout.contains("Successfully tagged git:3"),
            "{}",
            out.stdout
        );
        assert_eq!(run_in(&d, "git:3", "cat /c/f"), "from-git other\n");
    }
    // ADD of a git URL: the files (without .git unless --keep-git-dir), ref and subdir.
    let df = format!(
        "FROM busybox\nADD {url}#other:sub /src\nADD --keep-git-dir=true {url}#main /repo\n"
    );
    let ctx = context(&[("Dockerfile", df.as_bytes())]);
    let (_, error, text) = build(&d, "t=git:4", Some(&ctx));
    assert_eq!(error, None, "{text}");
    assert_eq!(
        run_in(
            &d,
            "git:4",
            "ls -A /src; cat /src/f /repo/sub/f; test -d /repo/.git && echo git-dir"
        ),
        "Dockerfile\nf\nfrom-git other\nfrom-git main\ngit-dir\n"
    );
    drop(gd);
}
