//! The control plane over the fake data plane: no root, no kernel state.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use berth_api::ErrorKind;
use berth_api::models::container::{EndpointIpamConfig, EndpointSettings, PortBinding};
use berth_api::models::network::{Ipam, IpamConfig, NetworkCreateRequest};

use super::fake::FakeDataPlane;
use super::{NetworkEvents, NetworkOptions, NetworkRequest, Networks};
use crate::control_error::Result;
use crate::ipam;

struct NoEvents;
impl NetworkEvents for NoEvents {
    fn network_event(&self, _: &str, _: &str, _: BTreeMap<String, String>) {}
}

/// A service over `fake`; `bridge` is the default bridge's device (`none`: no default bridge).
async fn open(dir: &Path, fake: &Arc<FakeDataPlane>, bridge: &str) -> Networks {
    Networks::open_with(
        NetworkOptions {
            data_root: dir.join("data"),
            exec_root: dir.join("exec"),
            bridge: bridge.into(),
            bip: (bridge != "none").then(|| "10.70.0.1/24".parse().unwrap()),
            fixed_cidr: None,
            default_pools: ipam::docker_default_pools(),
            firewall_table: None,
            mtu: None,
        },
        Arc::new(NoEvents),
        fake.clone(),
    )
    .await
    .unwrap()
}

fn net_req(name: &str, subnet: Option<&str>) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: name.into(),
        ipam: subnet.map(|s| Ipam {
            config: Some(vec![IpamConfig {
                subnet: s.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container id from its one-letter name.
fn id(name: &str) -> String {
    name.repeat(64)
}

fn on(network: &str, s: EndpointSettings) -> BTreeMap<String, EndpointSettings> {
    BTreeMap::from([(network.to_string(), s)])
}

fn with_ip(ip: &str) -> EndpointSettings {
    EndpointSettings {
        ipam_config: Some(EndpointIpamConfig {
            ipv4_address: ip.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_alias(alias: &str) -> EndpointSettings {
    EndpointSettings {
        aliases: Some(vec![alias.into()]),
        ..Default::default()
    }
}

/// Records container `name` on `network` with `settings` and `ports` (`80/tcp` → host port).
fn create(
    n: &Networks,
    name: &str,
    network: &str,
    settings: EndpointSettings,
    ports: &[(&str, &str)],
) -> Result<String> {
    let bindings: BTreeMap<String, Option<Vec<PortBinding>>> = ports
        .iter()
        .map(|(k, host)| {
            let b = PortBinding {
                host_ip: String::new(),
                host_port: host.to_string(),
            };
            (k.to_string(), Some(vec![b]))
        })
        .collect();
    n.container_create(&NetworkRequest {
        id: id(name),
        name: name.into(),
        mode: network.into(),
        endpoints: on(network, settings),
        port_bindings: bindings,
        ..Default::default()
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The container's IPv4 address on `network`, as inspect shows it ("" when none).
fn address(n: &Networks, name: &str, network: &str) -> String {
    n.settings(&id(name))
        .networks
        .get(network)
        .map(|e| e.ip_address.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn create_and_remove_a_network() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDataPlane::new();
    let n = open(dir.path(), &fake, "none").await;
    fake.clear();
    let nid = n
        .create(net_req("app", Some("10.50.0.0/24")))
        .await
        .unwrap();
    let dev = format!("br-{}", &nid[..12]);
    let r = n.inspect("app").unwrap();
    let cfg = &r.ipam.config.as_ref().unwrap()[0];
    assert_eq!(
        (r.id.as_str(), cfg.subnet.as_str()),
        (nid.as_str(), "10.50.0.0/24")
    );
    assert_eq!(cfg.gateway, "10.50.0.1");
    assert_eq!(
        fake.calls_of("ensure_bridge"),
        [format!("ensure_bridge {dev} [10.50.0.1/24]")]
    );
    let rs = fake.ruleset.lock().unwrap().clone().unwrap();
    assert!(rs.bridges.iter().any(|b| b.device == dev));
    // The record survives a restart, and the bridge is made again.
    drop(n);
    fake.clear();
    let n = open(dir.path(), &fake, "none").await;
    assert_eq!(n.inspect("app").unwrap().id, nid);
    assert_eq!(fake.calls_of("ensure_bridge").len(), 1);
    let e = n.create(net_req("app", None)).await.unwrap_err();
    assert_eq!(e.to_string(), "network with name app already exists");
    n.remove("app").await.unwrap();
    assert_eq!(
        fake.calls_of("remove_bridge"),
        [format!("remove_bridge {dev}")]
    );
    assert_eq!(n.inspect("app").unwrap_err().kind(), ErrorKind::NotFound);
    // A bridge the data plane cannot make leaves no network behind.
    fake.fail("ensure_bridge");
    let e = n.create(net_req("bad", None)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal);
    assert!(e.to_string().starts_with("cannot set up bridge br-"), "{e}");
    assert!(n.inspect("bad").is_err());
}

#[tokio::test]
async fn overlapping_subnets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDataPlane::new();
    let n = open(dir.path(), &fake, "none").await;
    n.create(net_req("a", Some("10.50.0.0/16"))).await.unwrap();
    for subnet in ["10.50.1.0/24", "10.0.0.0/8", "10.50.0.0/16"] {
        let e = n.create(net_req("b", Some(subnet))).await.unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string()),
            (
                ErrorKind::Forbidden,
                "invalid pool request: Pool overlaps with other one on this address space".into()
            ),
            "{subnet}"
        );
    }
    n.create(net_req("b", Some("10.51.0.0/24"))).await.unwrap();
    // Without --subnet: the first default subnet the host's routes and addresses leave free
    // (its default route says nothing about collisions).
    *fake.host.lock().unwrap() = vec![
        "172.17.0.0/16".parse().unwrap(),
        "0.0.0.0/0".parse().unwrap(),
    ];
    n.create(net_req("c", None)).await.unwrap();
    let c = n.inspect("c").unwrap();
    assert_eq!(c.ipam.config.unwrap()[0].subnet, "172.18.0.0/16");
    n.create(net_req("d", None)).await.unwrap();
    assert_eq!(
        n.inspect("d").unwrap().ipam.config.unwrap()[0].subnet,
        "172.19.0.0/16"
    );
}

#[tokio::test]
async fn start_allocates_and_a_failing_attach_gives_the_address_back() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDataPlane::new();
    let n = open(dir.path(), &fake, "none").await;
    let nid = n
        .create(net_req("app", Some("10.50.0.0/24")))
        .await
        .unwrap();
    let dev = format!("br-{}", &nid[..12]);
    assert_eq!(
        create(&n, "a", "app", Default::default(), &[]).unwrap(),
        "app"
    );
    fake.clear();
    let info = n.container_start(&id("a")).await.unwrap();
    let netns = dir.path().join("exec/netns").join(id("a"));
    assert_eq!(info.netns.as_deref(), Some(netns.as_path()));
    assert_eq!(info.addresses, [ip("10.50.0.2")]);
    assert!(info.embedded_dns);
    assert_eq!(
        fake.calls_of("attach"),
        [format!("attach {dev} eth0 [10.50.0.2/24] gw=[10.50.0.1]")]
    );
    assert_eq!(fake.calls_of("serve_dns").len(), 1);
    assert_eq!(address(&n, "a", "app"), "10.50.0.2");

    create(&n, "b", "app", with_ip("10.50.0.20"), &[]).unwrap();
    fake.fail("attach");
    let e = n.container_start(&id("b")).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot attach container bbbbbbbbbbbb to network app: attach failed (fake): fake"
    );
    // Nothing is left of the failed start: no netns, no endpoint, no lease.
    let b_netns = dir.path().join("exec/netns").join(id("b"));
    assert!(!b_netns.exists());
    assert!(
        fake.calls_of("remove_netns")
            .contains(&format!("remove_netns {}", b_netns.display()))
    );
    assert_eq!(address(&n, "b", "app"), "");
    assert_eq!(n.inspect("app").unwrap().containers.len(), 1);
    assert!(n.netns_of(&id("b")).is_none());
    fake.heal();
    create(&n, "c", "app", with_ip("10.50.0.20"), &[]).unwrap();
    n.container_start(&id("c")).await.unwrap();
    assert_eq!(address(&n, "c", "app"), "10.50.0.20");
    // Now taken: b cannot have it.
    let e = n.container_start(&id("b")).await.unwrap_err();
    assert_eq!(e.to_string(), "Address already in use: 10.50.0.20");
    // A stop tears down and frees the address.
    n.container_stop(&id("c")).await;
    assert_eq!(address(&n, "c", "app"), "");
    n.container_start(&id("b")).await.unwrap();
    assert_eq!(address(&n, "b", "app"), "10.50.0.20");
}

#[tokio::test]
async fn a_failing_publish_undoes_the_whole_start() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDataPlane::new();
    let n = open(dir.path(), &fake, "none").await;
    n.create(net_req("app", Some("10.50.0.0/24")))
        .await
        .unwrap();
    create(&n, "a", "app", with_ip("10.50.0.7"), &[("80/tcp", "8080")]).unwrap();
    fake.fail("publish");
    let e = n.container_start(&id("a")).await.unwrap_err();
    assert!(
        e.to_string().starts_with("cannot publish port 80/tcp"),
        "{e}"
    );
    assert_eq!(fake.calls_of("leave_bridge").len(), 1);
    assert!(n.ports(&id("a")).is_empty());
    fake.heal();
    // The address came back with the teardown.
    n.container_start(&id("a")).await.unwrap();
    assert_eq!(address(&n, "a", "app"), "10.50.0.7");
    let ports = n.ports(&id("a"));
    assert_eq!(ports[0].public_port, Some(8080));
    let rs = fake.ruleset.lock().unwrap().clone().unwrap();
    assert_eq!(rs.ports.len(), 1);
    assert_eq!(rs.ports[0].container_ip, ip("10.50.0.7"));
}

#[tokio::test]
async fn restart_restores_running_containers() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDataPlane::new();
    let n = open(dir.path(), &fake, "none").await;
    n.create(net_req("app", Some("10.50.0.0/24")))
        .await
        .unwrap();
    create(&n, "a", "app", with_alias("db"), &[("80/tcp", "8080")]).unwrap();
    create(&n, "b", "app", Default::default(), &[]).unwrap();
    n.container_start(&id("a")).await.unwrap();
    n.container_start(&id("b")).await.unwrap();
    assert_eq!(address(&n, "b", "app"), "10.50.0.3");
    drop(n);
    // A reboot ended b (its netns is gone); a crash left a netns nobody records.
    let netns = dir.path().join("exec/netns");
    std::fs::remove_file(netns.join(id("b"))).unwrap();
    std::fs::write(netns.join("stray"), b"").unwrap();

    let fake = FakeDataPlane::new();
    let n = open(dir.path(), &fake, "none").await;
    assert_eq!(
        fake.calls_of("publish"),
        ["publish None:8080/tcp -> 10.50.0.2:80"]
    );
    assert_eq!(
        fake.calls_of("serve_dns"),
        [format!(
            "serve_dns {} [192.0.2.53:53]",
            netns.join(id("a")).display()
        )]
    );
    assert_eq!(
        fake.calls_of("remove_netns"),
        [format!("remove_netns {}", netns.join("stray").display())]
    );
    assert_eq!(address(&n, "a", "app"), "10.50.0.2");
    assert_eq!(n.ports(&id("a"))[0].public_port, Some(8080));
    assert_eq!(
        n.settings(&id("a")).networks["app"].aliases,
        Some(vec!["db".to_string()])
    );
    assert_eq!(address(&n, "b", "app"), "");
    let rs = fake.ruleset.lock().unwrap().clone().unwrap();
    assert_eq!(rs.ports.len(), 1);
    // a keeps its lease; b's is free again.
    create(&n, "c", "app", with_ip("10.50.0.2"), &[]).unwrap();
    let e = n.container_start(&id("c")).await.unwrap_err();
    assert_eq!(e.to_string(), "Address already in use: 10.50.0.2");
    create(&n, "d", "app", with_ip("10.50.0.3"), &[]).unwrap();
    n.container_start(&id("d")).await.unwrap();
}

#[tokio::test]
async fn connect_and_disconnect_a_running_container() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDataPlane::new();
    let n = open(dir.path(), &fake, "none").await;
    n.create(net_req("app", Some("10.50.0.0/24")))
        .await
        .unwrap();
    let back = n
        .create(net_req("back", Some("10.51.0.0/24")))
        .await
        .unwrap();
    create(&n, "a", "app", Default::default(), &[]).unwrap();
    n.container_start(&id("a")).await.unwrap();
    fake.clear();
    n.connect("back", &id("a"), with_alias("api"))
        .await
        .unwrap();
    // Not the primary endpoint: no default route through it.
    assert_eq!(
        fake.calls_of("attach"),
        [format!(
            "attach br-{} eth1 [10.51.0.2/24] gw=[]",
            &back[..12]
        )]
    );
    let s = n.settings(&id("a"));
    assert_eq!(s.networks.keys().collect::<Vec<_>>(), ["app", "back"]);
    assert_eq!(s.networks["back"].ip_address, "10.51.0.2");
    assert!(
        s.networks["back"]
            .dns_names
            .as_ref()
            .unwrap()
            .contains(&"api".to_string())
    );
    let e = n
        .connect("back", &id("a"), Default::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "endpoint with name a already exists in network back"
    );

    n.disconnect("back", &id("a"), false).await.unwrap();
    assert_eq!(fake.calls_of("detach").len(), 1);
    assert_eq!(
        n.settings(&id("a")).networks.keys().collect::<Vec<_>>(),
        ["app"]
    );
    let e = n.disconnect("back", &id("a"), false).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "container aaaaaaaaaaaa is not connected to network back"
    );
    n.disconnect("gone", &id("a"), true).await.unwrap();

    // A connect the data plane refuses leaves the container as it was.
    fake.fail("attach");
    n.connect("back", &id("a"), with_ip("10.51.0.9"))
        .await
        .unwrap_err();
    assert_eq!(n.settings(&id("a")).networks.len(), 1);
    assert!(n.inspect("back").unwrap().containers.is_empty());
    fake.heal();
    n.connect("back", &id("a"), with_ip("10.51.0.9"))
        .await
        .unwrap();
    assert_eq!(address(&n, "a", "back"), "10.51.0.9");
    // A stopped container only records the network; its endpoint comes at start.
    create(&n, "b", "app", Default::default(), &[]).unwrap();
    fake.clear();
    n.connect("back", &id("b"), Default::default())
        .await
        .unwrap();
    assert!(fake.calls_of("attach").is_empty());
    n.container_start(&id("b")).await.unwrap();
    assert_eq!(fake.calls_of("attach").len(), 2);
}

#[tokio::test]
async fn static_addresses_must_be_in_a_user_subnet() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDataPlane::new();
    let n = open(dir.path(), &fake, "berth-t0").await;
    n.create(net_req("app", Some("10.60.0.0/24")))
        .await
        .unwrap();
    n.create(net_req("auto", None)).await.unwrap();
    let refused = |name: &str, network: &str, addr: &str| {
        create(&n, name, network, with_ip(addr), &[])
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refused("a", "app", "10.61.0.5"),
        "no configured subnet or ip-range contain the IP address 10.61.0.5"
    );
    assert_eq!(
        refused("a", "auto", "172.17.0.5"),
        "user specified IP address is supported only when connecting to networks with user configured subnets"
    );
    assert_eq!(
        refused("a", "bridge", "10.70.0.5"),
        "user specified IP address is supported on user defined networks only"
    );
    assert_eq!(refused("a", "app", "bogus"), "invalid address: bogus");
    create(&n, "a", "app", with_ip("10.60.0.5"), &[]).unwrap();
    let info = n.container_start(&id("a")).await.unwrap();
    assert_eq!(info.addresses, [ip("10.60.0.5")]);
    assert_eq!(info.host_gateway, Some(ip("10.70.0.1")));
}

#[tokio::test]
async fn aliases_and_names_resolve_on_user_networks() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDataPlane::new();
    let n = open(dir.path(), &fake, "berth-t0").await;
    n.create(net_req("app", Some("10.50.0.0/24")))
        .await
        .unwrap();
    create(&n, "a", "app", with_alias("db"), &[]).unwrap();
    create(&n, "b", "app", Default::default(), &[]).unwrap();
    n.container_start(&id("a")).await.unwrap();
    n.container_start(&id("b")).await.unwrap();
    let a = ip("10.50.0.2");
    let resolver = fake.resolver(&dir.path().join("exec/netns").join(id("b")));
    for name in ["db", "a", "DB.app.", "aaaaaaaaaaaa", "a.app"] {
        assert_eq!(resolver.lookup(name), [a], "{name}");
    }
    assert!(resolver.lookup("nope").is_empty());
    assert_eq!(resolver.reverse(a), Some("a.app".into()));
    // The default bridge has no embedded DNS and no aliases.
    let e = create(&n, "c", "bridge", with_alias("x"), &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "network-scoped alias is supported only for containers in user defined networks"
    );
    create(&n, "c", "bridge", Default::default(), &[]).unwrap();
    fake.clear();
    let info = n.container_start(&id("c")).await.unwrap();
    assert!(!info.embedded_dns);
    assert!(fake.calls_of("serve_dns").is_empty());
    assert_eq!(info.addresses, [ip("10.70.0.2")]);
}

#[tokio::test]
async fn shutdown_waits_for_background_work() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDataPlane::new();
    let n = open(dir.path(), &fake, "none").await;
    n.create(net_req("app", Some("10.50.0.0/24")))
        .await
        .unwrap();
    create(&n, "a", "app", Default::default(), &[("80/tcp", "8080")]).unwrap();
    n.container_start(&id("a")).await.unwrap();
    fake.clear();
    // The stop takes the veth off its bridge at once and deletes it in the background.
    n.container_stop(&id("a")).await;
    assert_eq!(fake.calls_of("leave_bridge").len(), 1);
    n.shutdown().await;
    assert_eq!(fake.calls_of("detach").len(), 1);
    assert_eq!(n.background_tasks(), 0);
}
