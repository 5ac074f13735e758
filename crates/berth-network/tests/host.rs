//! The data plane in the machine's real host netns (unique names and a subnet no route uses),
//! as berthd will run it: bridge, veth, firewall table, published port over the proxy and NAT.

mod common;

use std::net::IpAddr;

use berth_network::firewall::{BridgeRules, Firewall, PortForward, Ruleset};
use berth_network::link::{self, BridgeConfig};
use berth_network::{IpNet, Proto, proxy};
use common::*;

/// Removes a bridge even when the test panics (from a thread of its own: Drop may run inside
/// the test's runtime, where blocking on another is not allowed).
struct BridgeGuard(String);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(link::remove_bridge(&name))
        })
        .join();
    }
}

struct FirewallGuard(Firewall);

impl Drop for FirewallGuard {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}

/// A /24 in 10.240.0.0/12 that no host route or address touches.
async fn free_subnet() -> IpNet {
    let mut taken = link::host_routes().await.unwrap();
    taken.extend(
        link::host_addresses()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.trunc()),
    );
    loop {
        let r = rand::random::<u16>();
        let net: IpNet = format!("10.{}.{}.0/24", 240 + (r >> 12), r & 0xff)
            .parse()
            .unwrap();
        if !taken
            .iter()
            .any(|t| t.contains(&net.network()) || net.contains(&t.network()))
        {
            return net;
        }
    }
}

fn host_of(net: IpNet, n: u8) -> IpAddr {
    match net.network() {
        IpAddr::V4(v4) => {
            let mut o = v4.octets();
            o[3] = n;
            IpAddr::from(o)
        }
        IpAddr::V6(_) => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_port_on_the_real_host() {
    require_root!();
    let scratch = Scratch::new();
    let s = &scratch.sfx;
    let net = free_subnet().await;
    let (gw, ip) = (host_of(net, 1), host_of(net, 2));
    let br = format!("bth{s}");
    let _bridge = BridgeGuard(br.clone());
    link::ensure_bridge(&BridgeConfig {
        device: br.clone(),
        addresses: vec![IpNet::new(gw, 24).unwrap()],
        mtu: None,
    })
    .await
    .unwrap();
    let c = container(
        &scratch,
        "c",
        &br,
        &format!("{ip}/24"),
        Some(&gw.to_string()),
    )
    .await;
    let _srv = Server::start(&c.path, &format!("{ip}:80"));

    let px = proxy::publish(
        Some("127.0.0.1".parse().unwrap()),
        0,
        Proto::Tcp,
        (ip, 80).into(),
    )
    .await
    .unwrap();
    let port = px.host_port();
    let table = format!("berth_t{s}");
    let fw = FirewallGuard(Firewall::new(&table));
    fw.0.apply(&Ruleset {
        bridges: vec![BridgeRules {
            device: br.clone(),
            subnets: vec![net],
            internal: false,
            masquerade: true,
            icc: true,
        }],
        ports: vec![PortForward {
            proto: Proto::Tcp,
            host_ip: Some(gw),
            host_port: port,
            container_ip: ip,
            container_port: 80,
            bridge: br.clone(),
        }],
    })
    .unwrap();
    let listed = std::process::Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()
        .unwrap();
    assert!(listed.status.success());

    let me = std::path::PathBuf::from("/proc/self/ns/net");
    assert_eq!(
        fetch(&me, &format!("127.0.0.1:{port}")).await.unwrap(),
        format!("peer={gw}")
    );
    assert_eq!(
        fetch(&me, &format!("{gw}:{port}")).await.unwrap(),
        format!("peer={gw}")
    );

    drop(px);
    fw.0.remove().unwrap();
    let listed = std::process::Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()
        .unwrap();
    assert!(!listed.status.success());
    let out = std::process::Command::new("iptables")
        .args(["-w", "-S"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&format!("berth:{table}")));
}
