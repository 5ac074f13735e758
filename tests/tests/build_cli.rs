//! `berth build` through a real berthd: tags, `-q`, `--iidfile`, `-f -`, a Dockerfile outside
//! the context, a tar or a lone Dockerfile on stdin, `.dockerignore` honoured (and the
//! Dockerfile and `.dockerignore` still sent), errors in Docker's words with the RUN's exit
//! code, `builder prune` and `system df`.

use std::path::Path;

use berth_e2e::containers::daemon_with_busybox;
use berth_e2e::{Daemon, require_root};

/// A context directory with a Dockerfile that lists what it received.
fn context(d: &Daemon, name: &str, dockerfile: &str) -> std::path::PathBuf {
    let dir = d.dir().join(name);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(dir.join("a.txt"), "a\n").unwrap();
    std::fs::write(dir.join("sub/b.txt"), "b\n").unwrap();
    std::fs::write(dir.join("secret.key"), "s\n").unwrap();
    std::fs::write(dir.join("debug.log"), "l\n").unwrap();
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The files of `/c` in image `image`, one a line, through a container run.
fn listing(d: &Daemon, image: &str) -> String {
    d.berth(&["run", "--rm", image, "sh", "-c", "cd /c && find . | sort"])
        .success()
        .stdout
}

const LIST: &str = "FROM busybox\nCOPY . /c\nCMD [\"sh\"]\n";

#[test]
fn build_tags_quiet_iidfile_and_dockerignore() {
    require_root!();
    let d = daemon_with_busybox();
    let ctx = context(&d, "ctx", LIST);
    std::fs::write(
        ctx.join(".dockerignore"),
        "*.key\n*.log\nDockerfile\n.dockerignore\n",
    )
    .unwrap();

    let out = d
        .berth(&["build", "-t", "app:1", "-t", "app:2", path(&ctx)])
        .success();
    assert!(
        out.stdout.contains("Step 1/3 : FROM busybox"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Successfully tagged app:1"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Successfully tagged app:2"),
        "{}",
        out.stdout
    );
    let files = listing(&d, "app:1");
    // Excluded files stay out; the excluded Dockerfile and .dockerignore are sent (the
    // daemon needs them) but, being excluded, not copied.
    assert_eq!(files, ".\n./a.txt\n./sub\n./sub/b.txt\n", "{files}");

    // -q prints the ID only; --iidfile writes it without a newline.
    let iid = d.dir().join("iid");
    let out = d
        .berth(&[
            "build",
            "-q",
            "--iidfile",
            path(&iid),
            "-t",
            "app:q",
            path(&ctx),
        ])
        .success();
    let id = out.stdout.trim().to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "{}",
        out.stdout
    );
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), id);
    let inspect = d.api().get("/images/app:q/json").json();
    assert_eq!(inspect["Id"], id.as_str());
}

#[test]
fn dockerfile_from_stdin_outside_the_context_and_stdin_contexts() {
    require_root!();
    let d = daemon_with_busybox();
    let ctx = context(&d, "ctx", "FROM busybox\nRUN false\n");

    // -f -: the Dockerfile on stdin, the directory as context; the added Dockerfile is not
    // part of what COPY sees.
    d.berth_with_stdin(
        &["build", "-f", "-", "-t", "stdin-df", path(&ctx)],
        Some(LIST.as_bytes()),
    )
    .success();
    let files = listing(&d, "stdin-df");
    assert!(
        files.contains("./a.txt\n") && !files.contains(".dockerfile."),
        "{files}"
    );

    // -f naming a file outside the context.
    let outside = d.dir().join("Other.Dockerfile");
    std::fs::write(&outside, LIST).unwrap();
    d.berth(&["build", "-f", path(&outside), "-t", "outside", path(&ctx)])
        .success();
    assert!(listing(&d, "outside").contains("./sub/b.txt\n"));

    // A tar on stdin is the context.
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("Dockerfile", LIST.as_bytes()),
        ("only.txt", b"x\n".as_slice()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, name, data).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    d.berth_with_stdin(&["build", "-t", "tar-ctx", "-"], Some(&tar))
        .success();
    assert_eq!(listing(&d, "tar-ctx"), ".\n./Dockerfile\n./only.txt\n");

    // A Dockerfile alone on stdin.
    let out = d
        .berth_with_stdin(
            &["build", "-t", "lone", "-"],
            Some(b"FROM busybox\nRUN echo from-stdin\n"),
        )
        .success();
    assert!(out.stdout.contains("from-stdin"), "{}", out.stdout);

    // Both from stdin is refused before anything is sent.
    let out = d
        .berth_with_stdin(&["build", "-f", "-", "-"], Some(b""))
        .failure();
    assert!(
        out.stderr
            .contains("can't use stdin for both build context and dockerfile"),
        "{}",
        out.stderr
    );
}

#[test]
fn errors_in_dockers_words() {
    require_root!();
    let d = daemon_with_busybox();
    let out = d
        .berth_with_stdin(&["build", "-"], Some(b"FROM busybox\nRUN exit 7\n"))
        .failure();
    assert_eq!(out.code, 7, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("The command '/bin/sh -c exit 7' returned a non-zero code: 7"),
        "{}",
        out.stderr
    );
    let out = d
        .berth_with_stdin(&["build", "-"], Some(b"FROM busybox\nRUN true\nFOOBAR x\n"))
        .failure();
    assert!(
        out.stderr
            .contains("dockerfile parse error on line 3: unknown instruction: FOOBAR"),
        "{}",
        out.stderr
    );
    let empty = d.dir().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = d.berth(&["build", path(&empty)]).failure();
    assert!(
        out.stderr
            .contains("unable to prepare context: unable to evaluate symlinks in Dockerfile path"),
        "{}",
        out.stderr
    );
    let out = d.berth(&["build", "/nonexistent/context"]).failure();
    assert!(
        out.stderr
            .contains("unable to prepare context: path \"/nonexistent/context\" not found"),
        "{}",
        out.stderr
    );
}

#[test]
fn builder_prune_and_system_df() {
    require_root!();
    let d = daemon_with_busybox();
    let ctx = context(
        &d,
        "ctx",
        "FROM busybox\nCOPY a.txt /a\nRUN echo built > /b\n",
    );
    d.berth(&["build", "-t", "cached", path(&ctx)]).success();
    let out = d.berth(&["build", "-t", "cached", path(&ctx)]).success();
    assert!(out.stdout.contains(" ---> Using cache"), "{}", out.stdout);
    let out = d.berth(&["system", "df"]).success();
    assert!(out.stdout.contains("Build Cache"), "{}", out.stdout);
    let out = d.berth(&["system", "df", "-v"]).success();
    assert!(out.stdout.contains("Build cache usage: "), "{}", out.stdout);
    let out = d.berth(&["builder", "prune", "-a", "-f"]).success();
    assert!(
        out.stdout.contains("Total reclaimed space:"),
        "{}",
        out.stdout
    );
}

/// `docker build` (legacy API) with the same flags and context, on the same daemon.
fn docker_build(d: &Daemon, args: &[&str], stdin: Option<&[u8]>) -> Option<berth_e2e::Output> {
    use std::io::Write as _;
    let docker = berth_e2e::docker_cli()?;
    let mut child = std::process::Command::new(docker)
        .arg("build")
        .args(args)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CONFIG", d.dir().join("docker-config"))
        .env_remove("DOCKER_CONTEXT")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    Some(berth_e2e::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// berth and the docker CLI send the same context for the same command line: what COPY sees
/// in the image is the same, with `.dockerignore` exceptions, `-f -` and an outside `-f`.
#[test]
fn berth_and_docker_send_the_same_context() {
    require_root!();
    if berth_e2e::docker_cli().is_none() {
        eprintln!("skipped: no docker CLI on this machine");
        return;
    }
    let d = daemon_with_busybox();
    let ctx = context(&d, "ctx", LIST);
    std::fs::create_dir_all(ctx.join("node_modules/x")).unwrap();
    std::fs::write(ctx.join("node_modules/x/i.js"), "i\n").unwrap();
    std::fs::write(ctx.join("node_modules/keep.js"), "k\n").unwrap();
    std::fs::write(
        ctx.join(".dockerignore"),
        "# build files\n*.key\n/debug.log\nnode_modules\n!node_modules/keep.js\nDockerfile\n",
    )
    .unwrap();
    let outside = d.dir().join("Outside.Dockerfile");
    std::fs::write(&outside, LIST).unwrap();
    let cases: Vec<(Vec<String>, Option<&[u8]>)> = vec![
        (vec![], None),
        (vec!["-f".into(), "-".into()], Some(LIST.as_bytes())),
        (vec!["-f".into(), path(&outside).into()], None),
    ];
    for (i, (flags, stdin)) in cases.into_iter().enumerate() {
        let tag_b = format!("berth-ctx:{i}");
        let tag_d = format!("docker-ctx:{i}");
        let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
        args.extend(["-t", &tag_b, path(&ctx)]);
        let mut b = vec!["build"];
        b.extend(&args);
        d.berth_with_stdin(&b, stdin).success();
        let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
        args.extend(["-t", &tag_d, path(&ctx)]);
        let out = docker_build(&d, &args, stdin).unwrap();
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert_eq!(
            listing(&d, &tag_b),
            listing(&d, &tag_d),
            "case {i}: {flags:?}"
        );
    }
    assert_eq!(
        listing(&d, "berth-ctx:0"),
        ".\n./.dockerignore\n./a.txt\n./node_modules\n./node_modules/keep.js\n./sub\n./sub/b.txt\n"
    );
}
