//! `berth stack` on a one-manager swarm: a stack of three services (overlay networks, a
//! secret, a config, `deploy:` sections) deployed, updated, pruned and removed leaving
//! nothing; and the docker CLI's `docker stack` (which computes stacks client-side from the
//! same labels) seeing berth's stacks and the reverse.

use std::path::{Path, PathBuf};

use berth_e2e::containers::{daemon_with_busybox, until};
use berth_e2e::overlay::{self, MeshGuard};
use berth_e2e::{Daemon, Output, require_root};
use serde_json::{Value, json};

fn init(d: &Daemon) {
    let r = d
        .api()
        .post("/swarm/init", Some(br#"{"ListenAddr": "127.0.0.1:2377"}"#));
    assert_eq!(r.status, 200, "{}", r.text());
}

const SHOP: &str = r#"
services:
  web:
    image: busybox:latest
    command: ["sleep", "1000"]
    stop_grace_period: 1s
    environment: {MODE: one}
    labels: {tier: front}
    networks: [front, back]
    deploy:
      replicas: 2
      labels: {owner: shop}
      resources:
        limits: {cpus: "0.5", memory: 64m}
      update_config: {parallelism: 2, order: stop-first}
      restart_policy: {condition: any, delay: 1s}
  api:
    image: busybox:latest
    command: ["sleep", "1000"]
    stop_grace_period: 1s
    networks: [back]
    secrets: [token]
    configs: [{source: conf, target: /etc/api.conf}]
    deploy:
      placement: {constraints: [node.role==manager]}
  worker:
    image: busybox:latest
    command: ["sleep", "1000"]
    stop_grace_period: 1s
    deploy: {mode: global}
networks:
  front: {}
  back: {attachable: true}
secrets:
  token: {file: ./token.txt}
configs:
  conf: {file: ./api.conf}
"#;

fn stack_dir(d: &Daemon, name: &str, text: &str) -> PathBuf {
    let dir = d.dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), text).unwrap();
    std::fs::write(dir.join("token.txt"), "s3cret").unwrap();
    std::fs::write(dir.join("api.conf"), "level=3").unwrap();
    dir
}

fn berth_in(d: &Daemon, dir: &Path, args: &[&str]) -> Output {
    let file = dir.join("compose.yaml").display().to_string();
    let mut all: Vec<&str> = Vec::new();
    for a in args {
        all.push(if *a == "FILE" { &file } else { a });
    }
    d.berth(&all)
}

fn get(d: &Daemon, path: &str) -> Value {
    let r = d.api().get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

fn labelled(d: &Daemon, kind: &str, stack: &str) -> Vec<Value> {
    let f = json!({"label": [format!("com.docker.stack.namespace={stack}")]}).to_string();
    let path = format!(
        "/{kind}?filters={}",
        form_urlencoded::byte_serialize(f.as_bytes()).collect::<String>()
    );
    get(d, &path).as_array().cloned().unwrap_or_default()
}

fn names(list: &[Value]) -> Vec<String> {
    let mut n: Vec<String> = list
        .iter()
        .map(|v| {
            v["Spec"]["Name"]
                .as_str()
                .or_else(|| v["Name"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    n.sort();
    n
}

fn running_containers(d: &Daemon) -> usize {
    get(d, "/containers/json").as_array().unwrap().len()
}

fn all_containers(d: &Daemon) -> usize {
    get(d, "/containers/json?all=1").as_array().unwrap().len()
}

/// Everything of the stack is gone: services, networks, secrets, configs, containers.
fn nothing_left(d: &Daemon, stack: &str) {
    for kind in ["services", "networks", "secrets", "configs"] {
        assert!(labelled(d, kind, stack).is_empty(), "{kind} left");
    }
    until("the stack's containers to go", || all_containers(d) == 0);
}

/// Nothing of the stack's overlays stays on the node: no overlay netns (with their bridges,
/// VXLAN devices and load-balancer tables), no routing-mesh table or veth.
fn nothing_on_the_node(d: &Daemon) {
    let mut left = Vec::new();
    for _ in 0..30 {
        left = overlay::leftovers(d);
        if left.is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    panic!("left on the node: {left:?}");
}

#[test]
fn stack_of_three_services_deployed_updated_pruned_and_removed() {
    require_root!();
    // Declared before the daemon: dropped after it.
    let _guard;
    let d = daemon_with_busybox();
    _guard = MeshGuard::of(&d);
    // api publishes a port through the routing mesh (the ingress netns, the host's table).
    let shop = SHOP.replace(
        "    networks: [back]\n",
        "    networks: [back]\n    ports: [\"38434:80\"]\n",
    );
    assert_ne!(shop, SHOP);

    // Not a manager yet: the docker CLI's error.
    let dir = stack_dir(&d, "shop", &shop);
    let out = berth_in(&d, &dir, &["stack", "deploy", "-c", "FILE", "shop"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("this node is not a swarm manager"),
        "{}",
        out.stderr
    );
    init(&d);

    let out = berth_in(
        &d,
        &dir,
        &[
            "stack",
            "deploy",
            "--resolve-image",
            "sometimes",
            "-c",
            "FILE",
            "shop",
        ],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("invalid option sometimes for flag --resolve-image"),
        "{}",
        out.stderr
    );
    let out = berth_in(&d, &dir, &["stack", "deploy", "-c", "FILE", "shop"]).success();
    // --resolve-image always (the default): the image is only local, so its digest cannot be
    // recorded; the docker client's warning.
    assert!(
        out.stderr.contains(
            "image busybox:latest could not be accessed on a registry to record\nits digest."
        ),
        "{}",
        out.stderr
    );
    for line in [
        "Creating network shop_back",
        "Creating network shop_default",
        "Creating network shop_front",
        "Creating secret shop_token",
        "Creating config shop_conf",
        "Creating service shop_api",
        "Creating service shop_web",
        "Creating service shop_worker",
    ] {
        assert!(out.stdout.contains(line), "no {line:?}: {}", out.stdout);
    }
    assert_eq!(
        names(&labelled(&d, "services", "shop")),
        ["shop_api", "shop_web", "shop_worker"]
    );
    let nets = labelled(&d, "networks", "shop");
    assert_eq!(names(&nets), ["shop_back", "shop_default", "shop_front"]);
    assert!(nets.iter().all(|n| n["Driver"] == "overlay"), "{nets:?}");
    assert_eq!(names(&labelled(&d, "secrets", "shop")), ["shop_token"]);
    assert_eq!(names(&labelled(&d, "configs", "shop")), ["shop_conf"]);

    let web = get(&d, "/services/shop_web");
    let spec = &web["Spec"];
    assert_eq!(spec["Labels"]["com.docker.stack.namespace"], "shop");
    assert_eq!(spec["Labels"]["com.docker.stack.image"], "busybox:latest");
    assert_eq!(spec["Labels"]["owner"], "shop");
    assert_eq!(spec["Mode"]["Replicated"]["Replicas"], 2);
    let cs = &spec["TaskTemplate"]["ContainerSpec"];
    assert_eq!(cs["Labels"]["tier"], "front");
    assert_eq!(cs["Labels"]["com.docker.stack.namespace"], "shop");
    assert_eq!(cs["Env"], json!(["MODE=one"]));
    assert_eq!(
        spec["TaskTemplate"]["Resources"]["Limits"]["NanoCPUs"],
        500_000_000
    );
    assert_eq!(spec["UpdateConfig"]["Parallelism"], 2);
    let api = get(&d, "/services/shop_api");
    assert_eq!(
        api["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretName"],
        "shop_token"
    );
    assert_eq!(
        api["Spec"]["TaskTemplate"]["Placement"]["Constraints"],
        json!(["node.role==manager"])
    );
    assert_eq!(
        get(&d, "/services/shop_worker")["Spec"]["Mode"],
        json!({"Global": {}})
    );
    // 2 web + 1 api + 1 worker (one node).
    until("4 running tasks", || running_containers(&d) == 4);
    // The data plane is there: overlay netns and the routing mesh's host table.
    until("the overlays and the mesh on the node", || {
        let left = overlay::leftovers(&d);
        left.iter().any(|l| l.starts_with("overlay netns"))
            && left.contains(&format!("nftables table {}", overlay::mesh_table(&d)))
    });

    let out = d.berth(&["stack", "ls"]).success();
    assert_eq!(out.stdout, "NAME      SERVICES\nshop      3\n");
    let out = d
        .berth(&[
            "stack",
            "services",
            "--format",
            "{{.Name}} {{.Mode}}",
            "shop",
        ])
        .success();
    assert_eq!(
        out.stdout,
        "shop_api replicated\nshop_web replicated\nshop_worker global\n"
    );
    let out = d
        .berth(&[
            "stack",
            "ps",
            "--format",
            "{{.Name}} {{.DesiredState}}",
            "shop",
        ])
        .success();
    assert_eq!(out.stdout.lines().count(), 4, "{}", out.stdout);
    assert!(out.stdout.contains("shop_web.1 Running"), "{}", out.stdout);

    // Updated: the changed service's spec, the same ids.
    let id = web["ID"].as_str().unwrap().to_string();
    let changed = shop
        .replace("MODE: one", "MODE: two")
        .replace("replicas: 2", "replicas: 3");
    std::fs::write(dir.join("compose.yaml"), &changed).unwrap();
    let out = berth_in(
        &d,
        &dir,
        &[
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            "FILE",
            "shop",
        ],
    )
    .success();
    assert!(
        !out.stderr.contains("could not be accessed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains(&format!("Updating service shop_web (id: {id})")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("Creating network"), "{}", out.stdout);
    let web = get(&d, "/services/shop_web");
    assert_eq!(web["ID"], id.as_str());
    assert_eq!(web["Spec"]["Mode"]["Replicated"]["Replicas"], 3);
    assert_eq!(
        web["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"],
        json!(["MODE=two"])
    );
    until("5 running tasks", || running_containers(&d) == 5);

    // --prune: a service gone from the file goes from the stack.
    let without_worker = changed.split("  worker:").next().unwrap().to_string()
        + &changed[changed.find("networks:\n  front").unwrap()..];
    std::fs::write(dir.join("compose.yaml"), &without_worker).unwrap();
    let out = berth_in(
        &d,
        &dir,
        &["stack", "deploy", "--prune", "-c", "FILE", "shop"],
    )
    .success();
    assert!(
        out.stdout.contains("Removing service shop_worker"),
        "{}",
        out.stdout
    );
    assert_eq!(
        names(&labelled(&d, "services", "shop")),
        ["shop_api", "shop_web"]
    );

    let out = d.berth(&["stack", "rm", "shop"]).success();
    for line in [
        "Removing service shop_api",
        "Removing service shop_web",
        "Removing secret shop_token",
        "Removing config shop_conf",
        "Removing network shop_back",
    ] {
        assert!(out.stdout.contains(line), "no {line:?}: {}", out.stdout);
    }
    nothing_left(&d, "shop");
    nothing_on_the_node(&d);
    let out = d.berth(&["stack", "rm", "shop"]).success();
    assert_eq!(out.stderr, "Nothing found in stack: shop\n");
    let out = d.berth(&["stack", "ps", "shop"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("nothing found in stack: shop"),
        "{}",
        out.stderr
    );
}

/// The docker CLI computes stacks client-side: it lists and removes a berth-deployed stack,
/// and berth lists and removes a docker-deployed one.
#[test]
fn docker_cli_and_berth_see_the_same_stacks() {
    require_root!();
    let d = daemon_with_busybox();
    if d.docker(&["version"]).is_none() {
        eprintln!("skipped: no docker CLI");
        return;
    }
    init(&d);
    let dir = stack_dir(&d, "pair", SHOP);
    let file = dir.join("compose.yaml").display().to_string();

    berth_in(&d, &dir, &["stack", "deploy", "-c", "FILE", "one"]).success();
    let out = d.docker(&["stack", "ls"]).unwrap().success();
    assert_eq!(out.stdout, "NAME      SERVICES\none       3\n");
    let theirs = d
        .docker(&[
            "stack",
            "services",
            "--format",
            "{{.Name}} {{.Mode}}",
            "one",
        ])
        .unwrap()
        .success();
    let ours = d
        .berth(&[
            "stack",
            "services",
            "--format",
            "{{.Name}} {{.Mode}}",
            "one",
        ])
        .success();
    assert_eq!(theirs.stdout, ours.stdout);
    let theirs = d
        .docker(&["stack", "ps", "--format", "{{.Name}}", "one"])
        .unwrap()
        .success();
    assert!(theirs.stdout.contains("one_web.1"), "{}", theirs.stdout);

    // The docker CLI deploys another stack from the same file.
    let out = d
        .docker(&["stack", "deploy", "-c", &file, "two"])
        .unwrap()
        .success();
    assert!(
        out.stdout.contains("Creating service two_web"),
        "{}",
        out.stdout
    );
    let out = d.berth(&["stack", "ls"]).success();
    assert_eq!(out.stdout, "NAME      SERVICES\none       3\ntwo       3\n");
    // Same specs from either CLI, but for the stack's name.
    let a = get(&d, "/services/one_web")["Spec"].clone();
    let b = get(&d, "/services/two_web")["Spec"].clone();
    assert_eq!(
        a["TaskTemplate"]["ContainerSpec"]["Env"],
        b["TaskTemplate"]["ContainerSpec"]["Env"]
    );
    assert_eq!(a["Mode"], b["Mode"]);
    assert_eq!(
        a["TaskTemplate"]["Resources"],
        b["TaskTemplate"]["Resources"]
    );
    // berth updates the docker-deployed stack in place.
    let id = get(&d, "/services/two_web")["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let out = berth_in(
        &d,
        &dir,
        &["stack", "deploy", "--detach=false", "-c", "FILE", "two"],
    )
    .success();
    // --detach=false: back once every service runs its tasks.
    assert!(
        out.stdout.contains(&format!("{id}: 2/2 running")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("Updating service two_web (id: {id})")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("Creating"), "{}", out.stdout);

    // Each removes the other's.
    d.docker(&["stack", "rm", "one"]).unwrap().success();
    d.berth(&["stack", "rm", "two"]).success();
    nothing_left(&d, "one");
    nothing_left(&d, "two");
}

/// `--resolve-image` asks the registry for the image's digest through the daemon
/// (`/distribution`), with the stored credentials under `--with-registry-auth`: the service's
/// image is then pinned to that digest; without them the private registry refuses and the
/// docker client's warning is printed instead.
#[test]
fn stack_deploy_resolves_digests_with_registry_auth() {
    require_root!();
    use berth_e2e::registry::{BASIC_PASSWORD, BASIC_USER, Registry};
    let Some(registry) = Registry::start_with_basic_auth("stack_auth") else {
        return;
    };
    let d = daemon_with_busybox();
    init(&d);
    let host = registry.host();
    let image = format!("{host}/stack/private:1");
    d.berth(&["tag", "busybox", &image]).success();
    d.berth_with_stdin(
        &["login", &host, "-u", BASIC_USER, "--password-stdin"],
        Some(format!("{BASIC_PASSWORD}\n").as_bytes()),
    )
    .success();
    d.berth(&["push", &image]).success();
    let digest = get(&d, &format!("/images/{image}/json"))["RepoDigests"][0]
        .as_str()
        .unwrap()
        .split('@')
        .nth(1)
        .unwrap()
        .to_string();
    let text = format!(
        "services:\n  app:\n    image: {image}\n    command: [\"sleep\", \"1000\"]\n    stop_grace_period: 1s\n"
    );
    let dir = stack_dir(&d, "priv", &text);

    let out = berth_in(&d, &dir, &["stack", "deploy", "-c", "FILE", "anon"]).success();
    assert!(
        out.stderr.contains(&format!(
            "image {image} could not be accessed on a registry"
        )),
        "{}",
        out.stderr
    );
    let spec = get(&d, "/services/anon_app")["Spec"].clone();
    assert_eq!(
        spec["TaskTemplate"]["ContainerSpec"]["Image"],
        image.as_str()
    );

    let out = berth_in(
        &d,
        &dir,
        &[
            "stack",
            "deploy",
            "--with-registry-auth",
            "-c",
            "FILE",
            "authed",
        ],
    )
    .success();
    assert!(
        !out.stderr.contains("could not be accessed"),
        "{}",
        out.stderr
    );
    let spec = get(&d, "/services/authed_app")["Spec"].clone();
    assert_eq!(
        spec["TaskTemplate"]["ContainerSpec"]["Image"],
        format!("{image}@{digest}").as_str()
    );
    assert_eq!(spec["Labels"]["com.docker.stack.image"], image.as_str());
    d.berth(&["stack", "rm", "anon", "authed"]).success();
    nothing_left(&d, "anon");
    nothing_left(&d, "authed");
}
