//! Networking end to end: a real berthd with its own default bridge device and `--bip` (see
//! `Daemon::start_with`), user networks carved from the daemon's spare subnets, busybox
//! containers talking over them. Traffic stays on this machine: containers talk to each other
//! and to the host's own addresses (the bridge gateways, 127.0.0.1).

use std::net::TcpListener;
use std::path::Path;

use berth_e2e::containers::{daemon_with_busybox as daemon, until};
use berth_e2e::{Daemon, require_root};
use serde_json::{Value, json};

/// Starts a detached busybox httpd serving /etc (so `/hostname` answers with the hostname).
fn web(d: &Daemon, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "busybox", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc",
    ]);
    let id = d.berth(&args).success().stdout.trim().to_string();
    // `run -d` answers once the process has started, not once httpd listens: wait for that
    // (from inside, so no network path is assumed), or a loaded machine makes the first
    // request of a test race the server.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while d
        .berth(&[
            "exec",
            name,
            "busybox",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            "http://127.0.0.1/hostname",
        ])
        .code
        != 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "httpd in {name} never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    id
}

/// The host port `berth port CONTAINER PORT` names first.
fn host_port(d: &Daemon, container: &str, port: &str) -> u16 {
    let out = d.berth(&["port", container, port]).success().stdout;
    let first = out.lines().next().unwrap_or_default();
    match first.rsplit(':').next().and_then(|p| p.parse().ok()) {
        Some(port) => port,
        None => panic!("no host port in {out:?}"),
    }
}

/// `nft list table inet TABLE`, the daemon's rules as text.
fn nft_table(table: &str) -> String {
    let out = std::process::Command::new("nft")
        .args(["list", "table", "inet", table])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a throw-away busybox container with a shell script; returns (exit code, stdout+stderr).
fn sh(d: &Daemon, net: &[&str], script: &str) -> (i32, String) {
    // --init: the shell is not PID 1, so `timeout` can end a command stuck on a dropped packet.
    let mut args = vec!["run", "--rm", "--init"];
    args.extend_from_slice(net);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    let out = d.berth(&args);
    (out.code, format!("{}{}", out.stdout, out.stderr))
}

/// A host port free right now (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

fn inspect(d: &Daemon, what: &str, name: &str) -> Value {
    let out = d.berth(&[what, "inspect", name]).success();
    serde_json::from_str::<Value>(&out.stdout).unwrap()[0].clone()
}

fn netns_files(d: &Daemon) -> usize {
    std::fs::read_dir(d.exec_root().join("netns"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

fn bridge_ports(dev: &str) -> usize {
    std::fs::read_dir(Path::new("/sys/class/net").join(dev).join("brif"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

fn link_exists(dev: &str) -> bool {
    Path::new("/sys/class/net").join(dev).exists()
}

#[test]
fn containers_talk_tcp_by_name_alias_and_short_id_on_a_user_network() {
    require_root!();
    let d = daemon();
    let subnet = d.spare_subnet(1);
    d.berth(&["network", "create", "--subnet", &subnet, "appnet"])
        .success();
    let id = web(
        &d,
        "db",
        &["--network", "appnet", "--network-alias", "database"],
    );
    let short = &id[..12];
    let script = format!(
        "for n in db database {short} db.appnet; do busybox timeout 5 busybox wget -q -O- http://$n/hostname || exit 1; done; \
         cat /etc/resolv.conf; cat /etc/hosts"
    );
    let (code, out) = sh(&d, &["--network", "appnet", "--name", "client"], &script);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches(&format!("{short}\n")).count(), 4, "{out}");
    assert!(out.contains("nameserver 127.0.0.11\n"), "{out}");
    assert!(out.contains("options ndots:0"), "{out}");
    // The client's own address and hostname are in its hosts file.
    let prefix = subnet.rsplit_once('.').unwrap().0;
    assert!(
        out.lines()
            .any(|l| l.starts_with(prefix) && l.split('\t').count() == 2),
        "{out}"
    );
    // An unknown name is not resolved by the embedded server (forwarded, and fails here).
    let (code, _) = sh(
        &d,
        &["--network", "appnet"],
        "busybox timeout 3 busybox wget -q -O- http://no-such-container/ 2>&1",
    );
    assert_ne!(code, 0);
    // Inspect on both sides.
    let c = inspect(&d, "container", "db");
    let ep = &c["NetworkSettings"]["Networks"]["appnet"];
    let ip = ep["IPAddress"].as_str().unwrap();
    assert!(ip.starts_with(prefix), "{ep}");
    assert_eq!(ep["IPPrefixLen"], 26);
    assert_eq!(ep["Gateway"], format!("{prefix}.65"));
    assert!(ep["MacAddress"].as_str().unwrap().starts_with("02:42:"));
    assert_eq!(ep["Aliases"], json!(["database"]));
    assert_eq!(ep["DNSNames"], json!(["db", short, "database"]));
    assert_eq!(
        c["NetworkSettings"]["IPAddress"], "",
        "not on the default bridge"
    );
    assert!(
        c["NetworkSettings"]["SandboxKey"]
            .as_str()
            .unwrap()
            .ends_with(&format!("netns/{id}"))
    );
    let n = inspect(&d, "network", "appnet");
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], subnet);
    assert_eq!(n["Containers"][&id]["Name"], "db");
    assert_eq!(n["Containers"][&id]["IPv4Address"], format!("{ip}/26"));
}

#[test]
fn default_bridge_addresses_resolv_conf_and_add_host() {
    require_root!();
    let d = daemon();
    let (code, out) = sh(
        &d,
        &[
            "--add-host",
            "gw:host-gateway",
            "--add-host",
            "db:10.9.9.9",
            "--dns",
            "10.1.1.1",
        ],
        "busybox ip -4 addr show eth0; busybox ip route; cat /etc/hosts /etc/resolv.conf",
    );
    assert_eq!(code, 0, "{out}");
    let gw = d.gateway();
    assert!(out.contains(&format!("default via {gw}")), "{out}");
    assert!(out.contains(&format!("{gw}\tgw\n")), "{out}");
    assert!(out.contains("10.9.9.9\tdb\n"), "{out}");
    // No embedded DNS on the default bridge: the given server is used as is.
    assert!(out.contains("nameserver 10.1.1.1\n"), "{out}");
    assert!(!out.contains("127.0.0.11"), "{out}");
    // Containers on the default bridge reach each other by address, not by name.
    let id = web(&d, "b1", &[]);
    let ip = inspect(&d, "container", &id)["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with(gw.rsplit_once('.').unwrap().0), "{ip}");
    let (code, out) = sh(
        &d,
        &[],
        &format!("busybox timeout 5 busybox wget -q -O- http://{ip}/hostname"),
    );
    assert_eq!((code, out.trim()), (0, &id[..12]));
    // `--network none` has only lo; `--network host` sees the host's bridge.
    let (_, out) = sh(&d, &["--network", "none"], "busybox ip -o link");
    assert_eq!(out.lines().count(), 1, "{out}");
    let (_, out) = sh(&d, &["--network", "host"], "busybox ip -o link");
    assert!(out.contains(d.bridge()), "{out}");
    // `container:` shares the other container's netns.
    let (_, out) = sh(
        &d,
        &["--network", "container:b1"],
        "busybox ip -4 -o addr show eth0",
    );
    assert!(out.contains(&format!("{ip}/26")), "{out}");
    // ... and its network identity: hostname, /etc/hosts and /etc/resolv.conf.
    let b1 = d
        .berth(&[
            "exec",
            "b1",
            "sh",
            "-c",
            "hostname; cat /etc/hosts /etc/resolv.conf",
        ])
        .success()
        .stdout;
    let (_, joined) = sh(
        &d,
        &["--network", "container:b1"],
        "hostname; cat /etc/hosts /etc/resolv.conf",
    );
    assert_eq!(joined, b1);
}

#[test]
fn user_networks_are_isolated_and_internal_ones_have_no_way_out() {
    require_root!();
    let d = daemon();
    let (a, b, i) = (d.spare_subnet(1), d.spare_subnet(2), d.spare_subnet(3));
    d.berth(&["network", "create", "--subnet", &a, "neta"])
        .success();
    d.berth(&["network", "create", "--subnet", &b, "netb"])
        .success();
    d.berth(&["network", "create", "--internal", "--subnet", &i, "neti"])
        .success();
    web(&d, "wa", &["--network", "neta"]);
    web(&d, "wi", &["--network", "neti"]);
    let ip_a = inspect(&d, "container", "wa")["NetworkSettings"]["Networks"]["neta"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    // Same network: reachable. Other network: not, even by address; and no name either.
    let (code, out) = sh(
        &d,
        &["--network", "neta"],
        &format!("busybox timeout 5 busybox wget -q -O- http://{ip_a}/hostname"),
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = sh(
        &d,
        &["--network", "netb"],
        &format!("busybox timeout 3 busybox wget -q -O- http://{ip_a}/hostname"),
    );
    assert_ne!(code, 0, "{out}");
    let (code, _) = sh(
        &d,
        &["--network", "netb"],
        "busybox timeout 3 busybox wget -q -O- http://wa/hostname",
    );
    assert_ne!(code, 0);
    // A container on both networks reaches both sides.
    web(&d, "wb", &["--network", "netb"]);
    let (code, out) = sh(
        &d,
        &["--network", "neta", "--network", "netb"],
        "busybox timeout 5 busybox wget -q -O- http://wa/hostname && busybox timeout 5 busybox wget -q -O- http://wb/hostname && busybox ip -o link",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("eth1"), "{out}");
    // Internal: members talk to each other, nothing else (no default route, host unreachable).
    let (code, out) = sh(
        &d,
        &["--network", "neti"],
        "busybox timeout 5 busybox wget -q -O- http://wi/hostname && busybox ip route",
    );
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("default"), "{out}");
    let (code, out) = sh(
        &d,
        &["--network", "neti"],
        &format!("busybox timeout 3 busybox wget -q -O- http://{ip_a}/hostname"),
    );
    assert_ne!(code, 0, "{out}");
}

#[test]
fn published_ports_from_the_host_port_and_ps_and_taken_ports() {
    require_root!();
    let d = daemon();
    let port = free_port();
    let id = web(
        &d,
        "pub",
        &["-p", &format!("{port}:80"), "-p", "127.0.0.1::80/udp"],
    );
    let short = &id[..12];
    let got = http_get(&format!("127.0.0.1:{port}"), "/hostname").unwrap();
    assert_eq!(got.trim(), short);
    // Through the host's own (non-loopback) address: the bridge gateway is one.
    let got = http_get(&format!("{}:{port}", d.gateway()), "/hostname").unwrap();
    assert_eq!(got.trim(), short);
    // And from another container through the host address (hairpin through NAT).
    let (code, out) = sh(
        &d,
        &[],
        &format!(
            "busybox timeout 5 busybox wget -q -O- http://{}:{port}/hostname",
            d.gateway()
        ),
    );
    assert_eq!((code, out.trim()), (0, short));
    let out = d.berth(&["port", "pub"]).success().stdout;
    assert!(
        out.contains(&format!("80/tcp -> 0.0.0.0:{port}\n")),
        "{out}"
    );
    assert!(out.contains("80/udp -> 127.0.0.1:"), "{out}");
    let out = d.berth(&["port", "pub", "80/tcp"]).success().stdout;
    assert!(out.starts_with(&format!("0.0.0.0:{port}\n")), "{out}");
    let err = d.berth(&["port", "pub", "81"]).failure().stderr;
    assert!(
        err.contains("No public port '81/tcp' published for pub"),
        "{err}"
    );
    let ps = d.berth(&["ps", "--format", "{{.Ports}}"]).success().stdout;
    assert!(ps.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");
    let ports = &inspect(&d, "container", "pub")["NetworkSettings"]["Ports"];
    assert_eq!(
        ports["80/tcp"][0],
        json!({"HostIp": "0.0.0.0", "HostPort": port.to_string()})
    );
    // The same host port again: Docker's error, and the container does not run.
    let out = d
        .berth(&[
            "run",
            "-d",
            "--name",
            "again",
            "-p",
            &format!("{port}:80"),
            "busybox",
            "sleep",
            "60",
        ])
        .failure();
    assert!(
        out.stderr.contains(&format!(
            "Bind for 0.0.0.0:{port} failed: port is already allocated"
        )),
        "{}",
        out.stderr
    );
    let st = inspect(&d, "container", "again");
    assert_eq!(st["State"]["Running"], false);
    assert_eq!(netns_files(&d), 1, "the failed start left no netns");
    // A host port range takes the first free port in it.
    let last = port.saturating_add(20);
    web(&d, "ranged", &["-p", &format!("{port}-{last}:80")]);
    let got = host_port(&d, "ranged", "80");
    assert!(got > port && got <= last, "{got}");
    d.berth(&["rm", "-f", "ranged"]).success();
    // -P publishes EXPOSEd ports on random host ports.
    web(&d, "all", &["-P", "--expose", "80"]);
    let random = host_port(&d, "all", "80");
    assert_ne!(random, 0);
    let got = http_get(&format!("127.0.0.1:{random}"), "/hostname").unwrap();
    assert!(!got.trim().is_empty());
    // Stopping frees the port.
    d.berth(&["rm", "-f", "pub"]).success();
    TcpListener::bind(("0.0.0.0", port)).expect("port released");
}

#[test]
fn connect_and_disconnect_a_running_container() {
    require_root!();
    let d = daemon();
    let subnet = d.spare_subnet(1);
    let prefix = subnet.rsplit_once('.').unwrap().0.to_string();
    d.berth(&["network", "create", "--subnet", &subnet, "live"])
        .success();
    let id = web(&d, "srv", &[]);
    let want = format!("{prefix}.100");
    d.berth(&[
        "network", "connect", "--alias", "api", "--ip", &want, "live", "srv",
    ])
    .success();
    let c = inspect(&d, "container", "srv");
    assert_eq!(
        c["NetworkSettings"]["Networks"]["live"]["IPAddress"],
        want.as_str()
    );
    assert!(c["NetworkSettings"]["Networks"]["bridge"]["IPAddress"].is_string());
    let (code, out) = sh(
        &d,
        &["--network", "live"],
        "busybox timeout 5 busybox wget -q -O- http://api/hostname && busybox timeout 5 busybox wget -q -O- http://srv/hostname",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches(&id[..12]).count(), 2, "{out}");
    let (_, out) = sh(&d, &["--network", "container:srv"], "busybox ip -o -4 addr");
    assert!(out.contains(&format!("{want}/26")), "{out}");
    let hosts = d
        .berth(&["exec", "srv", "cat", "/etc/hosts"])
        .success()
        .stdout;
    assert!(
        hosts.contains(&format!("{want}\t{}\n", &id[..12])),
        "{hosts}"
    );
    // Connecting again is refused; so is a second container asking for the same address.
    let again = d.berth(&["network", "connect", "live", "srv"]).failure();
    assert!(
        again.stderr.contains("already exists in network live"),
        "{}",
        again.stderr
    );
    web(&d, "other", &[]);
    let taken = d
        .berth(&["network", "connect", "--ip", &want, "live", "other"])
        .failure();
    assert!(
        taken.stderr.contains("Address already in use"),
        "{}",
        taken.stderr
    );
    d.berth(&["network", "disconnect", "live", "srv"]).success();
    let c = inspect(&d, "container", "srv");
    assert!(c["NetworkSettings"]["Networks"].get("live").is_none());
    let hosts = d
        .berth(&["exec", "srv", "cat", "/etc/hosts"])
        .success()
        .stdout;
    assert!(!hosts.contains(&want), "{hosts}");
    let (code, _) = sh(
        &d,
        &["--network", "live"],
        "busybox timeout 3 busybox wget -q -O- http://api/hostname",
    );
    assert_ne!(code, 0);
    let (_, out) = sh(&d, &["--network", "container:srv"], "busybox ip -o -4 addr");
    assert!(!out.contains(&want), "{out}");
    // Events: connect at start (default bridge) and by the API, disconnect by the API.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let events = d
        .api()
        .get(&format!(
            "/events?since=0&until={until}&filters=%7B%22type%22%3A%5B%22network%22%5D%7D"
        ))
        .json_lines();
    let of_srv: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["Actor"]["Attributes"]["container"] == id.as_str())
        .map(|e| {
            (
                e["Action"].as_str().unwrap().to_string(),
                e["Actor"]["Attributes"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("connect", "bridge"),
        ("connect", "live"),
        ("disconnect", "live"),
    ]
    .iter()
    .map(|(a, n)| (a.to_string(), n.to_string()))
    .collect();
    assert_eq!(of_srv, expected);
    // The released address is not handed out again at once.
    d.berth(&["network", "connect", "live", "other"]).success();
    let ip = inspect(&d, "container", "other")["NetworkSettings"]["Networks"]["live"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(ip, want);
}

#[test]
fn daemon_restart_keeps_running_containers_connected() {
    require_root!();
    let mut d = daemon();
    let subnet = d.spare_subnet(1);
    d.berth(&["network", "create", "--subnet", &subnet, "keep"])
        .success();
    let port = free_port();
    let id = web(
        &d,
        "kept",
        &["--network", "keep", "-p", &format!("{port}:80")],
    );
    let before =
        inspect(&d, "container", "kept")["NetworkSettings"]["Networks"]["keep"]["IPAddress"]
            .clone();
    d.restart();
    let got = http_get(&format!("127.0.0.1:{port}"), "/hostname").unwrap();
    assert_eq!(got.trim(), &id[..12]);
    let got = http_get(&format!("{}:{port}", d.gateway()), "/hostname").unwrap();
    assert_eq!(got.trim(), &id[..12]);
    let (code, out) = sh(
        &d,
        &["--network", "keep"],
        "busybox timeout 5 busybox wget -q -O- http://kept/hostname",
    );
    assert_eq!((code, out.trim()), (0, &id[..12]));
    let after =
        inspect(&d, "container", "kept")["NetworkSettings"]["Networks"]["keep"]["IPAddress"]
            .clone();
    assert_eq!(before, after);
    // A new container does not get the kept container's address.
    let (_, out) = sh(
        &d,
        &["--network", "keep"],
        "busybox ip -4 -o addr show eth0",
    );
    assert!(
        !out.contains(&format!("{} ", after.as_str().unwrap())),
        "{out}"
    );
}

#[test]
fn a_crash_leaves_no_netns_or_lease_of_dead_containers() {
    require_root!();
    let mut d = daemon();
    let subnet = d.spare_subnet(1);
    d.berth(&["network", "create", "--subnet", &subnet, "crash"])
        .success();
    let id = web(&d, "victim", &["--network", "crash"]);
    let dir = d.run_dir(&id);
    d.kill_hard();
    // The container dies too while the daemon is down.
    let pid: i32 = std::fs::read_to_string(dir.join("init.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    until("the container's process to go", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    d.start_again();
    until("the dead container's netns to be removed", || {
        netns_files(&d) == 0
    });
    until("its veth to leave the bridge", || {
        let dev = inspect(&d, "network", "crash")["Options"]["com.docker.network.bridge.name"]
            .as_str()
            .map(str::to_string);
        let dev = dev.unwrap_or_else(|| {
            d.bridges()
                .into_iter()
                .find(|b| b.starts_with("br-"))
                .unwrap()
        });
        bridge_ports(&dev) == 0
    });
    let n = inspect(&d, "network", "crash");
    assert_eq!(n["Containers"], json!({}));
    d.berth(&["network", "rm", "crash"]).success();
}

#[test]
fn nothing_is_left_after_rm_and_network_rm() {
    require_root!();
    let d = daemon();
    let subnet = d.spare_subnet(1);
    let dev = format!("{}u", d.bridge());
    d.berth(&[
        "network",
        "create",
        "--subnet",
        &subnet,
        "-o",
        &format!("com.docker.network.bridge.name={dev}"),
        "gone",
    ])
    .success();
    assert!(link_exists(&dev));
    let port = free_port();
    web(
        &d,
        "g1",
        &["--network", "gone", "-p", &format!("{port}:80")],
    );
    web(&d, "g2", &[]);
    assert_eq!(netns_files(&d), 2);
    assert_eq!(bridge_ports(&dev), 1);
    assert_eq!(bridge_ports(d.bridge()), 1);
    let table = d.firewall_table();
    let rules = nft_table(&table);
    assert!(
        rules.contains(&dev) && rules.contains(&format!("{port}")),
        "{rules}"
    );
    // In use: 409 with Docker's message.
    let r = d.api().delete("/networks/gone");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.message()
            .starts_with("error while removing network: network gone has active endpoints")
    );
    d.berth(&["rm", "-f", "g1", "g2"]).success();
    assert_eq!(netns_files(&d), 0);
    assert_eq!(bridge_ports(&dev), 0);
    assert_eq!(bridge_ports(d.bridge()), 0);
    d.berth(&["network", "rm", "gone"]).success();
    assert!(!link_exists(&dev));
    let rules = nft_table(&table);
    assert!(
        !rules.contains(&dev) && !rules.contains(&format!("dport {port}")),
        "{rules}"
    );
    // Prune removes only unused custom networks.
    d.berth(&["network", "create", "--subnet", &d.spare_subnet(2), "p1"])
        .success();
    let out = d.berth(&["network", "prune", "-f"]).success().stdout;
    assert_eq!(out, "Deleted Networks:\np1\n");
    let names = d
        .berth(&["network", "ls", "--format", "{{.Name}}"])
        .success()
        .stdout;
    assert_eq!(names, "bridge\nhost\nnone\n");
}

#[test]
fn bad_input_gives_dockers_errors() {
    require_root!();
    let d = daemon();
    let subnet = d.spare_subnet(1);
    d.berth(&["network", "create", "--subnet", &subnet, "n1"])
        .success();
    let dup = d
        .berth(&["network", "create", "--subnet", &d.spare_subnet(2), "n1"])
        .failure();
    assert!(
        dup.stderr.contains("network with name n1 already exists"),
        "{}",
        dup.stderr
    );
    let overlap = d.api().post(
        "/networks/create",
        Some(
            json!({"Name": "n2", "IPAM": {"Config": [{"Subnet": subnet}]}})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(overlap.status, 403, "{}", overlap.text());
    assert_eq!(
        overlap.message(),
        "invalid pool request: Pool overlaps with other one on this address space"
    );
    let r = d.api().post(
        "/containers/create",
        Some(
            json!({"Image": "busybox", "HostConfig": {"NetworkMode": "nope"}})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.message(), "network nope not found");
    let r = d.api().post(
        "/networks/nope/connect",
        Some(json!({"Container": "x"}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 404);
    let r = d.api().post(
        "/containers/create",
        Some(json!({"Image": "busybox", "HostConfig": {"PortBindings": {"http/tcp": [{"HostPort": "80"}]}}}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let bad = d
        .berth(&["run", "-p", "80:80:80:80", "busybox", "true"])
        .failure();
    assert!(bad.stderr.contains("invalid"), "{}", bad.stderr);
    let r = d.api().delete("/networks/bridge");
    assert_eq!(r.status, 403);
    assert_eq!(
        r.message(),
        "bridge is a pre-defined network and cannot be removed"
    );
    let ip = d
        .berth(&["run", "--ip", "10.0.0.5", "busybox", "true"])
        .failure();
    assert!(
        ip.stderr
            .contains("user specified IP address is supported on user defined networks only"),
        "{}",
        ip.stderr
    );
    // No container was left half-created by those refusals.
    let all = d.berth(&["ps", "-aq"]).success().stdout;
    assert_eq!(all, "");
}

#[test]
fn docker_cli_drives_networks() {
    require_root!();
    let d = daemon();
    let subnet = d.spare_subnet(1);
    let Some(out) = d.docker(&["network", "create", "--subnet", &subnet, "dnet"]) else {
        eprintln!("skipped: no docker CLI");
        return;
    };
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = d
        .docker(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"])
        .unwrap();
    assert!(out.stdout.contains("dnet bridge\n"), "{}", out.stdout);
    let out = d
        .docker(&[
            "run",
            "-d",
            "--name",
            "dweb",
            "--network",
            "dnet",
            "--network-alias",
            "w",
            "busybox",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ])
        .unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.stdout.trim().to_string();
    let out = d
        .docker(&[
            "run",
            "--rm",
            "--network",
            "dnet",
            "busybox",
            "busybox",
            "timeout",
            "5",
            "busybox",
            "wget",
            "-q",
            "-O-",
            "http://w/hostname",
        ])
        .unwrap();
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, &id[..12]),
        "{}",
        out.stderr
    );
    let out = d
        .docker(&[
            "network",
            "inspect",
            "dnet",
            "--format",
            "{{range .Containers}}{{.Name}}{{end}}",
        ])
        .unwrap();
    assert_eq!(out.stdout.trim(), "dweb");
    let out = d
        .docker(&[
            "inspect",
            "dweb",
            "--format",
            "{{.NetworkSettings.Networks.dnet.IPPrefixLen}}",
        ])
        .unwrap();
    assert_eq!(out.stdout.trim(), "26");
    let out = d.docker(&["network", "rm", "dnet"]).unwrap();
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("has active endpoints"),
        "{}",
        out.stderr
    );
    d.docker(&["rm", "-f", "dweb"]).unwrap();
    let out = d.docker(&["network", "rm", "dnet"]).unwrap();
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "dnet\n"),
        "{}",
        out.stderr
    );
}

/// A throw-away "external host": a netns joined to the host by a veth pair on a /26 of the
/// daemon's, with no route back to any bridge subnet. Removed (netns and veth) on drop.
struct ExternalHost {
    netns: String,
    host_if: String,
    server: Option<berth_e2e::daemon::ChildGuard>,
}

impl ExternalHost {
    fn new(d: &Daemon, subnet: &str) -> (ExternalHost, String, String) {
        let n = std::process::id();
        let ext = ExternalHost {
            netns: format!("berth-ext-{n}-{}", d.bridge()),
            host_if: format!("bx{:x}", n & 0xfffff),
            server: None,
        };
        let base = subnet.rsplit_once('.').unwrap().0;
        let last: u32 = subnet
            .rsplit_once('.')
            .unwrap()
            .1
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let (host_ip, ext_ip) = (
            format!("{base}.{}", last + 1),
            format!("{base}.{}", last + 2),
        );
        let run = |args: &[&str]| {
            let st = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "ip {args:?}");
        };
        run(&["netns", "add", &ext.netns]);
        run(&[
            "link",
            "add",
            &ext.host_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ext.netns,
        ]);
        run(&["addr", "add", &format!("{host_ip}/26"), "dev", &ext.host_if]);
        run(&["link", "set", &ext.host_if, "up"]);
        run(&[
            "-n",
            &ext.netns,
            "addr",
            "add",
            &format!("{ext_ip}/26"),
            "dev",
            "eth0",
        ]);
        run(&["-n", &ext.netns, "link", "set", "eth0", "up"]);
        run(&["-n", &ext.netns, "link", "set", "lo", "up"]);
        (ext, host_ip, ext_ip)
    }

    /// Serves `dir` over HTTP on port 8080 inside the external netns.
    fn serve(&mut self, dir: &Path) {
        let child = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "busybox",
                "httpd",
                "-f",
                "-p",
                "8080",
                "-h",
            ])
            .arg(dir)
            .spawn()
            .unwrap();
        self.server = Some(berth_e2e::daemon::ChildGuard(child));
    }
}

impl Drop for ExternalHost {
    fn drop(&mut self) {
        self.server = None;
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

#[test]
fn outbound_traffic_is_masqueraded_and_internal_networks_stay_in() {
    require_root!();
    let d = daemon();
    let (mut ext, _host_ip, ext_ip) = ExternalHost::new(&d, &d.spare_subnet(3));
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("hello"), "from outside\n").unwrap();
    ext.serve(www.path());
    // The external host has no route to the bridges: only a masqueraded connection (source =
    // the host's address on its link) can get an answer.
    let url = format!("http://{ext_ip}:8080/hello");
    let probe = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do busybox timeout 3 busybox wget -q -O- {url} && exit 0; busybox sleep 0.2; done; exit 1"
    );
    let (code, out) = sh(&d, &[], &probe);
    assert_eq!((code, out.as_str()), (0, "from outside\n"));
    d.berth(&[
        "network",
        "create",
        "--subnet",
        &d.spare_subnet(1),
        "outnet",
    ])
    .success();
    let (code, out) = sh(&d, &["--network", "outnet"], &probe);
    assert_eq!((code, out.as_str()), (0, "from outside\n"));
    d.berth(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        &d.spare_subnet(2),
        "innet",
    ])
    .success();
    let (code, out) = sh(
        &d,
        &["--network", "innet"],
        &format!("busybox timeout 3 busybox wget -q -O- {url}"),
    );
    assert_ne!(code, 0, "{out}");
}
