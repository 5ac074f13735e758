//! Times the data plane's operations and prints them: netns create/remove, bridge setup,
//! endpoint attach/detach, firewall apply/remove, port proxy publish. Runs as root inside a
//! throw-away netns that plays the host, so nothing on the machine is touched.
//!
//! `cargo run --release -p berth-network --example dataplane_bench [ROUNDS]`

use std::path::Path;
use std::time::{Duration, Instant};

use berth_network::firewall::{BridgeRules, Firewall, PortForward, Ruleset};
use berth_network::link::{self, BridgeConfig, EndpointConfig};
use berth_network::{Proto, netns, proxy};

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let dir = std::env::temp_dir().join(format!("berth-netbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let host = dir.join("host");
    netns::create(&host).unwrap();
    let d2 = dir.clone();
    let result = netns::run_in(&host, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(bench(&d2, rounds))
    });
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let _ = netns::remove(&e.path());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap();
}

/// Sends `mib` MiB to `addr` and waits for the server's "done"; MiB/s.
fn throughput(addr: &str, mib: usize) -> f64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let chunk = vec![0x5au8; 1024 * 1024];
    let t = Instant::now();
    for _ in 0..mib {
        s.write_all(&chunk).unwrap();
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut done = Vec::new();
    s.read_to_end(&mut done).unwrap();
    assert_eq!(done, b"done");
    mib as f64 / t.elapsed().as_secs_f64()
}

struct Series(&'static str, Vec<Duration>);

impl Series {
    fn print(mut self) {
        self.1.sort();
        let n = self.1.len();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{:<34} n={:<4} median {:>8.3} ms   p90 {:>8.3} ms   min {:>8.3} ms",
            self.0,
            n,
            ms(self.1[n / 2]),
            ms(self.1[(n * 9 / 10).min(n - 1)]),
            ms(self.1[0])
        );
    }
}

async fn bench(dir: &Path, rounds: usize) {
    let (mut create, mut remove) = (
        Series("netns create", vec![]),
        Series("netns remove", vec![]),
    );
    for i in 0..rounds {
        let p = dir.join(format!("n{i}"));
        let t = Instant::now();
        netns::create(&p).unwrap();
        create.1.push(t.elapsed());
        let t = Instant::now();
        netns::remove(&p).unwrap();
        remove.1.push(t.elapsed());
    }
    create.print();
    remove.print();

    let t = Instant::now();
    link::ensure_bridge(&BridgeConfig {
        device: "bbench0".into(),
        addresses: vec!["10.90.0.1/16".parse().unwrap()],
        mtu: None,
    })
    .await
    .unwrap();
    Series("bridge create", vec![t.elapsed()]).print();

    let (mut att, mut det) = (
        Series("endpoint attach (veth+netns cfg)", vec![]),
        Series("endpoint detach", vec![]),
    );
    for i in 0..rounds {
        let p = dir.join(format!("c{i}"));
        netns::create(&p).unwrap();
        let ep = EndpointConfig {
            bridge: "bbench0".into(),
            host_if: format!("vbench{i}"),
            netns: p.clone(),
            container_if: "eth0".into(),
            mac: [0x02, 0x42, 10, 90, 1, i as u8],
            addresses: vec![format!("10.90.1.{}/16", i + 2).parse().unwrap()],
            gateways: vec!["10.90.0.1".parse().unwrap()],
            mtu: None,
        };
        let t = Instant::now();
        link::attach(&ep).await.unwrap();
        att.1.push(t.elapsed());
        let t = Instant::now();
        link::detach(&ep.host_if).await.unwrap();
        det.1.push(t.elapsed());
        netns::remove(&p).unwrap();
    }
    att.print();
    det.print();

    let fw = Firewall::new("berth_bench");
    for (label, bridges, ports) in [
        ("firewall apply (1 bridge, 1 port)", 1usize, 1usize),
        ("firewall apply (10 bridges, 100 ports)", 10, 100),
    ] {
        let rs = Ruleset {
            bridges: (0..bridges)
                .map(|b| BridgeRules {
                    device: format!("bbench{b}"),
                    subnets: vec![format!("10.{}.0.0/16", 90 + b).parse().unwrap()],
                    internal: false,
                    masquerade: true,
                    icc: true,
                })
                .collect(),
            ports: (0..ports)
                .map(|p| PortForward {
                    proto: Proto::Tcp,
                    host_ip: None,
                    host_port: 20000 + p as u16,
                    container_ip: "10.90.1.2".parse().unwrap(),
                    container_port: 80,
                    bridge: "bbench0".into(),
                })
                .collect(),
        };
        let mut s = Series(label, vec![]);
        for _ in 0..rounds {
            let t = Instant::now();
            fw.apply(&rs).unwrap();
            s.1.push(t.elapsed());
        }
        s.print();
    }
    let t = Instant::now();
    fw.remove().unwrap();
    Series("firewall remove", vec![t.elapsed()]).print();

    let mut publish = Series("proxy publish (tcp, port 0)", vec![]);
    for _ in 0..rounds {
        let t = Instant::now();
        let px = proxy::publish(None, 0, Proto::Tcp, "10.90.1.2:80".parse().unwrap())
            .await
            .unwrap();
        publish.1.push(t.elapsed());
        drop(px);
    }
    publish.print();

    // Throughput host -> container: to its address, through NAT (host's own bridge address),
    // and through the proxy on 127.0.0.1.
    let c = dir.join("tput");
    netns::create(&c).unwrap();
    link::attach(&EndpointConfig {
        bridge: "bbench0".into(),
        host_if: "vbenchtput".into(),
        netns: c.clone(),
        container_if: "eth0".into(),
        mac: [0x02, 0x42, 10, 90, 2, 2],
        addresses: vec!["10.90.2.2/16".parse().unwrap()],
        gateways: vec!["10.90.0.1".parse().unwrap()],
        mtu: None,
    })
    .await
    .unwrap();
    let listener = netns::run_in(&c, || std::net::TcpListener::bind("10.90.2.2:5001"))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = std::io::Read::read(&mut conn, &mut buf) {
                    if n == 0 {
                        break;
                    }
                }
                let _ = std::io::Write::write_all(&mut conn, b"done");
            });
        }
    });
    let px = proxy::publish(
        Some("127.0.0.1".parse().unwrap()),
        0,
        Proto::Tcp,
        "10.90.2.2:5001".parse().unwrap(),
    )
    .await
    .unwrap();
    let port = px.host_port();
    fw.apply(&Ruleset {
        bridges: vec![BridgeRules {
            device: "bbench0".into(),
            subnets: vec!["10.90.0.0/16".parse().unwrap()],
            internal: false,
            masquerade: true,
            icc: true,
        }],
        ports: vec![PortForward {
            proto: Proto::Tcp,
            host_ip: None,
            host_port: port,
            container_ip: "10.90.2.2".parse().unwrap(),
            container_port: 5001,
            bridge: "bbench0".into(),
        }],
    })
    .unwrap();
    let host = dir.join("host");
    for (label, addr) in [
        (
            "tcp host -> container (direct)",
            "10.90.2.2:5001".to_string(),
        ),
        (
            "tcp host -> published port (NAT)",
            format!("10.90.0.1:{port}"),
        ),
        ("tcp host -> 127.0.0.1 (proxy)", format!("127.0.0.1:{port}")),
    ] {
        let h = host.clone();
        let mbps = netns::run_in_async(&h, move || throughput(&addr, 1024))
            .await
            .unwrap();
        println!("{label:<38} {mbps:>8.0} MiB/s");
    }
    drop(px);
    fw.remove().unwrap();
    link::remove_bridge("bbench0").await.unwrap();
}
