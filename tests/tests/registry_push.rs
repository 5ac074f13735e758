//! Pushing to a real registry (Debian's docker-registry on 127.0.0.1, see
//! berth_e2e::registry): through berth, the raw API and the docker CLI, then pulled back.
//! Skipped with a message where docker-registry is not installed.

use std::io::Read;

use berth_e2e::fixtures::{ImageSpec, sha256_hex};
use berth_e2e::registry::{DOCKER_MANIFEST, Registry};
use berth_e2e::{Daemon, docker_cli};

/// The status lines of a JSON stream, `id: status` (or `status`).
fn statuses(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["status"].is_string())
        .map(|l| match l["id"].as_str() {
            Some(id) => format!("{id}: {}", l["status"].as_str().unwrap_or_default()),
            None => l["status"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

fn load(daemon: &Daemon, spec: &ImageSpec) {
    let r = daemon
        .api()
        .post("/images/load?quiet=1", Some(&spec.docker_archive()));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains("error"), "{}", r.text());
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

/// The manifest under `reference` in `repo`, with its digest.
fn manifest(registry: &Registry, repo: &str, reference: &str) -> (serde_json::Value, String) {
    let r = registry.request(
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )],
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    (r.json(), format!("sha256:{}", sha256_hex(&r.body)))
}

fn blob(registry: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let r = registry.request("GET", &format!("/v2/{repo}/blobs/{digest}"), &[], &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.body
}

/// `TAG: digest: sha256:... size: N` of a push's output.
fn pushed_digest(output: &str, tag: &str) -> String {
    let line = output
        .lines()
        .find(|l| l.starts_with(&format!("{tag}: digest: ")))
        .unwrap_or_else(|| panic!("no digest line in {output}"));
    line.split_whitespace().nth(2).unwrap().to_string()
}

#[test]
fn push_then_pull_back_byte_exact_through_berth_and_the_api() {
    let Some(registry) = Registry::start("push_then_pull_back_byte_exact") else {
        return;
    };
    let host = registry.host();
    let reference = format!("{host}/team/app:1");
    let spec = ImageSpec::busybox(Some(&reference))
        .file_layer(&[("etc/app", b"1.4"), ("data", &[7u8; 3 << 20])]);
    let daemon = Daemon::start();
    load(&daemon, &spec);

    let out = daemon.berth(&["push", &reference]).success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("The push refers to repository [{host}/team/app]"),
        "{}",
        out.stdout
    );
    let diff_ids = spec.diff_ids();
    for d in &diff_ids {
        let short = &d["sha256:".len().."sha256:".len() + 12];
        assert!(
            out.stdout.contains(&format!("{short}: Pushed")),
            "{short} not pushed: {}",
            out.stdout
        );
    }
    let digest = pushed_digest(&out.stdout, "1");

    // The registry has a Docker schema 2 manifest whose layers are the image's, gzipped.
    let (m, registry_digest) = manifest(&registry, "team/app", "1");
    assert_eq!(registry_digest, digest);
    assert_eq!(m["mediaType"], DOCKER_MANIFEST);
    assert_eq!(m["config"]["digest"], spec.id());
    let config = blob(&registry, "team/app", &spec.id());
    assert_eq!(config, spec.config_json());
    for (i, layer) in m["layers"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        let data = blob(&registry, "team/app", layer["digest"].as_str().unwrap());
        assert_eq!(data.len() as u64, layer["size"].as_u64().unwrap());
        assert!(gunzip(&data) == spec.layers[i], "layer {i} differs");
    }
    // RepoDigests shows the registry's digest.
    let inspect = daemon
        .api()
        .get(&format!("/images/{reference}/json"))
        .json();
    assert_eq!(
        inspect["RepoDigests"],
        serde_json::json!([format!("{host}/team/app@{digest}")])
    );

    // A second push: every layer exists, same digest, nothing compressed again.
    let out = daemon.berth(&["push", &reference]).success();
    assert_eq!(
        out.stdout.matches("Layer already exists").count(),
        diff_ids.len(),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("Pushed"), "{}", out.stdout);
    assert_eq!(pushed_digest(&out.stdout, "1"), digest);
    // -q prints the reference only.
    let out = daemon.berth(&["push", "-q", &reference]).success();
    assert_eq!(out.stdout, format!("{reference}\n"));
    // -a: every tag of the repository, as dockerd pushes a repository without a tag.
    daemon
        .berth(&["tag", &reference, &format!("{host}/team/app:2")])
        .success();
    let out = daemon
        .berth(&["push", "-a", &format!("{host}/team/app")])
        .success();
    assert_eq!(pushed_digest(&out.stdout, "1"), digest);
    assert_eq!(pushed_digest(&out.stdout, "2"), digest);

    // Pulled back into a fresh daemon: the same image, byte for byte.
    let fresh = Daemon::start();
    fresh.berth(&["pull", &reference]).success();
    let r = fresh.api().get(&format!("/images/{reference}/json"));
    assert_eq!(r.json()["Id"], spec.id());
    let r = fresh.api().get(&format!("/images/{reference}/get"));
    assert_eq!(r.status, 200);
    // A pulled image pushes its original blobs: same digests in another repository.
    let other = format!("{host}/team/copy:1");
    fresh.berth(&["tag", &reference, &other]).success();
    let r = fresh
        .api()
        .post(&format!("/images/{host}/team/copy/push?tag=1"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let lines = r.json_lines();
    let st = statuses(&lines);
    assert_eq!(
        st[0],
        format!("The push refers to repository [{host}/team/copy]")
    );
    // The registry had every blob in team/app: mounted, not uploaded.
    assert_eq!(
        st.iter()
            .filter(|s| s.ends_with("Mounted from team/app"))
            .count(),
        diff_ids.len(),
        "{st:?}"
    );
    let size = registry
        .request(
            "GET",
            "/v2/team/app/manifests/1",
            &[("Accept", DOCKER_MANIFEST)],
            &[],
        )
        .body
        .len();
    assert!(
        st.contains(&format!("1: digest: {digest} size: {size}")),
        "{st:?}"
    );
    let aux = lines
        .iter()
        .find_map(|l| l.get("aux"))
        .expect("an aux message");
    assert_eq!(aux["Tag"], "1");
    assert_eq!(aux["Digest"], digest);
    assert!(aux["Size"].as_u64().unwrap() > 0);

    // An image that is not there, in Docker's words, in the stream.
    let r = daemon
        .api()
        .post(&format!("/images/{host}/team/nope/push?tag=1"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let last = r.json_lines().pop().unwrap();
    assert_eq!(
        last["errorDetail"]["message"],
        format!("An image does not exist locally with the tag: {host}/team/nope")
    );
    let out = daemon
        .berth(&["push", &format!("{host}/team/nope:1")])
        .failure();
    assert!(
        out.stderr.contains(&format!(
            "An image does not exist locally with the tag: {host}/team/nope"
        )),
        "{}",
        out.stderr
    );

    // The docker CLI pushes through berthd too.
    if docker_cli().is_some() {
        let tagged = format!("{host}/team/docker:2");
        daemon.berth(&["tag", &reference, &tagged]).success();
        let out = daemon.docker(&["push", &tagged]).unwrap().success();
        assert!(
            out.stdout.contains(&format!(
                "The push refers to repository [{host}/team/docker]"
            )),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains(&format!("2: digest: {digest}")),
            "{}",
            out.stdout
        );
        let out = fresh.docker(&["pull", &tagged]).unwrap().success();
        assert!(out.stdout.contains(&digest), "{}", out.stdout);
    }
}

/// `X-Registry-Auth` for `username`/`password`.
fn registry_auth(username: &str, password: &str, host: &str) -> String {
    berth_e2e::registry::base64_encode(
        serde_json::json!({"username": username, "password": password, "serveraddress": host})
            .to_string()
            .as_bytes(),
    )
}

/// The last message of a JSON stream: its error, if it is one.
fn stream_error(r: &berth_e2e::ApiResponse) -> Option<String> {
    r.json_lines()
        .last()
        .and_then(|l| l["errorDetail"]["message"].as_str().map(str::to_string))
}

#[test]
fn push_and_pull_with_basic_auth_and_without() {
    let Some(registry) = Registry::start_with_basic_auth("push_with_basic_auth") else {
        return;
    };
    let host = registry.host();
    let spec = ImageSpec::busybox(Some(&format!("{host}/private/app:1")));
    let daemon = Daemon::start();
    load(&daemon, &spec);
    let path = format!("/images/{host}/private/app/push?tag=1");

    // No credentials: dockerd's words, in the stream.
    let r = daemon.api().post(&path, None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        stream_error(&r).as_deref(),
        Some("no basic auth credentials"),
        "{}",
        r.text()
    );
    let out = daemon
        .berth(&["push", &format!("{host}/private/app:1")])
        .failure();
    assert!(
        out.stderr.contains("no basic auth credentials"),
        "{}",
        out.stderr
    );
    // A wrong password.
    let wrong = registry_auth(berth_e2e::registry::BASIC_USER, "wrong", &host);
    let r = daemon
        .api()
        .request("POST", &path, &[("X-Registry-Auth", &wrong)], None);
    assert!(
        stream_error(&r)
            .unwrap_or_default()
            .contains("unauthorized"),
        "{}",
        r.text()
    );
    let right = registry_auth(
        berth_e2e::registry::BASIC_USER,
        berth_e2e::registry::BASIC_PASSWORD,
        &host,
    );
    let r = daemon
        .api()
        .request("POST", &path, &[("X-Registry-Auth", &right)], None);
    assert_eq!(stream_error(&r), None, "{}", r.text());
    assert!(r.text().contains("Pushed"), "{}", r.text());
    let (m, _) = manifest(&registry, "private/app", "1");
    assert_eq!(m["config"]["digest"], spec.id());
}

#[test]
fn push_and_pull_with_token_auth_caching_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = berth_e2e::token_auth::TokenIssuer::start(dir.path());
    let Some(registry) = issuer.registry("push_and_pull_with_token_auth") else {
        return;
    };
    let host = registry.host();
    let reference = format!("{host}/team/tok:1");
    let spec = ImageSpec::busybox(Some(&reference))
        .file_layer(&[("a", b"first")])
        .file_layer(&[("b", b"second")]);
    let daemon = Daemon::start();
    load(&daemon, &spec);
    let path = format!("/images/{host}/team/tok/push?tag=1");

    // Anonymous: the issuer grants pull only, the registry refuses the push.
    let r = daemon.api().post(&path, None);
    let error = stream_error(&r).unwrap_or_default();
    assert!(
        error.contains("unauthorized") || error.contains("denied"),
        "{}",
        r.text()
    );
    // A wrong password is refused by the token service.
    let wrong = registry_auth(berth_e2e::token_auth::TOKEN_USER, "wrong", &host);
    let r = daemon
        .api()
        .request("POST", &path, &[("X-Registry-Auth", &wrong)], None);
    assert!(
        stream_error(&r)
            .unwrap_or_default()
            .contains("unauthorized"),
        "{}",
        r.text()
    );

    let right = registry_auth(
        berth_e2e::token_auth::TOKEN_USER,
        berth_e2e::token_auth::TOKEN_PASSWORD,
        &host,
    );
    let before = issuer.requests.load(std::sync::atomic::Ordering::SeqCst);
    let r = daemon
        .api()
        .request("POST", &path, &[("X-Registry-Auth", &right)], None);
    assert_eq!(stream_error(&r), None, "{}", r.text());
    let digest = pushed_digest(&statuses(&r.json_lines()).join("\n"), "1");
    let first = issuer.requests.load(std::sync::atomic::Ordering::SeqCst) - before;
    // Three layers, a config and a manifest: one token, asked once.
    assert_eq!(first, 1, "token requests for one push");
    // The next push uses the cached token.
    let r = daemon
        .api()
        .request("POST", &path, &[("X-Registry-Auth", &right)], None);
    assert_eq!(stream_error(&r), None, "{}", r.text());
    assert!(r.text().contains("Layer already exists"), "{}", r.text());
    assert_eq!(
        issuer.requests.load(std::sync::atomic::Ordering::SeqCst) - before,
        first,
        "the second push asked for a new token"
    );

    // Pulled back with a token into a fresh daemon.
    let fresh = Daemon::start();
    let r = fresh.api().request(
        "POST",
        &format!("/images/create?fromImage={host}/team/tok&tag=1"),
        &[("X-Registry-Auth", &right)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains(&format!("Digest: {digest}")),
        "{}",
        r.text()
    );
    let r = fresh.api().get(&format!("/images/{reference}/json"));
    assert_eq!(r.json()["Id"], spec.id());

    // The docker CLI: login through berthd, then push another tag.
    if docker_cli().is_some() {
        let out = daemon
            .docker_with_stdin(
                &[
                    "login",
                    &host,
                    "-u",
                    berth_e2e::token_auth::TOKEN_USER,
                    "--password-stdin",
                ],
                Some(berth_e2e::token_auth::TOKEN_PASSWORD.as_bytes()),
            )
            .unwrap()
            .success();
        assert!(out.stdout.contains("Login Succeeded"), "{}", out.stdout);
        let tagged = format!("{host}/team/tok:2");
        daemon.berth(&["tag", &reference, &tagged]).success();
        let out = daemon.docker(&["push", &tagged]).unwrap().success();
        assert!(
            out.stdout.contains(&format!("2: digest: {digest}")),
            "{}",
            out.stdout
        );
    }
}

/// `len` bytes that do not compress (xorshift).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The layer blobs of `repo:tag` in the registry, uncompressed.
fn pushed_layers(registry: &Registry, repo: &str, tag: &str) -> Vec<Vec<u8>> {
    let (m, _) = manifest(registry, repo, tag);
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| gunzip(&blob(registry, repo, l["digest"].as_str().unwrap())))
        .collect()
}

/// The next request on the upload session that failed asks its status (other layers' requests
/// may come in between).
fn assert_status_asked_after_the_fault(seen: &[berth_e2e::upload_proxy::Seen]) {
    let session = |s: &berth_e2e::upload_proxy::Seen| s.path.split('?').next().unwrap().to_string();
    let faulty = seen.iter().position(|s| s.cut).expect("a fault");
    let next = seen[faulty + 1..]
        .iter()
        .find(|s| session(s) == session(&seen[faulty]))
        .unwrap_or_else(|| panic!("nothing more on the session: {seen:#?}"));
    assert_eq!(next.method, "GET", "no status asked: {seen:#?}");
}

#[test]
fn an_upload_cut_mid_layer_is_resumed_and_a_failed_check_is_not_taken_for_missing() {
    use berth_e2e::upload_proxy::{Faults, UploadProxy};
    let Some(registry) = Registry::start("an_upload_cut_mid_layer_is_resumed") else {
        return;
    };
    let port: u16 = registry.host().rsplit(':').next().unwrap().parse().unwrap();
    // Cut the first upload request carrying more than 8 MiB after 8 MiB of it.
    let proxy = UploadProxy::start(
        port,
        Faults {
            cut_upload_after: Some(8 << 20),
            ..Default::default()
        },
    );
    let reference = format!("{}/team/big:1", proxy.host());
    let data = random_bytes(40 << 20, 7);
    let spec = ImageSpec::busybox(Some(&reference)).file_layer(&[("random", &data)]);
    let daemon = Daemon::start();
    load(&daemon, &spec);

    let out = daemon.berth(&["push", &reference]).success();
    let seen = proxy.seen();
    assert!(seen.iter().any(|s| s.cut), "nothing was cut: {seen:?}");
    let digest = pushed_digest(&out.stdout, "1");
    assert_eq!(pushed_layers(&registry, "team/big", "1"), spec.layers);
    // After the cut the client asked the registry where the session was (distribution 2.8
    // has dropped it by then: the layer starts over in a new session).
    assert_status_asked_after_the_fault(&seen);

    // The answer to a whole chunk is lost. The client asks the registry how far the session
    // got (`GET` of the upload, `Range`) to go on from there; distribution 2.8 ties the
    // session's state to the location of the last answer and drops the session instead
    // (404), so the layer starts over in a new one. Either way the push succeeds.
    let lossy = UploadProxy::start(
        port,
        Faults {
            lose_answer_of_patch_over: Some(1 << 20),
            ..Default::default()
        },
    );
    let data = random_bytes(40 << 20, 8);
    let lossy_ref = format!("{}/team/lossy:1", lossy.host());
    let spec2 = ImageSpec::busybox(Some(&lossy_ref)).file_layer(&[("random", &data)]);
    load(&daemon, &spec2);
    daemon.berth(&["push", &lossy_ref]).success();
    assert_eq!(pushed_layers(&registry, "team/lossy", "1"), spec2.layers);
    let seen = lossy.seen();
    assert_status_asked_after_the_fault(&seen);

    // A registry whose blob checks fail twice: checked again, not uploaded again.
    let flaky = UploadProxy::start(
        port,
        Faults {
            fail_heads: 2,
            ..Default::default()
        },
    );
    let again = format!("{}/team/big:1", flaky.host());
    daemon.berth(&["tag", &reference, &again]).success();
    let out = daemon.berth(&["push", &again]).success();
    assert_eq!(
        out.stdout.matches("Layer already exists").count(),
        2,
        "{}",
        out.stdout
    );
    assert_eq!(pushed_digest(&out.stdout, "1"), digest);
    let seen = flaky.seen();
    assert_eq!(seen.iter().filter(|s| s.cut).count(), 2, "{seen:?}");
    assert!(
        !seen.iter().any(|s| s.method == "PATCH"),
        "uploaded again: {seen:?}"
    );
}

#[test]
fn push_of_a_100_mib_layer_and_pull_back() {
    let Some(registry) = Registry::start("push_of_a_100_mib_layer") else {
        return;
    };
    let host = registry.host();
    let reference = format!("{host}/team/huge:1");
    let data = random_bytes(100 << 20, 11);
    let spec = ImageSpec::busybox(Some(&reference)).file_layer(&[("random", &data)]);
    let daemon = Daemon::start();
    load(&daemon, &spec);
    let out = daemon.berth(&["push", &reference]).success();
    let digest = pushed_digest(&out.stdout, "1");
    let layers = pushed_layers(&registry, "team/huge", "1");
    assert!(layers == spec.layers, "the pushed layers differ");

    let fresh = Daemon::start();
    let out = fresh.berth(&["pull", &reference]).success();
    assert!(
        out.stdout.contains(&format!("Digest: {digest}")),
        "{}",
        out.stdout
    );
    let r = fresh.api().get(&format!("/images/{reference}/json"));
    assert_eq!(r.json()["Id"], spec.id());
}

#[test]
fn pull_and_push_emit_image_events() {
    let Some(registry) = Registry::start("pull_and_push_emit_image_events") else {
        return;
    };
    let host = registry.host();
    let reference = format!("{host}/team/ev:1");
    let spec = ImageSpec::busybox(Some(&reference))
        .label("team", "ev")
        .file_layer(&[("e", b"v")]);
    let daemon = Daemon::start();
    load(&daemon, &spec);
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    daemon.berth(&["push", &reference]).success();
    daemon.berth(&["rmi", &reference]).success();
    daemon.berth(&["pull", &reference]).success();
    // Up to date: dockerd reports the pull all the same.
    daemon.berth(&["pull", &reference]).success();
    // `until` (a second ahead) ends the stream.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    // filters={"event":["push","pull"]}
    let filters = "%7B%22event%22%3A%5B%22push%22%2C%22pull%22%5D%7D";
    let lines = daemon
        .api()
        .get(&format!(
            "/events?since={since}&until={until}&filters={filters}"
        ))
        .json_lines();
    let seen: Vec<(String, String, String, String)> = lines
        .iter()
        .map(|e| {
            (
                e["Type"].as_str().unwrap_or_default().to_string(),
                e["Action"].as_str().unwrap_or_default().to_string(),
                e["Actor"]["ID"].as_str().unwrap_or_default().to_string(),
                e["Actor"]["Attributes"]["team"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let event = |action: &str| {
        (
            "image".to_string(),
            action.to_string(),
            reference.clone(),
            "ev".to_string(),
        )
    };
    assert_eq!(seen, [event("push"), event("pull"), event("pull")]);
    assert!(
        lines
            .iter()
            .all(|e| e["Actor"]["Attributes"]["name"] == reference.as_str()),
        "{lines:?}"
    );
}
