use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use berth_api::Filters;
use berth_api::models::container::{EndpointSettings, PortBinding};
use berth_api::models::network::NetworkCreateRequest;

use super::*;
use crate::{Proto, ipam};

struct NoEvents;
impl NetworkEvents for NoEvents {
    fn network_event(&self, _: &str, _: &str, _: BTreeMap<String, String>) {}
}

/// A service without a default bridge, over a fake data plane.
async fn service(dir: &Path) -> Networks {
    Networks::open_with(
        NetworkOptions {
            data_root: dir.join("data"),
            exec_root: dir.join("exec"),
            bridge: "none".into(),
            bip: None,
            fixed_cidr: None,
            default_pools: ipam::docker_default_pools(),
            firewall_table: None,
            mtu: None,
        },
        Arc::new(NoEvents),
        super::fake::FakeDataPlane::new(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn predefined_networks_and_list_filters() {
    let dir = tempfile::tempdir().unwrap();
    let n = service(dir.path()).await;
    let names = |f: &str| -> Vec<String> {
        let f = Filters::parse(f).unwrap();
        n.list(&f).unwrap().into_iter().map(|r| r.name).collect()
    };
    assert_eq!(names(""), ["host", "none"]);
    assert_eq!(names(r#"{"driver":{"null":true}}"#), ["none"]);
    assert_eq!(names(r#"{"type":{"custom":true}}"#), Vec::<String>::new());
    assert!(
        n.list(&Filters::parse(r#"{"type":{"x":true}}"#).unwrap())
            .is_err()
    );
    assert!(
        n.list(&Filters::parse(r#"{"bogus":{"x":true}}"#).unwrap())
            .is_err()
    );
    let host = n.inspect("host").unwrap();
    assert_eq!(
        (host.driver.as_str(), host.scope.as_str()),
        ("host", "local")
    );
    assert_eq!(n.inspect(&host.id[..6]).unwrap().name, "host");
    let e = n.inspect("nope").unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string()),
        (
            berth_api::ErrorKind::NotFound,
            "network nope not found".into()
        )
    );
    let e = n.remove("none").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "none is a pre-defined network and cannot be removed"
    );
    // Records survive a restart of the service.
    let again = service(dir.path()).await;
    assert_eq!(again.inspect("host").unwrap().id, host.id);
}

#[tokio::test]
async fn create_refuses_what_docker_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let n = service(dir.path()).await;
    let req = |name: &str, driver: &str| NetworkCreateRequest {
        name: name.into(),
        driver: driver.into(),
        ..Default::default()
    };
    let e = n.create(req("x", "overlay")).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string()),
        (
            berth_api::ErrorKind::NotFound,
            "plugin \"overlay\" not found".into()
        )
    );
    let e = n.create(req("x", "host")).await.unwrap_err();
    assert_eq!(e.kind(), berth_api::ErrorKind::Forbidden);
    let e = n.create(req("host", "bridge")).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string()),
        (
            berth_api::ErrorKind::Forbidden,
            "operation is not permitted on predefined host network ".into()
        )
    );
    let e = n.create(req("  ", "bridge")).await.unwrap_err();
    assert_eq!(e.kind(), berth_api::ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn container_modes_and_endpoint_checks() {
    let dir = tempfile::tempdir().unwrap();
    let n = service(dir.path()).await;
    let req = |name: &str, mode: &str| NetworkRequest {
        id: name.repeat(64),
        name: name.into(),
        mode: mode.into(),
        ..Default::default()
    };
    // Without a default bridge, the default network is none.
    assert_eq!(n.container_create(&req("a", "default")).unwrap(), "none");
    let e = n.container_create(&req("b", "nope")).unwrap_err();
    assert_eq!(e.to_string(), "network nope not found");
    let mut c = req("c", "host");
    c.endpoints
        .insert("none".to_string(), EndpointSettings::default());
    c.endpoints
        .insert("other".to_string(), EndpointSettings::default());
    let e = n.container_create(&c).unwrap_err();
    assert_eq!(
        e.to_string(),
        "container sharing network namespace with another container or host cannot be connected to any other network"
    );
    let mut d = req("d", "container:x");
    d.port_bindings.insert("80/tcp".into(), None);
    let e = n.container_create(&d).unwrap_err();
    assert_eq!(
        e.to_string(),
        "conflicting options: port publishing and the container type network mode"
    );
    // `--dns` is checked and recorded with the rest, in the same call.
    let mut e1 = req("e", "none");
    e1.dns = vec!["1.1.1.1".into(), "nope".into()];
    assert_eq!(
        n.container_create(&e1).unwrap_err().to_string(),
        "invalid address: nope"
    );
    assert!(n.settings(&"e".repeat(64)).networks.is_empty());
    let s = n.settings(&"a".repeat(64));
    assert!(s.networks.contains_key("none"));
    assert!(s.ports.is_empty());
}

#[test]
fn port_keys() {
    assert_eq!(parse_port_key("80/tcp").unwrap(), (80, 80, Proto::Tcp));
    assert_eq!(parse_port_key("53/udp").unwrap(), (53, 53, Proto::Udp));
    assert_eq!(
        parse_port_key("8000-8002").unwrap(),
        (8000, 8002, Proto::Tcp)
    );
    assert!(parse_port_key("http/tcp").is_err());
    assert!(parse_port_key("80/xyz").is_err());
}

#[test]
fn publish_all_adds_the_exposed_ports() {
    let mut b = BTreeMap::new();
    b.insert(
        "80/tcp".to_string(),
        Some(vec![PortBinding {
            host_ip: "127.0.0.1".into(),
            host_port: "8080".into(),
        }]),
    );
    let exposed = vec!["80/tcp".to_string(), "443/tcp".to_string()];
    let (specs, left) = port_specs(&b, false, &exposed).unwrap();
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].host_port, 8080);
    assert_eq!(specs[0].host_ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(left, vec!["443/tcp".to_string()]);
    let (specs, left) = port_specs(&b, true, &exposed).unwrap();
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[1].host_port, 0);
    assert!(left.is_empty());
    let mut bad = BTreeMap::new();
    bad.insert(
        "80/tcp".to_string(),
        Some(vec![PortBinding {
            host_ip: "not-an-ip".into(),
            host_port: "1".into(),
        }]),
    );
    assert!(port_specs(&bad, false, &[]).is_err());
}
