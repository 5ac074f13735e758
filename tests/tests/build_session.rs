//! `berth build --secret` and `--ssh`: the build session (`POST /session`, HTTP/2 on the
//! hijacked connection) that gives `RUN --mount=type=secret|ssh` what only the client has.
//! A secret is readable in RUN and is nowhere in the image or the data root afterwards; an
//! ssh-agent started here lists its key inside the build through the forwarded socket.

use std::path::Path;
use std::process::{Child, Command};

use berth_e2e::containers::daemon_with_busybox;
use berth_e2e::{Daemon, require_root};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Whether `needle` occurs in any file under `dir` (links not followed).
fn found_under(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                todo.push(e.path());
            } else if ft.is_file()
                && let Ok(data) = std::fs::read(e.path())
                && data.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(e.path().display().to_string());
            }
        }
    }
    hits
}

fn run_in(d: &Daemon, image: &str, script: &str) -> String {
    d.berth(&["run", "--rm", image, "sh", "-c", script])
        .success()
        .stdout
}

#[test]
fn secrets_reach_run_and_never_the_image() {
    require_root!();
    let d = daemon_with_busybox();
    let value = "s3cr3t-value-7d1f0c";
    let secret_file = d.dir().join("token.txt");
    std::fs::write(&secret_file, format!("{value}\n")).unwrap();
    let ctx = d.dir().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM busybox
RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | grep -q ^{sum} && stat -c '%a %u' /run/secrets/tok > /mode
RUN --mount=type=secret,id=tok,target=/etc/app/key,mode=0440,uid=1000,gid=1000 stat -c '%a %u %g' /etc/app/key > /mode2
RUN --mount=type=secret,id=tok,env=TOKEN printf %s \"$TOKEN\" | sha256sum | grep -q ^{sum} && echo env-ok > /envok
RUN --mount=type=secret,id=absent echo optional-ok > /opt
",
            // The Dockerfile (kept in the image's history) must not hold the value itself.
            sum = berth_e2e::fixtures::sha256_hex(format!("{value}\n").as_bytes())
        ),
    )
    .unwrap();
    let secret_arg = format!("id=tok,src={}", path(&secret_file));
    let out = d
        .berth(&["build", "--secret", &secret_arg, "-t", "sec:1", path(&ctx)])
        .success();
    assert!(
        out.stdout.contains("Successfully tagged sec:1"),
        "{}",
        out.stdout
    );
    assert_eq!(run_in(&d, "sec:1", "cat /mode"), "400 0\n");
    assert_eq!(run_in(&d, "sec:1", "cat /mode2"), "440 1000 1000\n");
    assert_eq!(
        run_in(&d, "sec:1", "cat /envok /opt"),
        "env-ok\noptional-ok\n"
    );
    // No trace in the image: not the file, not its mount point, not the directories made
    // for it.
    assert_eq!(
        run_in(
            &d,
            "sec:1",
            "ls -d /run/secrets /run/secrets/tok /etc/app /etc/app/key 2>&1 | grep -vc 'No such' ; true"
        ),
        "0\n"
    );
    // Nowhere in the data root: layers, cache records, container records, logs.
    let hits = found_under(&d.data_root(), value.as_bytes());
    assert!(hits.is_empty(), "the secret is on disk: {hits:?}");
    // A rebuild is cached (the key holds the id, not the value).
    let out = d
        .berth(&["build", "--secret", &secret_arg, "-t", "sec:2", path(&ctx)])
        .success();
    assert_eq!(
        out.stdout.matches("Using cache").count(),
        4,
        "{}",
        out.stdout
    );

    // A required secret the client does not have: BuildKit's error, nothing left behind.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=secret,id=nope,required=true true\n",
    )
    .unwrap();
    let out = d
        .berth(&["build", "--secret", &secret_arg, path(&ctx)])
        .failure();
    assert!(
        out.stderr.contains("secret nope: not found"),
        "{}",
        out.stderr
    );
    // And without any session at all.
    let out = d.berth(&["build", path(&ctx)]).failure();
    assert!(
        out.stderr.contains("secret nope: not found"),
        "{}",
        out.stderr
    );
    let r = d.api().get("/containers/json?all=1");
    assert_eq!(r.json().as_array().unwrap().len(), 0, "{}", r.text());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let exec_root = d.exec_root().display().to_string();
    assert!(
        !mounts
            .lines()
            .any(|l| l.contains(&format!("{exec_root}/build-secrets"))),
        "a secrets tmpfs is left"
    );
}

/// An `ssh-agent` of the test's own, killed (by pid) when dropped.
struct Agent {
    child: Child,
    sock: std::path::PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(dir: &Path) -> Agent {
    let sock = dir.join("agent.sock");
    let child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    let agent = Agent { child, sock };
    for _ in 0..200 {
        if agent.sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    agent
}

/// The host's `ssh-add` with its libraries and loader in `dir`, runnable in a busybox
/// container as `/x/ld.so --library-path /x /x/ssh-add`.
fn portable_ssh_add(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let ldd = Command::new("ldd")
        .arg("/usr/bin/ssh-add")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ldd.stdout);
    for line in text.lines() {
        let lib = match line.split("=>").nth(1) {
            Some(rest) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        let Some(lib) = lib.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let name = if lib.contains("ld-linux") {
            "ld.so".to_string()
        } else {
            Path::new(lib)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        std::fs::copy(lib, dir.join(name)).unwrap();
    }
    std::fs::copy("/usr/bin/ssh-add", dir.join("ssh-add")).unwrap();
}

fn keygen(path: &Path) -> String {
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "berth-test-key",
            "-f",
        ])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(path)
        .output()
        .unwrap();
    // `256 SHA256:... comment (ED25519)`: the fingerprint.
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn ssh_agents_are_forwarded_into_run() {
    require_root!();
    if Command::new("ssh-agent").arg("-h").output().is_err() {
        eprintln!("skipped: no ssh-agent");
        return;
    }
    let d = daemon_with_busybox();
    let agent = start_agent(d.dir());
    let key = d.dir().join("id_test");
    let fingerprint = keygen(&key);
    let st = Command::new("ssh-add")
        .arg("-q")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &agent.sock)
        .status()
        .unwrap();
    assert!(st.success());
    let other_key = d.dir().join("id_other");
    let other_fingerprint = keygen(&other_key);

    let ctx = d.dir().join("ctx");
    portable_ssh_add(&ctx.join("x"));
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox
RUN --mount=type=bind,source=x,target=/x --mount=type=ssh /x/ld.so --library-path /x /x/ssh-add -l > /keys
RUN --mount=type=bind,source=x,target=/x --mount=type=ssh,id=second,target=/tmp/a.sock,mode=0666 SSH_AUTH_SOCK=/tmp/a.sock /x/ld.so --library-path /x /x/ssh-add -l > /keys2 && stat -c %a /tmp/a.sock > /mode
",
    )
    .unwrap();
    // `default` as a socket path, `second` as a key file (a private agent the CLI starts).
    let default_arg = format!("default={}", path(&agent.sock));
    let second_arg = format!("second={}", path(&other_key));
    let out = d
        .berth(&[
            "build",
            "--ssh",
            &default_arg,
            "--ssh",
            &second_arg,
            "-t",
            "ssh:1",
            path(&ctx),
        ])
        .success();
    assert!(
        out.stdout.contains("Successfully tagged ssh:1"),
        "{}",
        out.stdout
    );
    let keys = run_in(&d, "ssh:1", "cat /keys");
    assert!(keys.contains(&fingerprint), "{keys}");
    let keys2 = run_in(&d, "ssh:1", "cat /keys2");
    assert!(keys2.contains(&other_fingerprint), "{keys2}");
    assert!(!keys2.contains(&fingerprint), "{keys2}");
    assert_eq!(run_in(&d, "ssh:1", "cat /mode"), "666\n");
    // The sockets' mount points are not in the image.
    assert_eq!(
        run_in(
            &d,
            "ssh:1",
            "ls /run/buildkit /tmp/a.sock 2>&1 | grep -vc 'No such'; true"
        ),
        "0\n"
    );

    // A required agent the client does not forward.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=ssh,id=nope,required=true true\n",
    )
    .unwrap();
    let out = d
        .berth(&["build", "--ssh", &default_arg, path(&ctx)])
        .failure();
    assert!(
        out.stderr
            .contains("no SSH key \"nope\" forwarded from the client"),
        "{}",
        out.stderr
    );
    // An optional one: the step runs without a socket.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=ssh,id=nope test -z \"$SSH_AUTH_SOCK\" || test ! -e \"$SSH_AUTH_SOCK\"\n",
    )
    .unwrap();
    d.berth(&["build", path(&ctx)]).success();
    let r = d.api().get("/containers/json?all=1");
    assert_eq!(r.json().as_array().unwrap().len(), 0, "{}", r.text());
}

/// `compose build` serves a service's `build.secrets` (a file and a variable from `.env`,
/// named by `target`) and `build.ssh` (a key file, resolved against the project directory)
/// plus `--ssh` through the same session as `berth build`.
#[test]
fn compose_builds_get_their_secrets_and_ssh_agents() {
    require_root!();
    if Command::new("ssh-agent").arg("-h").output().is_err() {
        eprintln!("skipped: no ssh-agent");
        return;
    }
    let d = daemon_with_busybox();
    let agent = start_agent(d.dir());
    let project = d.dir().join("proj");
    portable_ssh_add(&project.join("x"));
    let fingerprint = keygen(&project.join("id_deploy"));
    std::fs::write(project.join("tok.txt"), "file-secret-value\n").unwrap();
    std::fs::write(project.join(".env"), "MY_TOKEN=env-secret-value\n").unwrap();
    std::fs::write(
        project.join("compose.yaml"),
        "name: sess
services:
  app:
    image: sess-app:1
    build:
      context: .
      secrets:
        - tok
        - source: envtok
          target: TOKEN
      ssh:
        - deploy=./id_deploy
secrets:
  tok:
    file: ./tok.txt
  envtok:
    environment: MY_TOKEN
",
    )
    .unwrap();
    std::fs::write(
        project.join("Dockerfile"),
        "FROM busybox
RUN --mount=type=secret,id=tok,required=true grep -qx file-secret-value /run/secrets/tok && touch /tok.ok
RUN --mount=type=secret,id=TOKEN,env=T,required=true test \"$T\" = env-secret-value && touch /env.ok
RUN --mount=type=bind,source=x,target=/x --mount=type=ssh,id=deploy,required=true /x/ld.so --library-path /x /x/ssh-add -l > /keys
RUN --mount=type=ssh,id=cli,required=true test -S \"$SSH_AUTH_SOCK\" && touch /cli.ok
",
    )
    .unwrap();
    let file = project.join("compose.yaml");
    let cli_arg = format!("cli={}", path(&agent.sock));
    let out = d
        .berth(&["compose", "-f", path(&file), "build", "--ssh", &cli_arg])
        .success();
    assert!(
        out.stdout.contains("Successfully tagged sess-app:1"),
        "{}",
        out.stdout
    );
    assert_eq!(
        run_in(&d, "sess-app:1", "ls /tok.ok /env.ok /cli.ok && cat /keys"),
        format!(
            "/cli.ok\n/env.ok\n/tok.ok\n{}",
            run_in(&d, "sess-app:1", "cat /keys")
        )
    );
    assert!(run_in(&d, "sess-app:1", "cat /keys").contains(&fingerprint));

    // Without `--ssh`, the step that needs the `cli` agent fails with BuildKit's words.
    let out = d
        .berth(&["compose", "-f", path(&file), "build", "--no-cache"])
        .failure();
    assert!(
        out.stderr
            .contains("no SSH key \"cli\" forwarded from the client"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    // A build secret no top-level secret defines: Compose's words, nothing sent.
    std::fs::write(
        &file,
        "services:\n  app:\n    image: sess-app:2\n    build:\n      context: .\n      secrets: [nope]\n",
    )
    .unwrap();
    let out = d.berth(&["compose", "-f", path(&file), "build"]).failure();
    assert!(
        out.stderr.contains("refers to undefined build secret nope"),
        "{}",
        out.stderr
    );
}
