//! Images end to end through `berth` and the raw API: load, list, inspect, history, tag, rmi,
//! save, import, prune, system df, events, persistence across restarts, contexts.

use berth_e2e::fixtures::{Entry, ImageSpec, layer_tar};
use berth_e2e::{Daemon, busybox_archive};

fn write_archive(daemon: &Daemon, name: &str, data: &[u8]) -> String {
    let path = daemon.dir().join(name);
    std::fs::write(&path, data).unwrap();
    path.display().to_string()
}

#[test]
fn load_list_inspect_from_a_file_and_from_stdin() {
    let daemon = Daemon::start();
    let spec = ImageSpec::busybox(Some("busybox:latest"));
    let file = write_archive(&daemon, "busybox.tar", &spec.docker_archive());
    let out = daemon.berth(&["load", "-i", &file]).success();
    assert!(
        out.stdout.contains("Loaded image: busybox:latest"),
        "{}",
        out.stdout
    );

    let out = daemon.berth(&["images"]).success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY"), "{}", out.stdout);
    assert!(
        lines[0].contains("IMAGE ID") && lines[0].contains("SIZE"),
        "{}",
        out.stdout
    );
    let short_id = &spec.id()["sha256:".len().."sha256:".len() + 12];
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("busybox") && l.contains("latest") && l.contains(short_id)),
        "{}",
        out.stdout
    );

    let out = daemon
        .berth(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}} {{.Os}} {{.Config.Cmd}}",
            "busybox",
        ])
        .success();
    assert_eq!(out.stdout.trim(), format!("{} linux [sh]", spec.id()));

    let inspect = daemon.api().get("/images/busybox:latest/json").json();
    assert_eq!(inspect["Id"], spec.id());
    assert_eq!(inspect["RepoTags"], serde_json::json!(["busybox:latest"]));
    assert_eq!(inspect["RootFS"]["Type"], "layers");
    assert_eq!(
        inspect["RootFS"]["Layers"],
        serde_json::json!(spec.diff_ids())
    );
    assert_eq!(inspect["Architecture"], "amd64");
    assert!(
        inspect["Size"].as_i64().unwrap() > 1_000_000,
        "busybox is ~2 MB: {}",
        inspect["Size"]
    );

    // From stdin, a second name for the same image.
    let retagged = ImageSpec::busybox(Some("other/busybox:v2"));
    let out = daemon
        .berth_with_stdin(&["load"], Some(&retagged.docker_archive()))
        .success();
    assert!(
        out.stdout.contains("Loaded image: other/busybox:v2"),
        "{}",
        out.stdout
    );
    let out = daemon.berth(&["images", "-q"]).success();
    // One image, two tags: `-q` lists the id once per tag, as docker does.
    assert!(out.stdout.lines().all(|l| l == short_id), "{}", out.stdout);
    let out = daemon
        .berth(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .success();
    let mut names: Vec<&str> = out.stdout.lines().collect();
    names.sort();
    assert_eq!(names, vec!["busybox:latest", "other/busybox:v2"]);
}

#[test]
fn oci_layouts_and_compressed_layers_load() {
    let daemon = Daemon::start();
    let mut spec = ImageSpec::busybox(Some("ocibox:1")).file_layer(&[("etc/motd", b"hello\n")]);
    spec.gzip_layers = true;
    let out = daemon
        .berth_with_stdin(&["load"], Some(&spec.oci_archive()))
        .success();
    assert!(out.stdout.contains("ocibox:1"), "{}", out.stdout);
    let inspect = daemon.api().get("/images/ocibox:1/json").json();
    assert_eq!(inspect["Id"], spec.id());
    assert_eq!(inspect["RootFS"]["Layers"].as_array().unwrap().len(), 2);

    let mut gz = ImageSpec::busybox(Some("gzbox:1"));
    gz.gzip_layers = true;
    daemon
        .berth_with_stdin(&["load", "-q"], Some(&gz.docker_archive()))
        .success();
    assert_eq!(
        daemon.api().get("/images/gzbox:1/json").json()["Id"],
        gz.id()
    );
}

#[test]
fn tag_untag_and_delete_follow_docker() {
    let daemon = Daemon::start();
    let spec = ImageSpec::busybox(Some("busybox:latest"));
    daemon
        .berth_with_stdin(&["load"], Some(&spec.docker_archive()))
        .success();
    daemon.berth(&["tag", "busybox", "myrepo/app:v1"]).success();
    daemon
        .berth(&["tag", "busybox:latest", "localhost:5000/x/y:z"])
        .success();
    let tags = daemon.api().get("/images/busybox/json").json()["RepoTags"].clone();
    let mut tags: Vec<String> = serde_json::from_value(tags).unwrap();
    tags.sort();
    assert_eq!(
        tags,
        vec!["busybox:latest", "localhost:5000/x/y:z", "myrepo/app:v1"]
    );

    // By id with several repositories: refused without force.
    let out = daemon.berth(&["rmi", &spec.id()]).failure();
    assert!(
        out.stderr.contains("must be forced") && out.stderr.contains("multiple repositories"),
        "{}",
        out.stderr
    );

    let out = daemon.berth(&["rmi", "myrepo/app:v1"]).success();
    assert_eq!(out.stdout.trim(), "Untagged: myrepo/app:v1");
    let out = daemon.berth(&["rmi", "localhost:5000/x/y:z"]).success();
    assert_eq!(out.stdout.trim(), "Untagged: localhost:5000/x/y:z");

    let response = daemon.api().delete("/images/busybox");
    assert_eq!(response.status, 200, "{}", response.text());
    let items = response.json();
    assert_eq!(items[0]["Untagged"], "busybox:latest");
    assert!(
        items
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["Deleted"] == spec.id()),
        "{items}"
    );
    assert_eq!(
        daemon.api().get("/images/json").json(),
        serde_json::json!([])
    );
    // Nothing of it stays on disk.
    let blobs = std::fs::read_dir(daemon.data_root().join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "blobs left after the last image was deleted");

    // -f on an id with several tags removes them all.
    daemon
        .berth_with_stdin(&["load"], Some(&spec.docker_archive()))
        .success();
    daemon.berth(&["tag", "busybox", "again:1"]).success();
    let out = daemon.berth(&["rmi", "-f", &spec.id()]).success();
    assert!(
        out.stdout.contains("Untagged: again:1") && out.stdout.contains("Deleted:"),
        "{}",
        out.stdout
    );
}

#[test]
fn shared_layers_are_stored_once_and_survive_deletes() {
    let daemon = Daemon::start();
    let base = ImageSpec::busybox(Some("base:1"));
    let child = ImageSpec::busybox(Some("child:1")).file_layer(&[("app.txt", b"app\n")]);
    daemon
        .berth_with_stdin(&["load"], Some(&base.docker_archive()))
        .success();
    daemon
        .berth_with_stdin(&["load"], Some(&child.docker_archive()))
        .success();
    let layers = std::fs::read_dir(daemon.data_root().join("layers"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(layers, 2, "the busybox layer must be stored once");

    let df = daemon.api().get("/system/df").json();
    let shared: Vec<i64> = df["Images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["SharedSize"].as_i64().unwrap())
        .collect();
    assert!(
        shared.iter().all(|s| *s > 1_000_000),
        "busybox layer is shared: {df}"
    );

    daemon.berth(&["rmi", "base:1"]).success();
    // The child still works: inspect, history, save.
    assert_eq!(daemon.api().get("/images/child:1/json").status, 200);
    let history = daemon.api().get("/images/child:1/history").json();
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[0]["Id"], child.id());
    assert_eq!(history[1]["Id"], "<missing>");
    let saved = daemon.dir().join("child.tar");
    daemon
        .berth(&["save", "-o", &saved.display().to_string(), "child:1"])
        .success();
    assert!(std::fs::metadata(&saved).unwrap().len() > 1_000_000);
}

#[test]
fn save_then_load_on_another_daemon_keeps_ids_and_tags() {
    let first = Daemon::start();
    let a = ImageSpec::busybox(Some("alpha:1"));
    let b = ImageSpec::busybox(Some("beta:2")).file_layer(&[("b", b"b")]);
    first
        .berth_with_stdin(&["load"], Some(&a.docker_archive()))
        .success();
    first
        .berth_with_stdin(&["load"], Some(&b.docker_archive()))
        .success();
    let archive = first.dir().join("both.tar");
    first
        .berth(&[
            "save",
            "-o",
            &archive.display().to_string(),
            "alpha:1",
            "beta:2",
        ])
        .success();
    // Saving to stdout works too, and a terminal is refused elsewhere (not testable without a pty).
    let raw = first.api().get("/images/get?names=alpha:1");
    assert_eq!(raw.status, 200);
    assert!(
        raw.header("Content-Type")
            .unwrap_or_default()
            .contains("tar")
    );

    let second = Daemon::start();
    let out = second
        .berth(&["load", "-i", &archive.display().to_string()])
        .success();
    assert!(
        out.stdout.contains("alpha:1") && out.stdout.contains("beta:2"),
        "{}",
        out.stdout
    );
    assert_eq!(
        second.api().get("/images/alpha:1/json").json()["Id"],
        a.id()
    );
    assert_eq!(second.api().get("/images/beta:2/json").json()["Id"], b.id());

    // Unknown names fail before anything is streamed.
    let missing = first.api().get("/images/get?names=nope:1");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.message(), "No such image: nope:1");
}

#[test]
fn import_turns_a_rootfs_into_an_image_with_changes() {
    let daemon = Daemon::start();
    let rootfs = layer_tar(&[
        Entry::Dir {
            path: "data/",
            mode: 0o755,
        },
        Entry::File {
            path: "data/hello.txt",
            data: b"hello",
            mode: 0o644,
        },
    ]);
    let file = write_archive(&daemon, "rootfs.tar", &rootfs);
    let out = daemon
        .berth(&[
            "import",
            "-c",
            "CMD [\"cat\", \"/data/hello.txt\"]",
            "-c",
            "ENV GREETING=hi",
            "-c",
            "LABEL team=core",
            "-m",
            "imported for a test",
            &file,
            "imported:v1",
        ])
        .success();
    let id = out.stdout.trim().to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "{}",
        out.stdout
    );
    let inspect = daemon.api().get("/images/imported:v1/json").json();
    assert_eq!(inspect["Id"], id);
    assert_eq!(
        inspect["Config"]["Cmd"],
        serde_json::json!(["cat", "/data/hello.txt"])
    );
    assert!(
        inspect["Config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&"GREETING=hi".into())
    );
    assert_eq!(inspect["Config"]["Labels"]["team"], "core");
    assert_eq!(inspect["Comment"], "imported for a test");
    let history = daemon
        .berth(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.Comment}}",
            "imported:v1",
        ])
        .success();
    assert!(
        history.stdout.contains("imported for a test"),
        "{}",
        history.stdout
    );

    // A bad change is refused and nothing is created.
    let out = daemon
        .berth(&["import", "-c", "FROBNICATE x", &file, "bad:1"])
        .failure();
    assert!(!out.stderr.is_empty());
    assert_eq!(daemon.api().get("/images/bad:1/json").status, 404);
}

#[test]
fn list_filters_and_prune() {
    let daemon = Daemon::start();
    let labelled = ImageSpec::busybox(Some("lab:1")).label("tier", "web");
    let plain = ImageSpec::busybox(Some("plain:1")).file_layer(&[("p", b"p")]);
    daemon
        .berth_with_stdin(&["load"], Some(&labelled.docker_archive()))
        .success();
    daemon
        .berth_with_stdin(&["load"], Some(&plain.docker_archive()))
        .success();
    // Loading a new image under an existing tag leaves the old one dangling.
    let replacement = ImageSpec::busybox(Some("plain:1")).file_layer(&[("p", b"new")]);
    daemon
        .berth_with_stdin(&["load"], Some(&replacement.docker_archive()))
        .success();

    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["images", "--format", "{{.Repository}}:{{.Tag}}"];
        all.extend_from_slice(args);
        let mut v: Vec<String> = daemon
            .berth(&all)
            .success()
            .stdout
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&["--filter", "label=tier=web"]), vec!["lab:1"]);
    assert_eq!(names(&["--filter", "reference=pla*"]), vec!["plain:1"]);
    assert_eq!(names(&["--filter", "dangling=true"]), vec!["<none>:<none>"]);
    assert_eq!(
        names(&[]).len(),
        3,
        "dangling images are listed by default as <none>"
    );
    let bad = daemon
        .api()
        .get("/images/json?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D");
    assert_eq!(bad.status, 400);

    let out = daemon.berth(&["image", "prune", "-f"]).success();
    assert!(out.stdout.contains(&plain.id()), "{}", out.stdout);
    assert!(
        out.stdout.contains("Total reclaimed space:"),
        "{}",
        out.stdout
    );
    assert_eq!(names(&[]), vec!["lab:1", "plain:1"]);

    let out = daemon
        .berth(&["image", "prune", "-a", "-f", "--filter", "label=tier=web"])
        .success();
    // docker prints prune results in lower case under "Deleted Images:".
    assert!(out.stdout.contains("untagged: lab:1"), "{}", out.stdout);
    assert_eq!(names(&[]), vec!["plain:1"]);
}

#[test]
fn system_df_counts_images() {
    let daemon = Daemon::start();
    daemon
        .berth_with_stdin(&["load"], Some(&busybox_archive("busybox:latest")))
        .success();
    let out = daemon.berth(&["system", "df"]).success();
    let images_row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("Images"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let cols: Vec<&str> = images_row.split_whitespace().collect();
    assert_eq!(cols[1], "1", "{images_row}");
    assert!(
        out.stdout.contains("TYPE") && out.stdout.contains("RECLAIMABLE"),
        "{}",
        out.stdout
    );
    let df = daemon.api().get("/system/df").json();
    assert!(df["LayersSize"].as_i64().unwrap() > 1_000_000);
}

#[test]
fn events_are_recorded_and_filtered() {
    let daemon = Daemon::start();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    daemon
        .berth_with_stdin(&["load"], Some(&busybox_archive("busybox:latest")))
        .success();
    daemon.berth(&["tag", "busybox", "ev:1"]).success();
    daemon.berth(&["rmi", "ev:1"]).success();
    // `until` bounds the stream so it ends instead of waiting for more events.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let lines = daemon
        .api()
        .get(&format!("/events?since={since}&until={now}"))
        .json_lines();
    let actions: Vec<&str> = lines
        .iter()
        .map(|e| e["Action"].as_str().unwrap())
        .collect();
    for action in ["load", "tag", "untag"] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    let tag = lines.iter().find(|e| e["Action"] == "tag").unwrap();
    assert_eq!(tag["Type"], "image");
    assert_eq!(tag["Actor"]["Attributes"]["name"], "ev:1");

    let filtered = daemon
        .berth(&[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &now.to_string(),
            "--filter",
            "event=untag",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ])
        .success();
    assert_eq!(filtered.stdout.trim(), "untag ev:1");

    // Image events carry the image's labels, as Docker's do, so label filters match them.
    let labelled = ImageSpec::busybox(Some("labelled:1")).label("team", "core");
    daemon
        .berth_with_stdin(&["load"], Some(&labelled.docker_archive()))
        .success();
    daemon.berth(&["tag", "labelled:1", "labelled:2"]).success();
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let by_label = daemon
        .berth(&[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
            "--filter",
            "label=team=core",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ])
        .success();
    let lines: Vec<&str> = by_label.stdout.lines().collect();
    assert_eq!(
        lines,
        vec!["load labelled:1", "tag labelled:2"],
        "{}",
        by_label.stdout
    );
}

#[test]
fn images_survive_a_restart_and_a_crash() {
    let mut daemon = Daemon::start();
    let spec = ImageSpec::busybox(Some("keep:1"));
    daemon
        .berth_with_stdin(&["load"], Some(&spec.docker_archive()))
        .success();
    daemon.berth(&["tag", "keep:1", "keep:2"]).success();
    daemon.restart();
    assert_eq!(
        daemon.api().get("/images/keep:2/json").json()["Id"],
        spec.id()
    );
    daemon.kill_hard();
    daemon.start_again();
    assert_eq!(
        daemon.api().get("/images/keep:1/json").json()["Id"],
        spec.id()
    );
}

#[test]
fn contexts_pick_the_daemon() {
    let daemon = Daemon::start();
    let config = daemon.dir().join("ctx-config");
    let berth = |args: &[&str]| {
        let out = std::process::Command::new(berth_e2e::daemon::binary("berth"))
            .args(args)
            .env("BERTH_CONFIG", &config)
            .env_remove("BERTH_HOST")
            .env_remove("BERTH_CONTEXT")
            // berth reads docker's variables too.
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let host = format!("host={}", daemon.host());
    assert_eq!(
        berth(&["context", "create", "e2e", "--docker", &host]).0,
        Some(0)
    );
    let (code, out, _) = berth(&["context", "ls"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("e2e") && out.contains(&daemon.host()) && out.contains("default *"),
        "{out}"
    );
    assert_eq!(berth(&["context", "use", "e2e"]).0, Some(0));
    let (code, out, err) = berth(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "1.51");
    let (code, _, err) = berth(&["context", "rm", "e2e"]);
    assert_ne!(code, Some(0), "removing the current context must need -f");
    assert!(!err.is_empty());
    assert_eq!(berth(&["context", "use", "default"]).0, Some(0));
    assert_eq!(berth(&["context", "rm", "e2e"]).0, Some(0));
}
