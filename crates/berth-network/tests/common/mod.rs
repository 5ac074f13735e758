//! Throw-away network plumbing for the data-plane tests.
//!
//! Every scenario runs inside its own "host" netns ([`FakeHost`]): bridges, nft tables,
//! iptables rules, sysctls and proxies live there and vanish with it, so concurrent tests (and
//! other people's daemons on this machine) never see each other. Container netns files live
//! in a scratch directory; guards remove them even when a test fails.

#![allow(dead_code)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_network::link::{self, BridgeConfig, EndpointConfig};
use berth_network::{IpNet, netns};

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[macro_export]
macro_rules! require_root {
    () => {
        if !common::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// Six random hex digits for names nobody else uses.
pub fn suffix() -> String {
    format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// A scratch directory holding netns files; removed (after its netns) on drop.
pub struct Scratch {
    pub dir: PathBuf,
    pub sfx: String,
}

impl Scratch {
    pub fn new() -> Scratch {
        let sfx = suffix();
        let dir = std::env::temp_dir().join(format!("berth-nettest-{sfx}"));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir, sfx }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let _ = netns::remove(&e.path());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A netns removed on drop.
pub struct Ns {
    pub path: PathBuf,
}

impl Ns {
    pub fn new(scratch: &Scratch, name: &str) -> Ns {
        let path = scratch.dir.join(name);
        netns::create(&path).unwrap();
        Ns { path }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = netns::remove(&self.path);
    }
}

/// Runs `f` on a current-thread runtime inside a new netns that plays the host.
pub fn in_fake_host<F, Fut>(f: F)
where
    F: FnOnce(Arc<Scratch>, PathBuf) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let scratch = Arc::new(Scratch::new());
    let host = Ns::new(&scratch, "host");
    let path = host.path.clone();
    let s2 = scratch.clone();
    netns::run_in(&host.path, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(f(s2, path));
    })
    .unwrap();
    drop(host);
}

pub async fn bridge(dev: &str, gw: &str) {
    link::ensure_bridge(&BridgeConfig {
        device: dev.into(),
        addresses: vec![gw.parse().unwrap()],
        mtu: None,
    })
    .await
    .unwrap();
}

/// A "container": a netns with one interface on `bridge`.
pub async fn container(
    scratch: &Scratch,
    name: &str,
    bridge: &str,
    ip: &str,
    gw: Option<&str>,
) -> Ns {
    let ns = Ns::new(scratch, name);
    let ip: IpNet = ip.parse().unwrap();
    let mut mac = [0x02, 0x42, 0, 0, 0, 0];
    if let IpAddr::V4(v4) = ip.addr() {
        mac[2..].copy_from_slice(&v4.octets());
    }
    link::attach(&EndpointConfig {
        bridge: bridge.into(),
        host_if: format!("v{name}{}", &scratch.sfx[..4]),
        netns: ns.path.clone(),
        container_if: "eth0".into(),
        mac,
        addresses: vec![ip],
        gateways: gw.into_iter().map(|g| g.parse().unwrap()).collect(),
        mtu: None,
    })
    .await
    .unwrap();
    ns
}

/// A TCP server in a netns answering each connection with "peer=<client ip>" and closing.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(ns: &Path, addr: &str) -> Server {
        let addr: SocketAddr = addr.parse().unwrap();
        let listener = netns::run_in(ns, move || TcpListener::bind(addr))
            .unwrap()
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = write!(s, "peer={}", peer.ip());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from inside `ns` to `addr` and reads what the server says.
pub async fn fetch(ns: &Path, addr: &str) -> std::io::Result<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    netns::run_in_async(ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(1500))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .await
    .unwrap()
}
