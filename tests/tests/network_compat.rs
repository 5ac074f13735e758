//! Docker compatibility of the network layer: an existing bridge's address adopted rather
//! than stacked, legacy `--link`, `MacAddress` per API version, network names as dockerd
//! takes them. Each daemon has its own bridge device and subnets (see `Daemon::start_with`).

use berth_e2e::containers::daemon_with_busybox as daemon;
use berth_e2e::{Daemon, busybox_archive, require_root};
use serde_json::{Value, json};

/// `ip -4 -o addr show dev DEV`: the device's IPv4 addresses with their prefix.
fn ipv4_of(dev: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|x| *x == "inet")?;
            w.next().map(str::to_string)
        })
        .collect()
}

/// A bridge device the test made itself; deleted when dropped, even on failure.
struct TestBridge(String);

impl TestBridge {
    fn new(name: &str, addr: &str) -> TestBridge {
        let run = |args: &[&str]| {
            let st = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "ip {args:?}");
        };
        run(&["link", "add", name, "type", "bridge"]);
        let b = TestBridge(name.to_string());
        run(&["addr", "add", addr, "dev", name]);
        run(&["link", "set", name, "up"]);
        b
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn load_busybox(d: &Daemon) {
    let r = d.api().post(
        "/images/load?quiet=1",
        Some(&busybox_archive("busybox:latest")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

fn bridge_subnet(d: &Daemon) -> (String, String) {
    let out = d.berth(&["network", "inspect", "bridge"]).success();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let cfg = &v[0]["IPAM"]["Config"][0];
    (
        cfg["Subnet"].as_str().unwrap_or_default().to_string(),
        cfg["Gateway"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn an_existing_bridge_address_is_adopted_and_bip_replaces_it() {
    require_root!();
    // A daemon only to borrow three subnets no other test uses.
    let owner = Daemon::start();
    let adopted = owner.spare_subnet(1); // x.y.z.64/26
    let base = adopted.rsplit_once('.').unwrap().0.to_string();
    let name = format!("ba{:x}", std::process::id() & 0xff_ffff);
    let _bridge = TestBridge::new(&name, &format!("{base}.65/26"));

    // No --bip: the bridge's address is the default network's subnet and gateway, and the
    // bridge keeps its single address (an earlier daemon's, as dockerd does with docker0).
    let d = Daemon::start_with(&["--bridge", &name]);
    load_busybox(&d);
    assert_eq!(ipv4_of(&name), vec![format!("{base}.65/26")]);
    assert_eq!(
        bridge_subnet(&d),
        (format!("{base}.64/26"), format!("{base}.65"))
    );
    let out = d
        .berth(&[
            "run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
        ])
        .success();
    assert!(
        out.stdout.contains(&format!("{base}.66/26")),
        "{}",
        out.stdout
    );
    drop(d);

    // Left up by a daemon that was stopped; a new daemon on another data root adopts it too.
    let _bridge2 = TestBridge::new(&format!("{name}b"), &format!("{base}.65/26"));
    let again = Daemon::start_with(&["--bridge", &format!("{name}b")]);
    assert_eq!(ipv4_of(&format!("{name}b")), vec![format!("{base}.65/26")]);
    drop(again);

    // --bip that differs: the old address is replaced (dockerd's setupBridgeIPv4), not joined.
    let _bridge3 = TestBridge::new(&format!("{name}c"), &format!("{base}.65/26"));
    let bip = format!("{base}.129/26");
    let d = Daemon::start_with(&["--bridge", &format!("{name}c"), "--bip", &bip]);
    assert_eq!(ipv4_of(&format!("{name}c")), vec![bip.clone()]);
    assert_eq!(
        bridge_subnet(&d),
        (format!("{base}.128/26"), format!("{base}.129"))
    );
    // A restart with the same --bip changes nothing.
    let mut d = d;
    d.restart();
    assert_eq!(ipv4_of(&format!("{name}c")), vec![bip]);
}

/// The MAC address a container sees on eth0, read from its own sysfs.
fn eth0_mac(d: &Daemon, id: &str) -> String {
    let out = d
        .berth(&["exec", id, "cat", "/sys/class/net/eth0/address"])
        .success();
    out.stdout.trim().to_string()
}

#[test]
fn mac_address_from_config_or_endpoint_per_api_version() {
    require_root!();
    let d = daemon();
    let api = d.api();
    let create = |version: &str, body: Value| -> Value {
        let r = api.post(
            &format!("/{version}/containers/create"),
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    };
    let run = |id: &str| {
        let r = api.post(&format!("/containers/{id}/start"), None);
        assert_eq!(r.status, 204, "{}", r.text());
    };
    let sleeper = |extra: Value| {
        let mut b = json!({"Image": "busybox", "Cmd": ["sleep", "600"]});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };

    // API 1.43 (docker-py): the container-wide field is the address.
    let made = create("v1.43", sleeper(json!({"MacAddress": "02:42:ac:11:fe:01"})));
    let id = made["Id"].as_str().unwrap().to_string();
    run(&id);
    assert_eq!(eth0_mac(&d, &id), "02:42:ac:11:fe:01");
    let info = api.get(&format!("/v1.43/containers/{id}/json")).json();
    assert_eq!(info["NetworkSettings"]["MacAddress"], "02:42:ac:11:fe:01");
    assert_eq!(info["Config"]["MacAddress"], "02:42:ac:11:fe:01");

    // API 1.43 with an endpoint's address only: ignored, as the old API had no such field.
    let made = create(
        "v1.43",
        sleeper(
            json!({"NetworkingConfig": {"EndpointsConfig": {"bridge": {"MacAddress": "02:42:ac:11:fe:02"}}}}),
        ),
    );
    let id = made["Id"].as_str().unwrap().to_string();
    run(&id);
    assert_ne!(eth0_mac(&d, &id), "02:42:ac:11:fe:02");

    // API 1.44+: the endpoint's field; the container-wide one is migrated with a warning.
    let made = create(
        "v1.44",
        sleeper(
            json!({"NetworkingConfig": {"EndpointsConfig": {"bridge": {"MacAddress": "02:42:ac:11:fe:03"}}}}),
        ),
    );
    let id = made["Id"].as_str().unwrap().to_string();
    run(&id);
    assert_eq!(eth0_mac(&d, &id), "02:42:ac:11:fe:03");
    let made = create("v1.51", sleeper(json!({"MacAddress": "02:42:ac:11:fe:04"})));
    assert!(
        made["Warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("MacAddress field is now deprecated"),
        "{made}"
    );
    let id = made["Id"].as_str().unwrap().to_string();
    run(&id);
    assert_eq!(eth0_mac(&d, &id), "02:42:ac:11:fe:04");

    // dockerd's refusals.
    let r = api.post(
        "/v1.43/containers/create",
        Some(
            sleeper(
                json!({"MacAddress": "02:42:ac:11:fe:05", "HostConfig": {"NetworkMode": "host"}}),
            )
            .to_string()
            .as_bytes(),
        ),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.message(),
        "conflicting options: mac-address and the network mode"
    );
    let r = api.post(
        "/v1.44/containers/create",
        Some(
            sleeper(json!({"MacAddress": "02:42:ac:11:fe:05",
                "NetworkingConfig": {"EndpointsConfig": {"bridge": {"MacAddress": "02:42:ac:11:fe:06"}}}}))
            .to_string()
            .as_bytes(),
        ),
    );
    assert_eq!(r.status, 400, "{}", r.text());

    // The docker CLI's --mac-address (sent in EndpointsConfig).
    if let Some(out) = d.docker(&[
        "run",
        "-d",
        "--mac-address",
        "02:42:ac:11:fe:09",
        "busybox",
        "sleep",
        "600",
    ]) {
        let id = out.success().stdout.trim().to_string();
        assert_eq!(eth0_mac(&d, &id), "02:42:ac:11:fe:09");
    }
}

#[test]
fn network_names_with_spaces_work_end_to_end() {
    require_root!();
    let d = daemon();
    let subnet = d.spare_subnet(1);
    d.berth(&["network", "create", "--subnet", &subnet, "test 01"])
        .success();
    let net: Value =
        serde_json::from_str(&d.berth(&["network", "inspect", "test 01"]).success().stdout)
            .unwrap();
    assert_eq!(net[0]["Name"], "test 01");
    let id = net[0]["Id"].as_str().unwrap().to_string();
    // The bridge is named after the id, never the name.
    assert!(
        std::path::Path::new("/sys/class/net")
            .join(format!("br-{}", &id[..12]))
            .exists()
    );
    d.berth(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "test 01",
        "busybox",
        "sleep",
        "600",
    ])
    .success();
    // DNS by name, and the PTR name carries the network's name.
    let out = d.berth(&[
        "run",
        "--rm",
        "--network",
        "test 01",
        "busybox",
        "sh",
        "-c",
        "ping -c1 -W5 srv >/dev/null && echo reached",
    ]);
    assert!(
        out.stdout.contains("reached"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    let ls = d
        .berth(&["network", "ls", "--format", "{{.Name}}"])
        .success()
        .stdout;
    assert!(ls.lines().any(|l| l == "test 01"), "{ls}");
    let info: Value = serde_json::from_str(&d.berth(&["inspect", "srv"]).success().stdout).unwrap();
    assert!(info[0]["NetworkSettings"]["Networks"]["test 01"].is_object());
    // dockerd's refusals: blank and predefined names.
    let r = d
        .api()
        .post("/networks/create", Some(br#"{"Name":"bridge"}"#));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.message(),
        "operation is not permitted on predefined bridge network "
    );
    let r = d.api().post("/networks/create", Some(br#"{"Name":" "}"#));
    assert_eq!(r.status, 400, "{}", r.text());
    d.berth(&["rm", "-f", "srv"]).success();
    d.berth(&["network", "rm", "test 01"]).success();
    if let Some(out) = d.docker(&["network", "create", "--subnet", &subnet, "test 02"]) {
        out.success();
        d.docker(&["run", "--rm", "--network", "test 02", "busybox", "true"])
            .unwrap()
            .success();
        d.docker(&["network", "rm", "test 02"]).unwrap().success();
    }
}

#[test]
fn legacy_links_on_the_default_bridge_and_user_networks() {
    require_root!();
    let d = daemon();
    d.berth(&[
        "run",
        "-d",
        "--name",
        "db",
        "--hostname",
        "dbhost",
        "-e",
        "PASSWORD=s3cret",
        "--expose",
        "80",
        "busybox",
        "sleep",
        "600",
    ])
    .success();
    let db: Value = serde_json::from_str(&d.berth(&["inspect", "db"]).success().stdout).unwrap();
    let ip = db[0]["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!ip.is_empty());

    // berth run --link: the alias answers, /etc/hosts and the environment describe db.
    let out = d.berth(&[
        "run",
        "--rm",
        "--name",
        "web",
        "--link",
        "db:alias",
        "busybox",
        "sh",
        "-c",
        "ping -c1 -W5 alias >/dev/null && echo reached; cat /etc/hosts; env",
    ]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("reached"), "{text}");
    assert!(
        text.lines().any(|l| l == format!("{ip}\talias dbhost db")),
        "{text}"
    );
    for want in [
        format!("ALIAS_PORT=tcp://{ip}:80"),
        format!("ALIAS_PORT_80_TCP=tcp://{ip}:80"),
        format!("ALIAS_PORT_80_TCP_ADDR={ip}"),
        "ALIAS_PORT_80_TCP_PORT=80".to_string(),
        "ALIAS_PORT_80_TCP_PROTO=tcp".to_string(),
        "ALIAS_NAME=/web/alias".to_string(),
        "ALIAS_ENV_PASSWORD=s3cret".to_string(),
    ] {
        assert!(text.lines().any(|l| l == want), "{want} missing in {text}");
    }
    assert!(!text.contains("ALIAS_ENV_PATH"), "{text}");

    // Inspect shows dockerd's form; a link without alias uses the name.
    d.berth(&[
        "run", "-d", "--name", "web2", "--link", "db:alias", "--link", "db", "busybox", "sleep",
        "600",
    ])
    .success();
    let web2: Value =
        serde_json::from_str(&d.berth(&["inspect", "web2"]).success().stdout).unwrap();
    assert_eq!(
        web2[0]["HostConfig"]["Links"],
        json!(["/db:/web2/alias", "/db:/web2/db"])
    );
    let out = d.berth(&["exec", "web2", "cat", "/etc/hosts"]).success();
    assert!(
        out.stdout.contains(&format!("{ip}\tdb dbhost\n")),
        "{}",
        out.stdout
    );

    // Refusals, with dockerd's messages: a missing target at create, a stopped one at start.
    let out = d
        .berth(&["run", "--rm", "--link", "nope:x", "busybox", "true"])
        .failure();
    assert!(
        out.stderr.contains("could not get container for nope"),
        "{}",
        out.stderr
    );
    let r = d.api().post(
        "/containers/create",
        Some(
            json!({"Image": "busybox", "HostConfig": {"Links": ["nope:x"]}})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    d.berth(&["create", "--name", "stopped", "busybox", "true"])
        .success();
    let out = d
        .berth(&[
            "run",
            "--name",
            "web3",
            "--link",
            "stopped:s",
            "busybox",
            "true",
        ])
        .failure();
    assert!(
        out.stderr
            .contains("Cannot link to a non running container: /stopped AS /web3/s"),
        "{}",
        out.stderr
    );

    // The raw API: HostConfig.Links as docker-py sends them.
    let r = api_run(
        &d,
        json!({"Image": "busybox", "Cmd": ["sh", "-c", "ping -c1 -W5 rawalias >/dev/null && echo $RAWALIAS_NAME"],
        "HostConfig": {"Links": ["db:rawalias"]}}),
    );
    assert!(r.contains("/rawalias"), "{r}");

    // A user-defined network: the alias is a DNS name of the target for the linking
    // container only.
    let subnet = d.spare_subnet(1);
    d.berth(&["network", "create", "--subnet", &subnet, "linknet"])
        .success();
    d.berth(&[
        "run",
        "-d",
        "--name",
        "udb",
        "--network",
        "linknet",
        "busybox",
        "sleep",
        "600",
    ])
    .success();
    let out = d.berth(&[
        "run",
        "--rm",
        "--network",
        "linknet",
        "--link",
        "udb:ualias",
        "busybox",
        "sh",
        "-c",
        "ping -c1 -W5 ualias >/dev/null && echo reached",
    ]);
    assert!(
        out.stdout.contains("reached"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    let out = d.berth(&[
        "run",
        "--rm",
        "--network",
        "linknet",
        "busybox",
        "sh",
        "-c",
        "nslookup ualias 127.0.0.11 >/dev/null 2>&1 && echo resolved || echo unknown",
    ]);
    assert!(
        out.stdout.contains("unknown"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    // Execs see the links' variables too, as with dockerd.
    let out = d.berth(&["exec", "web2", "env"]).success();
    assert!(out.stdout.contains("DB_NAME=/web2/db\n"), "{}", out.stdout);
    // A network connect rewrites /etc/hosts; the link's entry stays.
    d.berth(&["network", "connect", "linknet", "web2"])
        .success();
    let out = d.berth(&["exec", "web2", "cat", "/etc/hosts"]).success();
    assert!(
        out.stdout.contains(&format!("{ip}\tdb dbhost\n")),
        "{}",
        out.stdout
    );

    // The docker CLI's --link, on both kinds of network.
    if let Some(out) = d.docker(&[
        "run",
        "--rm",
        "--link",
        "db:dalias",
        "busybox",
        "sh",
        "-c",
        "ping -c1 -W5 dalias >/dev/null && echo reached; env",
    ]) {
        let out = out.success();
        assert!(out.stdout.contains("reached"), "{}", out.stdout);
        assert!(
            out.stdout
                .contains(&format!("DALIAS_PORT_80_TCP_ADDR={ip}")),
            "{}",
            out.stdout
        );
        let out = d
            .docker(&[
                "run",
                "--rm",
                "--network",
                "linknet",
                "--link",
                "udb:dualias",
                "busybox",
                "sh",
                "-c",
                "ping -c1 -W5 dualias >/dev/null && echo reached",
            ])
            .unwrap();
        assert!(
            out.stdout.contains("reached"),
            "{} {}",
            out.stdout,
            out.stderr
        );
        let out = d
            .docker(&["run", "--rm", "--link", "stopped:s", "busybox", "true"])
            .unwrap()
            .failure();
        assert!(
            out.stderr
                .contains("Cannot link to a non running container"),
            "{}",
            out.stderr
        );
    }
}

/// Creates, starts and waits for a container through the raw API; returns its output.
fn api_run(d: &Daemon, body: Value) -> String {
    let api = d.api();
    let r = api.post("/containers/create", Some(body.to_string().as_bytes()));
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["Id"].as_str().unwrap().to_string();
    let r = api.post(&format!("/containers/{id}/start"), None);
    assert_eq!(r.status, 204, "{}", r.text());
    let r = api.post(&format!("/containers/{id}/wait"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = api.get(&format!("/containers/{id}/logs?stdout=1&stderr=1"));
    let (out, err) = berth_e2e::containers::demux(&r.body);
    format!("{out}{err}")
}

#[test]
fn rm_link_removes_a_legacy_link() {
    require_root!();
    let d = daemon();
    d.berth(&["run", "-d", "--name", "db", "busybox", "sleep", "600"])
        .success();
    d.berth(&[
        "run", "-d", "--name", "web", "--link", "db:one", "--link", "db:two", "busybox", "sleep",
        "600",
    ])
    .success();
    let links = |d: &Daemon| {
        let v: Value =
            serde_json::from_str(&d.berth(&["inspect", "web"]).success().stdout).unwrap();
        v[0]["HostConfig"]["Links"].clone()
    };
    d.berth(&["rm", "--link", "/web/one"]).success();
    assert_eq!(links(&d), json!(["/db:/web/two"]));
    let out = d.berth(&["rm", "--link", "/web/nope"]).failure();
    assert!(
        out.stderr.contains("No such container: /web/nope"),
        "{}",
        out.stderr
    );
    if let Some(out) = d.docker(&["rm", "--link", "/web/two"]) {
        out.success();
        assert_eq!(links(&d), Value::Null);
    }
    // The container itself is untouched.
    let st = d
        .berth(&["inspect", "-f", "{{.State.Running}}", "web"])
        .success();
    assert_eq!(st.stdout.trim(), "true");
}

#[test]
fn without_a_default_bridge_default_containers_get_only_loopback() {
    require_root!();
    // `--bridge none`: dockerd runs a container that asks for the default network with only
    // loopback (inspect still names the `bridge` endpoint, empty); it never answers 404, which
    // the docker CLI would take for a missing image and try to pull.
    let d = Daemon::start_with(&["--bridge", "none"]);
    load_busybox(&d);
    let out = d
        .berth(&["run", "--rm", "busybox", "cat", "/proc/net/dev"])
        .success();
    let devices: Vec<&str> = out
        .stdout
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(devices, ["lo"], "{}", out.stdout);
    if let Some(out) = d.docker(&["run", "--rm", "busybox", "echo", "through docker"]) {
        let out = out.success();
        assert_eq!(out.stdout.trim(), "through docker");
    }
}
