//! `docker build` against berthd: the legacy builder API (`POST /build`) through the raw API and
//! the real docker CLI (`DOCKER_BUILDKIT=0`), FROM a busybox image the test loads.

use std::path::Path;
use std::process::Command;

use berth_e2e::containers::daemon_with_busybox;
use berth_e2e::{Daemon, Output, docker_cli, require_root};
use serde_json::Value;

/// A context tar from (path, content) pairs; a path ending in `/` is a directory.
fn context(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
        }
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// `POST /build?<query>` with `ctx`; the stream's messages.
fn build(d: &Daemon, query: &str, ctx: &[u8]) -> (u16, Vec<Value>, String) {
    let r = d.api().request(
        "POST",
        &format!("/build?{query}"),
        &[("Content-Type", "application/x-tar")],
        Some(ctx),
    );
    let lines = if r.status == 200 {
        r.json_lines()
    } else {
        Vec::new()
    };
    let text: String = lines.iter().filter_map(|m| m["stream"].as_str()).collect();
    (r.status, lines, text)
}

fn built_id(lines: &[Value]) -> String {
    lines
        .iter()
        .rev()
        .find_map(|m| m["aux"]["ID"].as_str())
        .unwrap_or_else(|| panic!("no aux ID in {lines:?}"))
        .to_string()
}

fn error_of(lines: &[Value]) -> Option<String> {
    lines
        .iter()
        .find_map(|m| m["error"].as_str().map(str::to_string))
}

fn inspect(d: &Daemon, name: &str) -> Value {
    let r = d.api().get(&format!("/images/{name}/json"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// No build container and no build mount is left.
fn assert_nothing_left(d: &Daemon) {
    let r = d.api().get("/containers/json?all=1");
    assert_eq!(r.json().as_array().unwrap().len(), 0, "{}", r.text());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = d.data_root().display().to_string();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&root)).collect();
    assert!(
        left.is_empty(),
        "mounts left under the data root: {left:#?}"
    );
    // The build's scratch directory goes just after its stream ends.
    let tmp = d.data_root().join("tmp");
    let builds = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&tmp)
            .map(|it| {
                it.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("build-"))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    berth_e2e::containers::until("build directories to go", || builds().is_empty());
    let builds = builds();
    assert!(builds.is_empty(), "build directories left: {builds:?}");
}

const APP: &str = "FROM busybox
ENV GREETING=hello
WORKDIR /app
COPY a.txt ./
RUN echo \"$GREETING\" > /app/greeting && cat a.txt
COPY b.txt /app/
LABEL org.example=yes
EXPOSE 8080
CMD [\"cat\", \"/app/greeting\"]
";

#[test]
fn build_run_copy_metadata_and_cache() {
    require_root!();
    let d = daemon_with_busybox();
    let ctx = |b: &[u8]| {
        context(&[
            ("Dockerfile", APP.as_bytes()),
            ("a.txt", b"from a\n"),
            ("b.txt", b),
        ])
    };
    let (status, lines, text) = build(&d, "t=app:1", &ctx(b"b one\n"));
    assert_eq!(status, 200);
    assert_eq!(error_of(&lines), None, "{text}");
    assert!(text.starts_with("Step 1/9 : FROM busybox\n"), "{text}");
    assert!(text.contains(" ---> Running in "), "{text}");
    assert!(
        text.contains("\nfrom a\n"),
        "RUN output is streamed: {text}"
    );
    assert!(text.contains("Removing intermediate container"), "{text}");
    assert!(text.contains("Successfully tagged app:1\n"), "{text}");
    let id = built_id(&lines);
    assert!(
        text.contains(&format!("Successfully built {}\n", &id[7..19])),
        "{text}"
    );

    let img = inspect(&d, "app:1");
    assert_eq!(img["Id"], id);
    let cfg = &img["Config"];
    assert_eq!(cfg["Cmd"], serde_json::json!(["cat", "/app/greeting"]));
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["Labels"]["org.example"], "yes");
    assert!(cfg["ExposedPorts"]["8080/tcp"].is_object(), "{cfg}");
    assert!(
        cfg["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hello"),
        "{cfg}"
    );
    // The image runs: RUN's file and both COPYs are in it.
    let out = run_in(&d, "app:1", "cat /app/greeting /app/a.txt /app/b.txt");
    assert_eq!(out, "hello\nfrom a\nb one\n");
    // History: one entry per step, metadata steps as empty layers.
    let h = d.api().get("/images/app:1/history").json();
    let created: Vec<String> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["CreatedBy"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        created[0].contains("CMD [\"cat\" \"/app/greeting\"]"),
        "{created:?}"
    );
    assert!(
        created.iter().any(|c| c.contains("COPY file:")),
        "{created:?}"
    );

    // The intermediate images are listed with all=1 only, and a dangling prune keeps them.
    let listed = |q: &str| {
        d.api()
            .get(&format!("/images/json{q}"))
            .json()
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(listed(""), 2);
    assert!(listed("?all=1") > 2);
    let r = d.api().post("/images/prune", None);
    assert_eq!(r.status, 200, "{}", r.text());

    // An identical rebuild: every step cached, the same image.
    let (_, lines, text) = build(&d, "t=app:1", &ctx(b"b one\n"));
    assert_eq!(built_id(&lines), id, "{text}");
    assert_eq!(text.matches(" ---> Using cache").count(), 8, "{text}");
    assert!(!text.contains("Running in"), "{text}");

    // Changing the second COPY's file reuses every step before it.
    let (_, lines, text) = build(&d, "t=app:2", &ctx(b"b two\n"));
    assert_eq!(error_of(&lines), None, "{text}");
    assert_ne!(built_id(&lines), id);
    assert_eq!(text.matches(" ---> Using cache").count(), 4, "{text}");
    assert!(
        !text.contains("Running in"),
        "the RUN before the change is cached: {text}"
    );
    assert_eq!(run_in(&d, "app:2", "cat /app/b.txt"), "b two\n");

    // --no-cache runs everything again.
    let (_, lines, text) = build(&d, "t=app:3&nocache=1", &ctx(b"b one\n"));
    assert_eq!(error_of(&lines), None, "{text}");
    assert!(!text.contains("Using cache"), "{text}");
    assert_nothing_left(&d);

    // The cache is in /system/df and goes with /build/prune.
    let df = d.api().get("/system/df").json();
    assert!(!df["BuildCache"].as_array().unwrap().is_empty(), "{df}");
    let r = d.api().post("/build/prune?all=1", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.json()["CachesDeleted"].as_array().unwrap().is_empty());
    let df = d.api().get("/system/df").json();
    assert!(df["BuildCache"].as_array().unwrap().is_empty(), "{df}");
    // The tagged results stay.
    inspect(&d, "app:1");
}

/// Runs `sh -c cmd` in a container of `image` and returns its stdout.
fn run_in(d: &Daemon, image: &str, cmd: &str) -> String {
    use berth_e2e::containers::{create, demux, start, wait};
    let id = create(
        d,
        None,
        serde_json::json!({"Image": image, "Cmd": ["sh", "-c", cmd], "Entrypoint": [""]}),
    );
    start(d, &id);
    assert_eq!(wait(d, &id), 0);
    let logs = d
        .api()
        .get(&format!("/containers/{id}/logs?stdout=1&stderr=1"));
    let (out, _) = demux(&logs.body);
    d.api().delete(&format!("/containers/{id}?force=1"));
    out
}

#[test]
fn build_errors_in_dockers_words() {
    require_root!();
    let d = daemon_with_busybox();
    // A failing RUN: the message carries the exit code, and so does errorDetail.
    let ctx = context(&[("Dockerfile", b"FROM busybox\nRUN exit 7\n")]);
    let (status, lines, _) = build(&d, "", &ctx);
    assert_eq!(status, 200);
    assert_eq!(
        error_of(&lines).unwrap(),
        "The command '/bin/sh -c exit 7' returned a non-zero code: 7"
    );
    let detail = lines.iter().find(|m| m["errorDetail"].is_object()).unwrap();
    assert_eq!(detail["errorDetail"]["code"], 7);

    // Parse errors are HTTP errors with the line.
    let ctx = context(&[("Dockerfile", b"FROM busybox\nRUN true\nFOO bar\n")]);
    let r = d.api().request(
        "POST",
        "/build",
        &[("Content-Type", "application/x-tar")],
        Some(&ctx),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.message()
            .starts_with("dockerfile parse error on line 3: unknown instruction: FOO"),
        "{}",
        r.message()
    );

    let ctx = context(&[("Dockerfile", b"FROM busybox\nCOPY ../x /x\n")]);
    let (_, lines, _) = build(&d, "", &ctx);
    assert_eq!(
        error_of(&lines).unwrap(),
        "COPY failed: forbidden path outside the build context: ../x ()"
    );
    let ctx = context(&[("Dockerfile", b"FROM busybox\nCOPY nope /x\n")]);
    let (_, lines, _) = build(&d, "", &ctx);
    assert!(
        error_of(&lines)
            .unwrap()
            .starts_with("COPY failed: file not found in build context"),
        "{lines:?}"
    );
    let ctx = context(&[("Dockerfile", b"FROM busybox AS a\nRUN true\n")]);
    let (_, lines, _) = build(&d, "target=zzz", &ctx);
    assert_eq!(
        error_of(&lines).unwrap(),
        "failed to reach build target zzz in Dockerfile"
    );
    let ctx = context(&[
        (
            "Dockerfile",
            b"FROM busybox\nCOPY --chown=nosuchuser a /a\n",
        ),
        ("a", b"a"),
    ]);
    let (_, lines, _) = build(&d, "", &ctx);
    assert!(
        error_of(&lines).unwrap().contains("nosuchuser"),
        "{lines:?}"
    );

    // A corrupt and a truncated context.
    let r = d.api().request(
        "POST",
        "/build",
        &[("Content-Type", "application/x-tar")],
        Some(&[0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.message().starts_with("Error processing tar file"),
        "{}",
        r.message()
    );
    let ctx = context(&[("Dockerfile", b"FROM busybox\n"), ("big", &[7u8; 100_000])]);
    let r = d.api().request(
        "POST",
        "/build",
        &[("Content-Type", "application/x-tar")],
        Some(&ctx[..60_000]),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // Missing Dockerfile.
    let ctx = context(&[("a", b"a")]);
    let r = d.api().request(
        "POST",
        "/build",
        &[("Content-Type", "application/x-tar")],
        Some(&ctx),
    );
    assert_eq!(
        r.message(),
        "Cannot locate specified Dockerfile: Dockerfile"
    );

    // The daemon is healthy and nothing is left.
    assert_eq!(d.api().get("/_ping").status, 200);
    assert_nothing_left(&d);
}

#[test]
fn multi_stage_copy_from_and_target() {
    require_root!();
    let d = daemon_with_busybox();
    let df = b"ARG BASE=busybox
FROM $BASE AS builder
RUN mkdir /out && echo built > /out/artifact
FROM busybox AS unused
RUN echo should-not-run
FROM busybox AS final
COPY --from=builder /out/artifact /artifact
COPY --chown=1000:1000 --chmod=600 f /f
";
    let ctx = context(&[("Dockerfile", df), ("f", b"f")]);
    let (_, lines, text) = build(&d, "t=ms:1", &ctx);
    assert_eq!(error_of(&lines), None, "{text}");
    assert!(
        !text.contains("should-not-run"),
        "the unused stage is skipped: {text}"
    );
    assert_eq!(
        run_in(&d, "ms:1", "cat /artifact; stat -c '%u:%g %a' /f"),
        "built\n1000:1000 600\n"
    );
    // --target builds the named stage.
    let (_, lines, text) = build(&d, "t=ms:builder&target=builder", &ctx);
    assert_eq!(error_of(&lines), None, "{text}");
    assert_eq!(run_in(&d, "ms:builder", "cat /out/artifact"), "built\n");
    assert_nothing_left(&d);
}

fn docker_build(d: &Daemon, dir: &Path, args: &[&str]) -> Option<Output> {
    docker_build_env(d, dir, args, Some("0"))
}

/// `docker build` with DOCKER_BUILDKIT set to `buildkit` (unset: the CLI's default, which
/// takes the legacy API when the daemon does not announce BuildKit and buildx is absent).
fn docker_build_env(
    d: &Daemon,
    dir: &Path,
    args: &[&str],
    buildkit: Option<&str>,
) -> Option<Output> {
    let docker = docker_cli()?;
    let mut cmd = Command::new(docker);
    match buildkit {
        Some(v) => cmd.env("DOCKER_BUILDKIT", v),
        None => cmd.env_remove("DOCKER_BUILDKIT"),
    };
    let out = cmd
        .arg("build")
        .args(args)
        .arg(dir)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir().join("docker-config"))
        .env_remove("DOCKER_CONTEXT")
        .output()
        .unwrap();
    Some(Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[test]
fn docker_cli_build_quiet_iidfile_and_failure() {
    require_root!();
    if docker_cli().is_none() {
        eprintln!("skipped: no docker CLI on this machine");
        return;
    }
    let d = daemon_with_busybox();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), APP).unwrap();
    std::fs::write(dir.path().join("a.txt"), "from a\n").unwrap();
    std::fs::write(dir.path().join("b.txt"), "b\n").unwrap();
    let out = docker_build(&d, dir.path(), &["-t", "cli:1"]).unwrap();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // The CLI's default (no DOCKER_BUILDKIT): the same legacy build, all cached.
    let default = docker_build_env(&d, dir.path(), &["-t", "cli:1"], None).unwrap();
    assert_eq!(default.code, 0, "{}{}", default.stdout, default.stderr);
    assert_eq!(
        default.stdout.matches("Using cache").count(),
        8,
        "{}",
        default.stdout
    );
    assert!(
        out.stdout.contains("Successfully tagged cli:1"),
        "{}",
        out.stdout
    );
    let iid = d.dir().join("iid");
    let out = docker_build(
        &d,
        dir.path(),
        &["-q", "-t", "cli:1", "--iidfile", &iid.display().to_string()],
    )
    .unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = std::fs::read_to_string(&iid).unwrap();
    assert_eq!(out.stdout.trim(), id.trim());
    assert_eq!(inspect(&d, "cli:1")["Id"], id.trim());
    // Touching a file without changing it keeps the cache.
    let f = std::fs::File::options()
        .write(true)
        .open(dir.path().join("b.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    drop(f);
    let out = docker_build(&d, dir.path(), &["-t", "cli:1"]).unwrap();
    assert_eq!(
        out.stdout.matches("Using cache").count(),
        8,
        "{}",
        out.stdout
    );
    // A failing RUN: the CLI exits with its code and prints Docker's message.
    std::fs::write(dir.path().join("Dockerfile"), "FROM busybox\nRUN exit 3\n").unwrap();
    let out = docker_build(&d, dir.path(), &[]).unwrap();
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
        "{}",
        out.stderr
    );
    assert_nothing_left(&d);
}

/// Starts `POST /build?<query>` on a raw connection and reads until `marker` shows in the
/// stream; returns the open connection.
fn build_until(
    d: &Daemon,
    query: &str,
    ctx: &[u8],
    marker: &str,
) -> std::os::unix::net::UnixStream {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "POST /build?{query} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        ctx.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(ctx).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(marker) {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "stream ended before {marker:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

fn containers(d: &Daemon) -> usize {
    d.api()
        .get("/containers/json?all=1")
        .json()
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn cancelled_builds_leave_nothing() {
    use berth_e2e::containers::until;
    require_root!();
    let mut d = daemon_with_busybox();
    let ctx = context(&[(
        "Dockerfile",
        b"FROM busybox\nRUN echo started && sleep 60\n",
    )]);
    // The client goes away mid-RUN.
    let conn = build_until(&d, "", &ctx, "{\"stream\":\"started");
    assert_eq!(containers(&d), 1);
    drop(conn);
    until("the build container to go", || containers(&d) == 0);
    assert_nothing_left(&d);

    // /build/cancel with the build's id.
    let conn = build_until(&d, "buildid=b1", &ctx, "{\"stream\":\"started");
    let r = d.api().post("/build/cancel?id=b1", None);
    assert_eq!(r.status, 200, "{}", r.text());
    until("the cancelled build container to go", || {
        containers(&d) == 0
    });
    drop(conn);
    assert_eq!(d.api().post("/build/cancel?id=b1", None).status, 404);

    // A daemon crash mid-build: the next start removes the build container.
    let conn = build_until(&d, "", &ctx, "{\"stream\":\"started");
    d.kill_hard();
    drop(conn);
    d.start_again();
    assert_eq!(containers(&d), 0);
    // Then a build works and nothing is left.
    let ok = context(&[("Dockerfile", b"FROM busybox\nRUN true\n")]);
    let (_, lines, text) = build(&d, "", &ok);
    assert_eq!(error_of(&lines), None, "{text}");
    assert_nothing_left(&d);
}

#[test]
fn run_mounts_cache_bind_tmpfs_and_heredocs() {
    require_root!();
    let d = daemon_with_busybox();
    let df = b"FROM busybox
RUN --mount=type=cache,target=/cache echo x >> /cache/log && wc -l < /cache/log > /count
RUN --mount=type=bind,source=data,target=/data cat /data/in > /copied
RUN --mount=type=tmpfs,target=/scratch touch /scratch/gone && ls /scratch > /seen
RUN <<EOF
echo from-heredoc > /heredoc
EOF
COPY <<EOT /doc.txt
doc
EOT
";
    let ctx = context(&[("Dockerfile", df), ("data/", b""), ("data/in", b"bound\n")]);
    let (_, lines, text) = build(&d, "t=m:1", &ctx);
    assert_eq!(error_of(&lines), None, "{text}");
    let out = run_in(
        &d,
        "m:1",
        "cat /count /copied /seen /heredoc /doc.txt; cat /scratch/* /data/* /cache/* 2>/dev/null | wc -c",
    );
    assert_eq!(
        out.trim_start(),
        "1\nbound\ngone\nfrom-heredoc\ndoc\n0\n",
        "{text}"
    );
    // The cache mount keeps its content across builds (even without the step cache).
    let (_, lines, text) = build(&d, "t=m:2&nocache=1", &ctx);
    assert_eq!(error_of(&lines), None, "{text}");
    assert_eq!(run_in(&d, "m:2", "cat /count").trim(), "2");
    // A changed file under a bind mount reruns the step that mounts it.
    let ctx2 = context(&[
        ("Dockerfile", df),
        ("data/", b""),
        ("data/in", b"changed\n"),
    ]);
    let (_, lines, text) = build(&d, "t=m:3", &ctx2);
    assert_eq!(error_of(&lines), None, "{text}");
    assert_eq!(run_in(&d, "m:3", "cat /copied"), "changed\n");
    assert_nothing_left(&d);
}

/// Serves `files` (path → body) over HTTP on 127.0.0.1 until the test ends; returns the port.
fn serve(files: Vec<(&'static str, Vec<u8>)>) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).ok();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(body);
                }
                None => {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    port
}

#[test]
fn add_urls_with_checksum_and_remote_contexts() {
    require_root!();
    let d = daemon_with_busybox();
    let payload = b"downloaded\n".to_vec();
    let sum = format!("sha256:{}", berth_e2e::fixtures::sha256_hex(&payload));
    let remote_df = b"FROM busybox\nRUN echo remote > /r\n".to_vec();
    let remote_tar = context(&[
        ("Dockerfile", b"FROM busybox\nCOPY x /x\n"),
        ("x", b"tarred\n"),
    ]);
    let port = serve(vec![
        ("/file.txt", payload),
        ("/Dockerfile", remote_df),
        ("/ctx.tar", remote_tar),
    ]);
    let df = format!("FROM busybox\nADD --checksum={sum} http://127.0.0.1:{port}/file.txt /dl/\n");
    let ctx = context(&[("Dockerfile", df.as_bytes())]);
    let (_, lines, text) = build(&d, "t=url:1", &ctx);
    assert_eq!(error_of(&lines), None, "{text}");
    assert_eq!(run_in(&d, "url:1", "cat /dl/file.txt"), "downloaded\n");
    let bad = format!(
        "FROM busybox\nADD --checksum=sha256:{} http://127.0.0.1:{port}/file.txt /dl/\n",
        "0".repeat(64)
    );
    let (_, lines, _) = build(&d, "", &context(&[("Dockerfile", bad.as_bytes())]));
    assert!(
        error_of(&lines).unwrap().contains("digest mismatch"),
        "{lines:?}"
    );
    let missing = format!("FROM busybox\nADD http://127.0.0.1:{port}/nope /x\n");
    let (_, lines, _) = build(&d, "", &context(&[("Dockerfile", missing.as_bytes())]));
    assert!(error_of(&lines).unwrap().contains("404"), "{lines:?}");

    // remote=: a Dockerfile URL, and a tarball URL.
    let r = d.api().post(
        &format!("/build?t=remote:1&remote=http://127.0.0.1:{port}/Dockerfile"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(run_in(&d, "remote:1", "cat /r"), "remote\n");
    let r = d.api().post(
        &format!("/build?t=remote:2&remote=http://127.0.0.1:{port}/ctx.tar"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(run_in(&d, "remote:2", "cat /x"), "tarred\n");
    assert_nothing_left(&d);
}

#[test]
fn onbuild_args_and_the_image_config() {
    require_root!();
    let d = daemon_with_busybox();
    let base = context(&[(
        "Dockerfile",
        b"FROM busybox\nONBUILD RUN echo triggered > /trig\n",
    )]);
    let (_, lines, text) = build(&d, "t=base:1", &base);
    assert_eq!(error_of(&lines), None, "{text}");
    assert_eq!(
        inspect(&d, "base:1")["Config"]["OnBuild"],
        serde_json::json!(["RUN echo triggered > /trig"])
    );
    let df = b"ARG V=1
FROM base:1
ARG V
ARG TARGETARCH
RUN echo \"$V $TARGETARCH\" > /v
ENV P=/x
USER 1000:1000
HEALTHCHECK --interval=5s --retries=2 CMD true
STOPSIGNAL SIGINT
VOLUME /data
ENTRYPOINT [\"/bin/echo\"]
";
    let ctx = context(&[("Dockerfile", df)]);
    let q = "t=child:1&buildargs=%7B%22V%22%3A%222%22%7D&labels=%7B%22l%22%3A%22v%22%7D";
    let (_, lines, text) = build(&d, q, &ctx);
    assert_eq!(error_of(&lines), None, "{text}");
    assert!(text.contains("# Executing 1 build trigger"), "{text}");
    let cfg = inspect(&d, "child:1")["Config"].clone();
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(cfg["Healthcheck"]["Interval"], 5_000_000_000i64);
    assert_eq!(cfg["Healthcheck"]["Retries"], 2);
    assert_eq!(
        cfg["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "true"])
    );
    assert_eq!(cfg["StopSignal"], "SIGINT");
    assert!(cfg["Volumes"]["/data"].is_object(), "{cfg}");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/echo"]));
    assert_eq!(
        cfg["Cmd"],
        Value::Null,
        "ENTRYPOINT resets the base's CMD: {cfg}"
    );
    assert_eq!(cfg["Labels"]["l"], "v");
    assert!(
        cfg["OnBuild"].as_array().is_none_or(|a| a.is_empty()),
        "{cfg}"
    );
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let out = run_in(&d, "child:1", "cat /trig /v");
    assert_eq!(out, format!("triggered\n2 {arch}\n"));
}

#[test]
fn cache_budget_evicts_least_recently_used() {
    use berth_e2e::containers::until;
    require_root!();
    let mut d = daemon_with_busybox();
    std::fs::write(
        d.dir().join("daemon.json"),
        r#"{"builder": {"gc": {"enabled": true, "defaultKeepStorage": "1MB"}}}"#,
    )
    .unwrap();
    d.restart();
    let df = b"FROM busybox\nCOPY big /big\n";
    let one = context(&[("Dockerfile", df), ("big", &[1u8; 700_000])]);
    let two = context(&[("Dockerfile", df), ("big", &[2u8; 700_000])]);
    let (_, lines, text) = build(&d, "t=b:1", &one);
    assert_eq!(error_of(&lines), None, "{text}");
    let (_, lines, text) = build(&d, "t=b:2", &two);
    assert_eq!(error_of(&lines), None, "{text}");
    let total = |d: &Daemon| -> i64 {
        let df = d.api().get("/system/df").json();
        df["BuildCache"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Size"].as_i64().unwrap())
            .sum()
    };
    until("the cache to fit its budget", || total(&d) <= 1 << 20);
    // The least recently used step (the first build's COPY) went; the second's is cached.
    let (_, _, text) = build(&d, "t=b:2", &two);
    assert!(text.contains("Using cache"), "{text}");
    let (_, _, text) = build(&d, "t=b:1", &one);
    assert!(!text.contains("Using cache"), "{text}");
    // The tagged images themselves stay.
    inspect(&d, "b:1");
}
