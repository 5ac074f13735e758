//! Volumes and mounts end to end: `berth volume ...`, the `/volumes` API, the docker CLI (where
//! installed), `-v`/`--mount`/`--tmpfs`/`--volumes-from`, image `VOLUME`s with copy-up, `rm -v`,
//! prune, `cp` through mounts, and volumes across daemon restarts and a SIGKILL. Needs root.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_e2e::containers::{daemon_with_busybox, until};
use berth_e2e::{Daemon, docker_cli, require_root};
use serde_json::{Value, json};

fn volume_names(d: &Daemon) -> Vec<String> {
    volume_names_at(d, "/volumes")
}

/// The sorted names a `GET /volumes...` answers with.
fn volume_names_at(d: &Daemon, path: &str) -> Vec<String> {
    let r = d.api().get(path);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut names: Vec<String> = r.json()["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn container_count(d: &Daemon) -> usize {
    d.api()
        .get("/containers/json?all=1")
        .json()
        .as_array()
        .unwrap()
        .len()
}

fn data_dir(d: &Daemon, name: &str) -> std::path::PathBuf {
    d.data_root().join("volumes").join(name).join("_data")
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `berth run --rm ARGS`, which must succeed; its stdout.
fn run_rm(d: &Daemon, args: &[&str]) -> String {
    let mut full = vec!["run", "--rm"];
    full.extend_from_slice(args);
    d.berth(&full).success().stdout
}

/// A volume of Docker's local driver on a tmpfs (`--opt type=tmpfs --opt device=tmpfs`), with
/// more `--opt`s.
fn create_tmpfs_volume(d: &Daemon, name: &str, opts: &[&str]) {
    let mut args = vec![
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
    ];
    for opt in opts {
        args.extend_from_slice(&["--opt", opt]);
    }
    args.push(name);
    d.berth(&args).success();
}

/// Mounts a tmpfs on `path` from the host (the caller's guard unmounts it).
fn mount_tmpfs(path: &Path) {
    rustix::mount::mount(
        "none",
        path,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .unwrap();
}

/// An image `voltest` whose `/data` holds files owned by 1000:1000 with distinct modes and a
/// symlink, and which declares `VOLUME /data` (built with commit, as a Dockerfile would).
fn image_with_volume(d: &Daemon) {
    d.berth(&[
        "run",
        "--name",
        "builder",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /data/sub && echo hello > /data/f && ln -s f /data/link && \
         chown -R 1000:1000 /data && chmod 640 /data/f && chmod 750 /data/sub && chmod 711 /data",
    ])
    .success();
    d.berth(&["commit", "-c", "VOLUME /data", "builder", "voltest"])
        .success();
    d.berth(&["rm", "builder"]).success();
}

#[test]
fn user_stories_with_berth() {
    require_root!();
    let d = daemon_with_busybox();
    let out = d.berth(&["volume", "create", "data"]).success();
    assert_eq!(out.stdout, "data\n");
    d.berth(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo hi > /data/x",
    ])
    .success();
    assert_eq!(
        run_rm(&d, &["-v", "data:/data:ro", "busybox", "cat", "/data/x"]),
        "hi\n"
    );
    // ro really refuses writes.
    let out = d.berth(&[
        "run",
        "--rm",
        "-v",
        "data:/data:ro",
        "busybox",
        "sh",
        "-c",
        "echo no > /data/y",
    ]);
    assert_ne!(out.code, 0, "a write to a read-only volume must fail");
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );
    assert!(!data_dir(&d, "data").join("y").exists());
    assert_eq!(
        std::fs::read_to_string(data_dir(&d, "data").join("x")).unwrap(),
        "hi\n"
    );

    // A bind of a host directory as the working directory.
    let src = d.dir().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("main.c"), "int main;").unwrap();
    let src_arg = format!("{}:/src", src.display());
    assert_eq!(
        run_rm(&d, &["-v", &src_arg, "-w", "/src", "busybox", "ls"]),
        "main.c\n"
    );

    // `-v` creates a missing host path, at create and again at start.
    let gone = d.dir().join("gone");
    let gone_arg = format!("{}:/g", gone.display());
    d.berth(&[
        "create", "--name", "rebind", "-v", &gone_arg, "busybox", "ls", "/g",
    ])
    .success();
    assert!(gone.is_dir());
    std::fs::remove_dir(&gone).unwrap();
    d.berth(&["start", "-a", "rebind"]).success();
    assert!(gone.is_dir());
    d.berth(&["rm", "rebind"]).success();

    // A sized tmpfs.
    let out = d
        .berth(&[
            "run",
            "--rm",
            "--mount",
            "type=tmpfs,dst=/scratch,tmpfs-size=64m",
            "busybox",
            "df",
            "/scratch",
        ])
        .success();
    let line = out.stdout.lines().nth(1).unwrap().to_string();
    assert!(
        line.starts_with("tmpfs") && line.split_whitespace().nth(1) == Some("65536"),
        "{}",
        out.stdout
    );

    // ls, inspect, rm.
    let out = d.berth(&["volume", "ls"]).success();
    assert_eq!(out.stdout, "DRIVER    VOLUME NAME\nlocal     data\n");
    let out = d.berth(&["volume", "ls", "-q"]).success();
    assert_eq!(out.stdout, "data\n");
    let out = d
        .berth(&[
            "volume",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ])
        .success();
    assert_eq!(out.stdout, "data local local\n");
    let out = d.berth(&["volume", "inspect", "data"]).success();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v[0]["Name"], "data");
    assert_eq!(v[0]["Driver"], "local");
    assert_eq!(v[0]["Scope"], "local");
    assert_eq!(
        v[0]["Labels"],
        Value::Null,
        "as docker shows a volume created without labels"
    );
    assert_eq!(v[0]["Options"], Value::Null);
    assert_eq!(
        v[0]["Mountpoint"],
        data_dir(&d, "data").display().to_string()
    );
    let out = d.berth(&["volume", "inspect", "nope"]).failure();
    assert!(
        out.stderr.contains("get nope: no such volume"),
        "{}",
        out.stderr
    );
    let out = d.berth(&["volume", "rm", "data"]).success();
    assert_eq!(out.stdout, "data\n");
    assert!(volume_names(&d).is_empty());
    assert!(!d.data_root().join("volumes/data").exists());
}

#[test]
fn data_survives_removal_restart_and_sigkill() {
    require_root!();
    let mut d = daemon_with_busybox();
    d.berth(&[
        "run",
        "--name",
        "writer",
        "-v",
        "keep:/keep",
        "busybox",
        "sh",
        "-c",
        "echo kept > /keep/f",
    ])
    .success();
    d.berth(&["rm", "-v", "writer"]).success();
    assert_eq!(
        volume_names(&d),
        ["keep"],
        "rm -v never removes named volumes"
    );

    d.restart();
    assert_eq!(
        run_rm(&d, &["-v", "keep:/keep", "busybox", "cat", "/keep/f"]),
        "kept\n"
    );

    // Killed hard while a volume is being created: whatever a create or remove left half
    // done is swept on start, and complete volumes stay.
    d.berth(&["volume", "create", "second"]).success();
    d.kill_hard();
    let vols = d.data_root().join("volumes");
    std::fs::create_dir_all(vols.join(".tmp-0123456789abcdef/_data")).unwrap();
    std::fs::create_dir_all(vols.join(".rm-fedcba9876543210/_data")).unwrap();
    d.start_again();
    assert_eq!(volume_names(&d), ["keep", "second"]);
    assert!(!vols.join(".tmp-0123456789abcdef").exists());
    assert!(!vols.join(".rm-fedcba9876543210").exists());
    assert_eq!(
        run_rm(&d, &["-v", "keep:/keep", "busybox", "cat", "/keep/f"]),
        "kept\n"
    );
}

#[test]
fn image_volumes_copy_up_and_rm_v() {
    require_root!();
    let d = daemon_with_busybox();
    image_with_volume(&d);

    // The image's VOLUME becomes an anonymous volume filled from the image.
    let out = d
        .berth(&[
            "run",
            "--name",
            "anon",
            "voltest",
            "sh",
            "-c",
            "stat -c '%u:%g %a %n' /data /data/f /data/sub && readlink /data/link",
        ])
        .success();
    assert_eq!(
        out.stdout,
        "1000:1000 711 /data\n1000:1000 640 /data/f\n1000:1000 750 /data/sub\nf\n"
    );
    let c = d.api().get("/containers/anon/json").json();
    let mounts = c["Mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    let m = &mounts[0];
    assert_eq!(m["Type"], "volume");
    assert_eq!(m["Destination"], "/data");
    assert_eq!(m["Driver"], "local");
    assert_eq!(m["RW"], true);
    let anon = m["Name"].as_str().unwrap().to_string();
    assert!(is_hex64(&anon), "{anon}");
    assert_eq!(m["Source"], data_dir(&d, &anon).display().to_string());
    let f = std::fs::metadata(data_dir(&d, &anon).join("f")).unwrap();
    assert_eq!((f.uid(), f.gid(), f.mode() & 0o777), (1000, 1000, 0o640));
    let v = d.api().get(&format!("/volumes/{anon}")).json();
    assert_eq!(v["Labels"]["com.docker.volume.anonymous"], "");

    // A new named volume is filled too; with nocopy it stays empty.
    d.berth(&[
        "run",
        "--rm",
        "-v",
        "named:/data",
        "voltest",
        "cat",
        "/data/f",
    ])
    .success();
    assert!(data_dir(&d, "named").join("f").exists());
    assert_eq!(
        run_rm(
            &d,
            &["-v", "empty:/data:nocopy", "voltest", "ls", "-A", "/data"]
        ),
        ""
    );
    assert_eq!(
        run_rm(
            &d,
            &[
                "--mount",
                "type=volume,src=empty2,dst=/data,volume-nocopy",
                "voltest",
                "ls",
                "-A",
                "/data"
            ]
        ),
        ""
    );
    // A volume that has content is not filled again.
    std::fs::remove_file(data_dir(&d, "named").join("f")).unwrap();
    d.berth(&["run", "--rm", "-v", "named:/data", "voltest", "true"])
        .success();
    assert!(!data_dir(&d, "named").join("f").exists());

    // rm without -v keeps the anonymous volume; rm -v removes it but never a named one.
    d.berth(&[
        "create", "--name", "both", "-v", "named:/n", "-v", "/anon2", "voltest",
    ])
    .success();
    let both = d.api().get("/containers/both/json").json();
    let anon2 = both["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/anon2")
        .unwrap()["Name"]
        .as_str()
        .unwrap()
        .to_string();
    d.berth(&["rm", "anon"]).success();
    assert!(volume_names(&d).contains(&anon));
    d.berth(&["rm", "-v", "both"]).success();
    let names = volume_names(&d);
    assert!(!names.contains(&anon2), "{names:?}");
    assert!(names.contains(&"named".to_string()));
    // `--rm` removes the anonymous volumes too (the image's /data here).
    let before = volume_names(&d).len();
    d.berth(&["run", "--rm", "voltest", "true"]).success();
    assert_eq!(volume_names(&d).len(), before);
}

#[test]
fn in_use_conflict_prune_and_filters() {
    require_root!();
    let d = daemon_with_busybox();
    let r = d.api().post(
        "/volumes/create",
        Some(
            json!({"Name": "labelled", "Labels": {"team": "a"}})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["Name"], "labelled");
    assert_eq!(v["Labels"]["team"], "a");
    assert_eq!(v["Scope"], "local");
    assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'));
    // Creating it again returns the same volume.
    let r = d.api().post(
        "/volumes/create",
        Some(json!({"Name": "labelled"}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["Labels"]["team"], "a");
    // A generated name.
    let r = d.api().post("/volumes/create", Some(b"{}"));
    assert_eq!(r.status, 201);
    let generated = r.json()["Name"].as_str().unwrap().to_string();
    assert!(is_hex64(&generated));

    let id = d
        .berth(&[
            "create", "--name", "user", "-v", "used:/u", "-v", "/anon", "busybox",
        ])
        .success()
        .stdout
        .trim()
        .to_string();
    let r = d.api().delete("/volumes/used");
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.message(),
        format!("remove used: volume is in use - [{id}]")
    );
    let r = d.api().delete("/volumes/used?force=1");
    assert_eq!(r.status, 409, "force does not remove a volume in use");
    let out = d.berth(&["volume", "rm", "used"]).failure();
    assert!(out.stderr.contains("volume is in use"), "{}", out.stderr);
    assert_eq!(d.api().delete("/volumes/nope").status, 404);
    assert_eq!(d.api().delete("/volumes/nope?force=1").status, 204);

    // Filters.
    let list = |filters: &str| volume_names_at(&d, &format!("/volumes?filters={filters}"));
    assert_eq!(list("%7B%22label%22:%5B%22team=a%22%5D%7D"), ["labelled"]);
    assert_eq!(list("%7B%22name%22:%5B%22use%22%5D%7D"), ["used"]);
    let dangling = list("%7B%22dangling%22:%5B%22true%22%5D%7D");
    assert!(dangling.contains(&"labelled".to_string()) && !dangling.contains(&"used".to_string()));
    let in_use = list("%7B%22dangling%22:%5B%22false%22%5D%7D");
    assert_eq!(in_use.len(), 2, "used and the anonymous one: {in_use:?}");
    assert_eq!(
        list("%7B%22driver%22:%5B%22nfs%22%5D%7D"),
        Vec::<String>::new()
    );
    let r = d
        .api()
        .get("/volumes?filters=%7B%22bogus%22:%5B%22x%22%5D%7D");
    assert_eq!(r.status, 400);
    let out = d
        .berth(&["volume", "ls", "-q", "--filter", "label=team"])
        .success();
    assert_eq!(out.stdout, "labelled\n");

    // system df counts volumes.
    let df = d.api().get("/system/df").json();
    let vols = df["Volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 4);
    let used = vols.iter().find(|v| v["Name"] == "used").unwrap();
    assert_eq!(used["UsageData"]["RefCount"], 1);
    let out = d.berth(&["system", "df"]).success();
    assert!(
        out.stdout.contains("Local Volumes   4         2"),
        "{}",
        out.stdout
    );

    // Prune: only unused anonymous volumes by default; the confirmation prompt first.
    d.berth(&["rm", "user"]).success();
    let out = d
        .berth_with_stdin(&["volume", "prune"], Some(b"n\n"))
        .success();
    assert!(
        out.stdout.contains(
            "WARNING! This will remove anonymous local volumes not used by at least one container."
        ),
        "{}",
        out.stdout
    );
    assert_eq!(volume_names(&d).len(), 4);
    let out = d.berth(&["volume", "prune", "-f"]).success();
    assert!(out.stdout.contains("Deleted Volumes:\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Total reclaimed space: "),
        "{}",
        out.stdout
    );
    let mut left = volume_names(&d);
    left.retain(|n| n != &generated);
    assert_eq!(
        left,
        ["labelled", "used"],
        "the anonymous volume was pruned"
    );
    // --all with a label filter, then --all.
    let r = d.api().post(
        "/volumes/prune?filters=%7B%22all%22:%5B%22true%22%5D,%22label%22:%5B%22team=a%22%5D%7D",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["VolumesDeleted"], json!(["labelled"]));
    // Before API 1.42, prune removed named volumes too.
    let r = d.api().post("/v1.41/volumes/prune", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let deleted = r.json()["VolumesDeleted"].clone();
    assert!(
        deleted.as_array().unwrap().contains(&json!("used")),
        "{deleted}"
    );
    assert!(volume_names(&d).is_empty());
    d.berth(&["volume", "create", "another"]).success();
    let out = d.berth(&["volume", "prune", "--all", "-f"]).success();
    assert!(
        out.stdout.starts_with("Deleted Volumes:\nanother\n"),
        "{}",
        out.stdout
    );
    assert!(volume_names(&d).is_empty());
}

#[test]
fn bad_input_changes_nothing() {
    require_root!();
    let d = daemon_with_busybox();
    d.berth(&["volume", "create", "existing"]).success();
    let host_dir = d.dir().join("hostdir");
    let before_containers = container_count(&d);
    let check_unchanged = |what: &str| {
        assert_eq!(
            container_count(&d),
            before_containers,
            "{what}: a container was left"
        );
        assert_eq!(volume_names(&d), ["existing"], "{what}: volumes changed");
        assert_eq!(
            d.api().get("/_ping").status,
            200,
            "{what}: daemon unhealthy"
        );
    };
    let bind = |spec: &str| {
        d.api().post(
            "/containers/create",
            Some(
                json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Binds": [spec]}})
                    .to_string()
                    .as_bytes(),
            ),
        )
    };
    let cases: Vec<(String, &str)> = vec![
        ("newvol:/x:bogus".to_string(), "invalid mode: bogus"),
        ("newvol:/x:ro,rw".to_string(), "invalid mode: ro,rw"),
        (
            "a b:/x".to_string(),
            "create a b: \"a b\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path",
        ),
        (
            "./rel:/x".to_string(),
            "create ./rel: \"./rel\" includes invalid characters for a local volume name",
        ),
        (
            format!("{}:/proc", host_dir.display()),
            "cannot be mounted because it is not of type proc",
        ),
        (
            format!("{}:/", host_dir.display()),
            "invalid mount config for type \"bind\": invalid specification: destination can't be '/'",
        ),
        ("newvol:rel".to_string(), "mount path must be absolute"),
    ];
    for (spec, want) in &cases {
        let r = bind(spec);
        assert_eq!(r.status, 400, "{spec}: {}", r.text());
        assert!(r.message().contains(want), "{spec}: {}", r.message());
        check_unchanged(spec);
    }
    // Nothing was created on the host for a bind that was refused.
    assert!(!host_dir.exists());

    // A duplicate mount point: neither volume is created.
    let r = d.api().post(
        "/containers/create",
        Some(
            json!({"Image": "busybox", "HostConfig": {"Binds": ["v1:/x", "v2:/x"]}})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.message(), "Duplicate mount point: /x");
    check_unchanged("duplicate");

    // --mount: unknown keys (client side), a missing bind source, an anonymous ro volume.
    let out = d
        .berth(&["create", "--mount", "type=volume,foo=bar,dst=/x", "busybox"])
        .failure();
    assert!(
        out.stderr.contains("unexpected key 'foo' in 'foo=bar'"),
        "{}",
        out.stderr
    );
    let missing = d.dir().join("missing");
    let arg = format!("type=bind,src={},dst=/x", missing.display());
    let out = d.berth(&["create", "--mount", &arg, "busybox"]).failure();
    assert!(
        out.stderr.contains(&format!(
            "invalid mount config for type \"bind\": bind source path does not exist: {}",
            missing.display()
        )),
        "{}",
        out.stderr
    );
    assert!(!missing.exists(), "--mount must not create a bind source");
    let out = d
        .berth(&[
            "create",
            "--mount",
            "type=bind,src=relative,dst=/x",
            "busybox",
        ])
        .failure();
    assert!(
        out.stderr.contains("mount path must be absolute"),
        "{}",
        out.stderr
    );
    let out = d
        .berth(&[
            "create",
            "--mount",
            "type=volume,dst=/x,readonly",
            "busybox",
        ])
        .failure();
    assert!(
        out.stderr
            .contains("must not set ReadOnly mode when using anonymous volumes"),
        "{}",
        out.stderr
    );
    let out = d
        // (`--pull never`: as docker's, the CLI answers any 404 of a create by pulling the
        // image and trying again, and this one has no registry to pull from.)
        .berth(&[
            "create",
            "--pull",
            "never",
            "--volumes-from",
            "nobody",
            "busybox",
        ])
        .failure();
    assert!(
        out.stderr.contains("No such container: nobody"),
        "{}",
        out.stderr
    );
    check_unchanged("--mount cases");

    // Volume create: illegal names and options.
    for (body, want) in [
        (
            json!({"Name": "x"}),
            "create x: volume name is too short, names should be at least two alphanumeric characters",
        ),
        (
            json!({"Name": "bad/name"}),
            "includes invalid characters for a local volume name",
        ),
        (
            json!({"Name": "opts", "DriverOpts": {"foo": "bar"}}),
            "create opts: invalid option: \"foo\"",
        ),
        (
            json!({"Name": "opts", "DriverOpts": {"type": "tmpfs"}}),
            "create opts: missing required option: \"device\"",
        ),
    ] {
        let r = d
            .api()
            .post("/volumes/create", Some(body.to_string().as_bytes()));
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.message().contains(want), "{body}: {}", r.message());
        check_unchanged(&body.to_string());
    }
    let out = d.berth(&["volume", "create", "a:b"]).failure();
    assert!(
        out.stderr.contains("includes invalid characters"),
        "{}",
        out.stderr
    );
    check_unchanged("cli create");
}

#[test]
fn cp_through_volumes_and_binds() {
    require_root!();
    let d = daemon_with_busybox();
    let bind = d.dir().join("bind");
    std::fs::create_dir(&bind).unwrap();
    std::fs::write(bind.join("from-host"), "host\n").unwrap();
    let bind_arg = format!("{}:/b", bind.display());
    let ro_arg = format!("{}:/robind:ro", bind.display());
    d.berth(&[
        "create", "--name", "cpc", "-v", "vol:/v", "-v", &bind_arg, "-v", &ro_arg, "busybox",
        "sleep", "300",
    ])
    .success();
    let file = d.dir().join("in.txt");
    std::fs::write(&file, "into the volume\n").unwrap();
    let file_arg = file.display().to_string();

    // Stopped: into and out of a volume and a bind.
    d.berth(&["cp", &file_arg, "cpc:/v/"]).success();
    assert_eq!(
        std::fs::read_to_string(data_dir(&d, "vol").join("in.txt")).unwrap(),
        "into the volume\n"
    );
    d.berth(&["cp", &file_arg, "cpc:/b/"]).success();
    assert!(bind.join("in.txt").exists());
    let out_path = d.dir().join("out");
    std::fs::create_dir(&out_path).unwrap();
    d.berth(&["cp", "cpc:/b/from-host", &out_path.display().to_string()])
        .success();
    assert_eq!(
        std::fs::read_to_string(out_path.join("from-host")).unwrap(),
        "host\n"
    );
    let out = d.berth(&["cp", &file_arg, "cpc:/robind/"]).failure();
    assert!(
        out.stderr.contains("mounted volume is marked read-only"),
        "{}",
        out.stderr
    );
    // Nothing of this went into the container's own layer, and nothing stayed mounted.
    let upper = d
        .data_root()
        .join("containers")
        .join(
            d.api().get("/containers/cpc/json").json()["Id"]
                .as_str()
                .unwrap(),
        )
        .join("upper");
    assert!(!upper.join("v/in.txt").exists());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&d.data_root().display().to_string()));

    // Running: the container sees what cp put there, and cp sees what it writes.
    d.berth(&["start", "cpc"]).success();
    let out = d
        .berth(&["exec", "cpc", "cat", "/v/in.txt", "/b/in.txt"])
        .success();
    assert_eq!(out.stdout, "into the volume\ninto the volume\n");
    d.berth(&["exec", "cpc", "sh", "-c", "echo running > /v/made"])
        .success();
    d.berth(&["cp", "cpc:/v/made", &out_path.display().to_string()])
        .success();
    assert_eq!(
        std::fs::read_to_string(out_path.join("made")).unwrap(),
        "running\n"
    );
    std::fs::write(&file, "second\n").unwrap();
    d.berth(&["cp", &file_arg, "cpc:/v/second.txt"]).success();
    let out = d.berth(&["exec", "cpc", "cat", "/v/second.txt"]).success();
    assert_eq!(out.stdout, "second\n");
    d.berth(&["rm", "-f", "cpc"]).success();
}

#[test]
fn volumes_from_tmpfs_options_and_commit() {
    require_root!();
    let d = daemon_with_busybox();
    d.berth(&[
        "run",
        "--name",
        "src",
        "-v",
        "shared:/shared",
        "-v",
        "/anon",
        "busybox",
        "sh",
        "-c",
        "echo s > /shared/f; echo a > /anon/f",
    ])
    .success();
    let out = d.berth(&[
        "run",
        "--rm",
        "--volumes-from",
        "src:ro",
        "busybox",
        "sh",
        "-c",
        "cat /shared/f /anon/f; echo x > /shared/g",
    ]);
    assert_eq!(out.stdout, "s\na\n");
    assert_ne!(out.code, 0, "--volumes-from :ro mounts read-only");
    // `--rm` of the borrowing container keeps the source's anonymous volume.
    let src = d.api().get("/containers/src/json").json();
    let anon = src["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/anon")
        .unwrap()["Name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(volume_names(&d).contains(&anon));

    // A volume of Docker's local driver with tmpfs options: mounted while used.
    create_tmpfs_volume(&d, "tv", &["o=size=2m"]);
    let v = d.api().get("/volumes/tv").json();
    assert_eq!(
        v["Options"],
        json!({"type": "tmpfs", "device": "tmpfs", "o": "size=2m"})
    );
    let out = d
        .berth(&["run", "--rm", "-v", "tv:/tv", "busybox", "df", "/tv"])
        .success();
    let line = out.stdout.lines().nth(1).unwrap().to_string();
    assert!(
        line.split_whitespace().nth(1) == Some("2048"),
        "{}",
        out.stdout
    );
    let mounted = || {
        let want = data_dir(&d, "tv").display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
    };
    until("the tmpfs volume to be unmounted", || !mounted());
    d.berth(&[
        "run", "-d", "--name", "holder", "-v", "tv:/tv", "busybox", "sleep", "300",
    ])
    .success();
    assert!(mounted());
    d.berth(&["rm", "-f", "holder"]).success();
    until("the tmpfs volume to be unmounted", || !mounted());
    d.berth(&["volume", "rm", "tv"]).success();

    // Commit does not take volume contents.
    d.berth(&[
        "run",
        "--name",
        "committed",
        "-v",
        "cv:/cv",
        "busybox",
        "sh",
        "-c",
        "echo v > /cv/f; echo l > /layer",
    ])
    .success();
    d.berth(&["commit", "committed", "snap"]).success();
    let out = d
        .berth(&[
            "run",
            "--rm",
            "snap",
            "sh",
            "-c",
            "cat /layer; ls -A /cv 2>&1 | wc -l",
        ])
        .success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "l");
    assert_eq!(lines[1].trim(), "0", "{}", out.stdout);
}

#[test]
fn volume_events() {
    require_root!();
    let d = daemon_with_busybox();
    d.berth(&["volume", "create", "ev"]).success();
    d.berth(&["run", "--rm", "-v", "ev:/ev", "busybox", "true"])
        .success();
    d.berth(&["volume", "rm", "ev"]).success();
    // Until one second ahead: whole seconds would cut off this second's events.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let r = d.api().get(&format!(
        "/events?since=0&until={until}&filters=%7B%22type%22:%5B%22volume%22%5D%7D"
    ));
    assert_eq!(r.status, 200);
    let actions: Vec<(String, String)> = r
        .json_lines()
        .iter()
        .map(|e| {
            (
                e["Action"].as_str().unwrap().to_string(),
                e["Actor"]["ID"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let ev: Vec<&str> = actions
        .iter()
        .filter(|(_, id)| id == "ev")
        .map(|(a, _)| a.as_str())
        .collect();
    assert_eq!(ev, ["create", "mount", "unmount", "destroy"], "{actions:?}");
}

#[test]
fn docker_cli_volumes() {
    require_root!();
    if docker_cli().is_none() {
        eprintln!("skipped docker_cli_volumes: no docker CLI on this machine");
        return;
    }
    let d = daemon_with_busybox();
    let docker = |args: &[&str]| d.docker(args).unwrap();
    assert_eq!(
        docker(&["volume", "create", "--label", "k=v", "dv"])
            .success()
            .stdout,
        "dv\n"
    );
    docker(&[
        "run",
        "--rm",
        "-v",
        "dv:/d",
        "busybox",
        "sh",
        "-c",
        "echo d > /d/f",
    ])
    .success();
    let out = docker(&[
        "run",
        "--rm",
        "--mount",
        "source=dv,target=/d,readonly",
        "busybox",
        "cat",
        "/d/f",
    ])
    .success();
    assert_eq!(out.stdout, "d\n");
    let out = docker(&["volume", "ls"]).success();
    assert_eq!(out.stdout, "DRIVER    VOLUME NAME\nlocal     dv\n");
    let out = docker(&["volume", "ls", "--format", "{{.Name}} {{.Labels}}"]).success();
    assert_eq!(out.stdout, "dv k=v\n");
    let out = docker(&[
        "volume",
        "inspect",
        "--format",
        "{{.Name}} {{.Driver}} {{.Labels}}",
        "dv",
    ])
    .success();
    assert_eq!(out.stdout, "dv local map[k:v]\n");
    docker(&["create", "--name", "holder", "-v", "dv:/d", "busybox"]).success();
    let out = docker(&["volume", "rm", "dv"]).failure();
    assert!(
        out.stderr.contains("remove dv: volume is in use - ["),
        "{}",
        out.stderr
    );
    let out = docker(&["run", "--rm", "-v", "/tmp/x:/proc", "busybox", "true"]).failure();
    assert!(
        out.stderr
            .contains("cannot be mounted because it is not of type proc"),
        "{}",
        out.stderr
    );
    let out = docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}}{{end}}",
        "holder",
    ])
    .success();
    assert_eq!(out.stdout, "volume dv /d true\n");
    docker(&["rm", "holder"]).success();
    docker(&["volume", "rm", "dv"]).success();
    let out = docker(&["volume", "prune", "-f"]).success();
    assert!(
        out.stdout.contains("Total reclaimed space: 0B"),
        "{}",
        out.stdout
    );
    let out = docker(&["system", "df"]).success();
    assert!(out.stdout.contains("Local Volumes   0"), "{}", out.stdout);
    assert!(!Path::new(&data_dir(&d, "dv")).exists());
}

/// Unmounts what a test mounted on the host, also when it fails.
struct HostMounts(Vec<std::path::PathBuf>);

impl Drop for HostMounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

#[test]
fn bind_propagation_reaches_the_container() {
    require_root!();
    let d = daemon_with_busybox();
    // A shared host mount: what is mounted below it later reaches an rslave bind of it.
    let shared = d.dir().join("shared");
    let sub = shared.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let mut guard = HostMounts(Vec::new());
    rustix::mount::mount_bind(&shared, &shared).unwrap();
    guard.0.push(shared.clone());
    rustix::mount::mount_change(&shared, rustix::mount::MountPropagationFlags::SHARED).unwrap();

    let arg = format!("{}:/p:rslave", shared.display());
    d.berth(&[
        "run", "-d", "--name", "prop", "-v", &arg, "busybox", "sleep", "300",
    ])
    .success();
    // The default, rprivate, for comparison.
    let arg = format!("{}:/p", shared.display());
    d.berth(&[
        "run", "-d", "--name", "priv", "-v", &arg, "busybox", "sleep", "300",
    ])
    .success();
    let c = d.api().get("/containers/prop/json").json();
    assert_eq!(c["Mounts"][0]["Propagation"], "rslave");
    assert_eq!(c["Mounts"][0]["Mode"], "rslave");
    let c = d.api().get("/containers/priv/json").json();
    assert_eq!(c["Mounts"][0]["Propagation"], "rprivate");

    // Mounted on the host after both started.
    mount_tmpfs(&sub);
    guard.0.push(sub.clone());
    let out = d
        .berth(&[
            "exec",
            "prop",
            "grep",
            "-c",
            " /p/sub ",
            "/proc/self/mountinfo",
        ])
        .success();
    assert_eq!(out.stdout.trim(), "1");
    let out = d.berth(&[
        "exec",
        "priv",
        "grep",
        "-c",
        " /p/sub ",
        "/proc/self/mountinfo",
    ]);
    assert_eq!(
        out.stdout.trim(),
        "0",
        "an rprivate bind must not receive it"
    );
    d.berth(&["rm", "-f", "priv"]).success();
    d.berth(&["rm", "-f", "prop"]).success();
}

#[test]
fn non_recursive_binds_leave_submounts_out() {
    require_root!();
    let d = daemon_with_busybox();
    let dir = d.dir().join("tree");
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let _guard = HostMounts(vec![sub.clone()]);
    mount_tmpfs(&sub);
    std::fs::write(sub.join("in-tmpfs"), "x").unwrap();
    let count = |mount: &str| {
        d.berth(&["run", "--rm", "--mount", mount, "busybox", "ls", "/d/sub"])
            .success()
            .stdout
    };
    let recursive = format!("type=bind,src={},dst=/d", dir.display());
    assert_eq!(count(&recursive), "in-tmpfs\n");
    let flat = format!(
        "type=bind,src={},dst=/d,bind-recursive=disabled",
        dir.display()
    );
    assert_eq!(
        count(&flat),
        "",
        "the submount is not carried by a non-recursive bind"
    );
}

#[test]
fn volume_mounts_are_released_for_containers_that_stopped_while_the_daemon_was_away() {
    require_root!();
    let mut d = daemon_with_busybox();
    create_tmpfs_volume(&d, "away", &[]);
    let id = d
        .berth(&["run", "-d", "-v", "away:/a", "busybox", "sleep", "300"])
        .success()
        .stdout
        .trim()
        .to_string();
    let data = data_dir(&d, "away").display().to_string();
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(data.as_str()))
    };
    assert!(mounted());
    d.kill_hard();
    let dir = d.run_dir(&id);
    let pid = |f: &str| -> i32 {
        std::fs::read_to_string(dir.join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (init, shim) = (pid("init.pid"), pid("shim.pid"));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(init).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    until("the shim to record the exit and end", || {
        !Path::new(&format!("/proc/{shim}")).exists()
    });
    assert!(mounted(), "nothing unmounts it while the daemon is away");
    d.start_again();
    assert!(!mounted(), "the restarted daemon releases the mount");
    let c = d.api().get(&format!("/containers/{id}/json")).json();
    assert_eq!(c["State"]["Status"], "exited");
    d.berth(&["rm", &id]).success();
    d.berth(&["volume", "rm", "away"]).success();
}
