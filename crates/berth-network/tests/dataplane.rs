//! The data plane end to end, in throw-away namespaces: bridges, veths, NAT, published ports,
//! isolation, internal networks.

mod common;

use berth_network::firewall::{BridgeRules, Firewall, PortForward, Ruleset};
use berth_network::{Proto, link, proxy};
use common::*;

fn bridge_rules(dev: &str, subnet: &str, internal: bool) -> BridgeRules {
    BridgeRules {
        device: dev.into(),
        subnets: vec![subnet.parse().unwrap()],
        internal,
        masquerade: true,
        icc: true,
    }
}

#[test]
fn containers_talk_on_a_bridge_and_reach_out_masqueraded() {
    require_root!();
    in_fake_host(|scratch, host| async move {
        let s = &scratch.sfx;
        let (br, ext_br) = (format!("bta{s}"), format!("btx{s}"));
        bridge(&br, "10.71.1.1/24").await;
        let mac_of = |dev: &str| {
            let out = std::process::Command::new("ip")
                .args(["-o", "link", "show", dev])
                .output()
                .unwrap();
            let text = String::from_utf8(out.stdout).unwrap();
            text.split("link/ether ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        };
        let bridge_mac = mac_of(&br);
        let c1 = container(&scratch, "c1", &br, "10.71.1.2/24", Some("10.71.1.1")).await;
        let c2 = container(&scratch, "c2", &br, "10.71.1.3/24", Some("10.71.1.1")).await;
        // Ports coming and going do not change the bridge's MAC (the containers' gateway).
        assert_eq!(mac_of(&br), bridge_mac);
        // The "external host": its own link to the host, no route back to the bridge's subnet.
        bridge(&ext_br, "192.0.2.1/24").await;
        let ext = container(&scratch, "ext", &ext_br, "192.0.2.2/24", None).await;

        Firewall::new(&format!("berth_t{s}"))
            .apply(&Ruleset {
                bridges: vec![bridge_rules(&br, "10.71.1.0/24", false)],
                ports: vec![],
            })
            .unwrap();

        // ICMP both ways on the bridge and to the gateway.
        for (from, to) in [
            (&c1.path, "10.71.1.3"),
            (&c2.path, "10.71.1.2"),
            (&c1.path, "10.71.1.1"),
        ] {
            let dest = to.to_string();
            let ok = berth_network::netns::run_in(from, move || {
                std::process::Command::new("busybox")
                    .args(["ping", "-c", "1", "-W", "2", &dest])
                    .output()
                    .map(|o| o.status.success())
            })
            .unwrap()
            .unwrap();
            assert!(ok, "ping {to}");
        }
        let _srv1 = Server::start(&c1.path, "10.71.1.2:7000");
        assert_eq!(
            fetch(&c2.path, "10.71.1.2:7000").await.unwrap(),
            "peer=10.71.1.3"
        );

        let _srv_ext = Server::start(&ext.path, "192.0.2.2:7001");
        // Masqueraded: the external host sees the host's address, not the container's.
        assert_eq!(
            fetch(&c1.path, "192.0.2.2:7001").await.unwrap(),
            "peer=192.0.2.1"
        );
        // The host itself reaches containers directly.
        assert_eq!(
            fetch(&host, "10.71.1.2:7000").await.unwrap(),
            "peer=10.71.1.1"
        );

        let mac = link::host_addresses().await.unwrap();
        assert!(mac.contains(&"10.71.1.1/24".parse().unwrap()), "{mac:?}");
        let routes = link::host_routes().await.unwrap();
        assert!(
            routes.contains(&"10.71.1.0/24".parse().unwrap()),
            "{routes:?}"
        );
    });
}

#[test]
fn published_port_by_dnat_hairpin_and_proxy() {
    require_root!();
    in_fake_host(|scratch, host| async move {
        let s = &scratch.sfx;
        let (br, ext_br) = (format!("bta{s}"), format!("btx{s}"));
        bridge(&br, "10.72.1.1/24").await;
        let web = container(&scratch, "web", &br, "10.72.1.2/24", Some("10.72.1.1")).await;
        let other = container(&scratch, "oth", &br, "10.72.1.3/24", Some("10.72.1.1")).await;
        bridge(&ext_br, "192.0.2.1/24").await;
        let ext = container(&scratch, "ext", &ext_br, "192.0.2.2/24", None).await;
        let _srv = Server::start(&web.path, "10.72.1.2:80");

        // The proxy picks the port and reserves it; NAT uses the same number. It listens on
        // 127.0.0.1 only, so that every other path below is NAT's.
        let px = proxy::publish(
            Some("127.0.0.1".parse().unwrap()),
            0,
            Proto::Tcp,
            "10.72.1.2:80".parse().unwrap(),
        )
        .await
        .unwrap();
        let port = px.host_port();
        let fw = Firewall::new(&format!("berth_t{s}"));
        fw.apply(&Ruleset {
            bridges: vec![bridge_rules(&br, "10.72.1.0/24", false)],
            ports: vec![PortForward {
                proto: Proto::Tcp,
                host_ip: None,
                host_port: port,
                container_ip: "10.72.1.2".parse().unwrap(),
                container_port: 80,
                bridge: br.clone(),
            }],
        })
        .unwrap();

        // From outside through the host's address: DNAT, the client's own address is kept.
        let got = fetch(&ext.path, &format!("192.0.2.1:{port}"))
            .await
            .unwrap();
        assert_eq!(got, "peer=192.0.2.2");
        // From the host to its own non-loopback address: DNAT in the output hook (the source
        // is the address it dialled).
        let got = fetch(&host, &format!("192.0.2.1:{port}")).await.unwrap();
        assert_eq!(got, "peer=192.0.2.1");
        // From the host on 127.0.0.1: the proxy (it connects from the bridge's address).
        let got = fetch(&host, &format!("127.0.0.1:{port}")).await.unwrap();
        assert_eq!(got, "peer=10.72.1.1");
        // Hairpin: a container on the same bridge through the host's address, masqueraded so
        // the reply comes back the same way; and the container itself.
        let got = fetch(&other.path, &format!("192.0.2.1:{port}"))
            .await
            .unwrap();
        assert_eq!(got, "peer=10.72.1.1");
        let got = fetch(&web.path, &format!("192.0.2.1:{port}"))
            .await
            .unwrap();
        assert_eq!(got, "peer=10.72.1.1");

        // A second proxy on the same port fails like Docker.
        let err = proxy::publish(None, port, Proto::Tcp, "10.72.1.2:80".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("Bind for 0.0.0.0:{port} failed: port is already allocated")
        );

        // Unpublished: neither NAT nor proxy answers any more.
        fw.apply(&Ruleset {
            bridges: vec![bridge_rules(&br, "10.72.1.0/24", false)],
            ports: vec![],
        })
        .unwrap();
        drop(px);
        assert!(
            fetch(&ext.path, &format!("192.0.2.1:{port}"))
                .await
                .is_err()
        );
        assert!(fetch(&host, &format!("127.0.0.1:{port}")).await.is_err());
        // The port is free again.
        let again = proxy::publish(None, port, Proto::Tcp, "10.72.1.2:80".parse().unwrap()).await;
        assert!(again.is_ok(), "{again:?}");
    });
}

#[test]
fn bridges_are_isolated_and_internal_ones_have_no_way_out() {
    require_root!();
    in_fake_host(|scratch, _host| async move {
        let s = &scratch.sfx;
        let (a, b, int, ext_br) = (
            format!("bta{s}"),
            format!("btb{s}"),
            format!("bti{s}"),
            format!("btx{s}"),
        );
        bridge(&a, "10.73.1.1/24").await;
        bridge(&b, "10.73.2.1/24").await;
        bridge(&int, "10.73.3.1/24").await;
        bridge(&ext_br, "192.0.2.1/24").await;
        let ca = container(&scratch, "ca", &a, "10.73.1.2/24", Some("10.73.1.1")).await;
        let cb = container(&scratch, "cb", &b, "10.73.2.2/24", Some("10.73.2.1")).await;
        let ci = container(&scratch, "ci", &int, "10.73.3.2/24", Some("10.73.3.1")).await;
        let ci2 = container(&scratch, "cj", &int, "10.73.3.3/24", Some("10.73.3.1")).await;
        let ext = container(&scratch, "ext", &ext_br, "192.0.2.2/24", None).await;
        let _sa = Server::start(&ca.path, "10.73.1.2:7000");
        let _sb = Server::start(&cb.path, "10.73.2.2:7000");
        let _si = Server::start(&ci.path, "10.73.3.2:7000");
        let _se = Server::start(&ext.path, "192.0.2.2:7000");

        // Without our table the host routes between the bridges: the test can fail.
        assert_eq!(
            fetch(&ca.path, "10.73.2.2:7000").await.unwrap(),
            "peer=10.73.1.2"
        );

        // Someone else's table, which ours must never touch.
        let nft = |args: &[&str]| {
            std::process::Command::new("nft")
                .args(args)
                .status()
                .unwrap()
        };
        let other = format!("keep_{s}");
        assert!(nft(&["add", "table", "inet", &other]).success());
        assert!(nft(&["add", "chain", "inet", &other, "c"]).success());
        let fw = Firewall::new(&format!("berth_t{s}"));
        fw.apply(&Ruleset {
            bridges: vec![
                bridge_rules(&a, "10.73.1.0/24", false),
                bridge_rules(&b, "10.73.2.0/24", false),
                bridge_rules(&int, "10.73.3.0/24", true),
            ],
            ports: vec![PortForward {
                proto: Proto::Tcp,
                host_ip: None,
                host_port: 9000,
                container_ip: "10.73.2.2".parse().unwrap(),
                container_port: 7000,
                bridge: b.clone(),
            }],
        })
        .unwrap();
        // cb's published port is reachable from the other network through the host's
        // address (as from any host), not from the internal one.
        assert_eq!(
            fetch(&ca.path, "192.0.2.1:9000").await.unwrap(),
            "peer=10.73.2.1"
        );
        assert!(fetch(&ci.path, "192.0.2.1:9000").await.is_err());
        assert!(fetch(&ca.path, "10.73.2.2:7000").await.is_err());
        assert!(fetch(&cb.path, "10.73.1.2:7000").await.is_err());
        assert!(fetch(&ca.path, "10.73.3.2:7000").await.is_err());
        // Both still get out.
        assert_eq!(
            fetch(&ca.path, "192.0.2.2:7000").await.unwrap(),
            "peer=192.0.2.1"
        );
        assert_eq!(
            fetch(&cb.path, "192.0.2.2:7000").await.unwrap(),
            "peer=192.0.2.1"
        );
        // Internal: members talk, nothing leaves.
        assert_eq!(
            fetch(&ci2.path, "10.73.3.2:7000").await.unwrap(),
            "peer=10.73.3.3"
        );
        assert!(fetch(&ci.path, "192.0.2.2:7000").await.is_err());

        // Removing the table restores plain routing.
        fw.remove().unwrap();
        fw.remove().unwrap();
        assert_eq!(
            fetch(&ca.path, "10.73.2.2:7000").await.unwrap(),
            "peer=10.73.1.2"
        );
        assert!(nft(&["list", "chain", "inet", &other, "c"]).success());
    });
}

#[test]
fn detach_and_bridge_removal_leave_nothing() {
    require_root!();
    in_fake_host(|scratch, _host| async move {
        let s = &scratch.sfx;
        let br = format!("bta{s}");
        bridge(&br, "10.74.1.1/24").await;
        // Idempotent.
        bridge(&br, "10.74.1.1/24").await;
        let c = container(&scratch, "c", &br, "10.74.1.2/24", Some("10.74.1.1")).await;
        let host_if = format!("vc{}", &s[..4]);
        let names = || async {
            let out = std::process::Command::new("ip")
                .args(["-o", "link"])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert!(names().await.contains(&host_if));
        link::detach(&host_if).await.unwrap();
        link::detach(&host_if).await.unwrap();
        assert!(!names().await.contains(&host_if));
        // The container side went with it.
        let inside = berth_network::netns::run_in(&c.path, || {
            let out = std::process::Command::new("ip")
                .args(["-o", "link"])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        })
        .unwrap();
        assert!(
            inside.contains("lo:") && !inside.contains("eth0"),
            "{inside}"
        );
        link::remove_bridge(&br).await.unwrap();
        link::remove_bridge(&br).await.unwrap();
        assert!(!names().await.contains(&br));
    });
}

#[test]
fn ipv6_bridge_with_masquerade_and_published_port() {
    require_root!();
    in_fake_host(|scratch, _host| async move {
        let s = &scratch.sfx;
        let (br, ext_br) = (format!("bta{s}"), format!("btx{s}"));
        link::ensure_bridge(&link::BridgeConfig {
            device: br.clone(),
            addresses: vec![
                "10.78.1.1/24".parse().unwrap(),
                "fd78::1/64".parse().unwrap(),
            ],
            mtu: Some(1400),
        })
        .await
        .unwrap();
        bridge(&ext_br, "2001:db8::1/64").await;
        let ns = Ns::new(&scratch, "c6");
        link::attach(&link::EndpointConfig {
            bridge: br.clone(),
            host_if: format!("vc6{s}"),
            netns: ns.path.clone(),
            container_if: "eth0".into(),
            mac: [0x02, 0x42, 0x0a, 0x4e, 0x01, 0x02],
            addresses: vec![
                "10.78.1.2/24".parse().unwrap(),
                "fd78::2/64".parse().unwrap(),
            ],
            gateways: vec!["10.78.1.1".parse().unwrap(), "fd78::1".parse().unwrap()],
            mtu: Some(1400),
        })
        .await
        .unwrap();
        let ext = container(&scratch, "ext", &ext_br, "2001:db8::2/64", None).await;
        let _srv_ext = Server::start(&ext.path, "[2001:db8::2]:7000");
        let _srv_c = Server::start(&ns.path, "[fd78::2]:80");
        Firewall::new(&format!("berth_t{s}"))
            .apply(&Ruleset {
                bridges: vec![BridgeRules {
                    device: br.clone(),
                    subnets: vec![
                        "10.78.1.0/24".parse().unwrap(),
                        "fd78::/64".parse().unwrap(),
                    ],
                    internal: false,
                    masquerade: true,
                    icc: true,
                }],
                ports: vec![PortForward {
                    proto: Proto::Tcp,
                    host_ip: None,
                    host_port: 8080,
                    container_ip: "fd78::2".parse().unwrap(),
                    container_port: 80,
                    bridge: br.clone(),
                }],
            })
            .unwrap();
        assert_eq!(
            fetch(&ns.path, "[2001:db8::2]:7000").await.unwrap(),
            "peer=2001:db8::1"
        );
        assert_eq!(
            fetch(&ext.path, "[2001:db8::1]:8080").await.unwrap(),
            "peer=2001:db8::2"
        );
        // MAC and MTU made it inside.
        let inside = berth_network::netns::run_in(&ns.path, || {
            let out = std::process::Command::new("ip")
                .args(["-o", "link", "show", "eth0"])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        })
        .unwrap();
        assert!(
            inside.contains("mtu 1400") && inside.contains("02:42:0a:4e:01:02"),
            "{inside}"
        );
    });
}

#[test]
fn udp_proxy_relays_each_client() {
    require_root!();
    in_fake_host(|scratch, host| async move {
        let s = &scratch.sfx;
        let br = format!("bta{s}");
        bridge(&br, "10.77.1.1/24").await;
        let c = container(&scratch, "u", &br, "10.77.1.2/24", Some("10.77.1.1")).await;
        let echo =
            berth_network::netns::run_in(&c.path, || std::net::UdpSocket::bind("10.77.1.2:5300"))
                .unwrap()
                .unwrap();
        echo.set_read_timeout(Some(std::time::Duration::from_millis(20)))
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let echo_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut buf) {
                    let mut reply = b"echo:".to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = echo.send_to(&reply, from);
                }
            }
        });
        let px = proxy::publish(
            Some("127.0.0.1".parse().unwrap()),
            0,
            Proto::Udp,
            "10.77.1.2:5300".parse().unwrap(),
        )
        .await
        .unwrap();
        let port = px.host_port();
        let replies = berth_network::netns::run_in_async(&host, move || {
            let mut got = Vec::new();
            for msg in ["one", "two"] {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
                    .unwrap();
                s.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
                let mut buf = [0u8; 100];
                let n = s.recv(&mut buf).unwrap();
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            got
        })
        .await
        .unwrap();
        assert_eq!(replies, ["echo:one", "echo:two"]);
        drop(px);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        echo_thread.join().unwrap();
    });
}

#[test]
fn failed_attach_leaves_no_veth() {
    require_root!();
    in_fake_host(|scratch, _host| async move {
        let s = &scratch.sfx;
        let br = format!("bta{s}");
        bridge(&br, "10.79.1.1/24").await;
        let ns = Ns::new(&scratch, "f");
        let host_if = format!("vf{s}");
        // An IPv4 gateway outside every subnet of the interface cannot be routed: the last
        // step fails after the veth was made and moved.
        let err = link::attach(&link::EndpointConfig {
            bridge: br.clone(),
            host_if: host_if.clone(),
            netns: ns.path.clone(),
            container_if: "eth0".into(),
            mac: [0x02, 0x42, 0, 0, 0, 9],
            addresses: vec!["10.79.1.9/24".parse().unwrap()],
            gateways: vec!["10.80.0.1".parse().unwrap()],
            mtu: None,
        })
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("default route via 10.80.0.1"),
            "{err}"
        );
        let out = std::process::Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap();
        let links = String::from_utf8(out.stdout).unwrap();
        assert!(!links.contains(&host_if), "{links}");
        // A missing bridge or netns fails before anything is made.
        let mut ep = link::EndpointConfig {
            bridge: format!("nobr{s}"),
            host_if: host_if.clone(),
            netns: ns.path.clone(),
            container_if: "eth0".into(),
            mac: [0x02, 0x42, 0, 0, 0, 9],
            addresses: vec![],
            gateways: vec![],
            mtu: None,
        };
        assert!(link::attach(&ep).await.is_err());
        ep.bridge = br.clone();
        ep.netns = scratch.dir.join("missing");
        assert!(link::attach(&ep).await.is_err());
        let out = std::process::Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap();
        assert!(!String::from_utf8(out.stdout).unwrap().contains(&host_if));
    });
}
