//! What a daemon's overlay data plane leaves on the host, for the overlay and stack tests:
//! the routing mesh's host table and veth (named after the exec root, as berthd names them),
//! the overlay netns under `<exec-root>/overlay`, and a guard that deletes the mesh's host
//! table and veth when a test ends, also on failure.

use std::process::{Command, Stdio};

use crate::Daemon;

fn tag(d: &Daemon) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(d.exec_root().to_string_lossy().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..10].to_string()
}

/// The routing mesh's host nftables table of a daemon.
pub fn mesh_table(d: &Daemon) -> String {
    format!("berth_mesh_{}", tag(d))
}

/// The routing mesh's host veth of a daemon (`bm<hash>` ↔ the ingress netns' `mesh0`).
pub fn mesh_link(d: &Daemon) -> String {
    format!("bm{}", tag(d))
}

fn output(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The host's nftables tables whose names contain `part`.
pub fn host_nft_tables(part: &str) -> String {
    output("nft", &["list", "tables"])
        .lines()
        .filter(|l| l.contains(part))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the daemon's overlays left on the host, one line each; empty when nothing: overlay
/// netns, the mesh's table and veth, a `berth_lb` table or a VXLAN device in the host netns
/// (both belong in other namespaces only).
pub fn leftovers(d: &Daemon) -> Vec<String> {
    let mut left = Vec::new();
    if let Ok(entries) = std::fs::read_dir(d.exec_root().join("overlay")) {
        for e in entries.flatten() {
            left.push(format!("overlay netns {}", e.path().display()));
        }
    }
    let tables = output("nft", &["list", "tables"]);
    for t in [mesh_table(d), "berth_lb".to_string()] {
        if tables
            .lines()
            .any(|l| l.split_whitespace().last() == Some(t.as_str()))
        {
            left.push(format!("nftables table {t}"));
        }
    }
    let links = output("ip", &["-o", "link", "show"]);
    let link = mesh_link(d);
    if links.contains(&format!(" {link}@")) || links.contains(&format!(" {link}:")) {
        left.push(format!("link {link}"));
    }
    for l in output("ip", &["-o", "link", "show", "type", "vxlan"]).lines() {
        left.push(format!("vxlan device in the host netns: {l}"));
    }
    left
}

/// Deletes a daemon's mesh table and veth when dropped (after the daemon: declare it first).
pub struct MeshGuard(pub Option<(String, String)>);

impl MeshGuard {
    pub fn of(d: &Daemon) -> MeshGuard {
        MeshGuard(Some((mesh_table(d), mesh_link(d))))
    }
}

impl Drop for MeshGuard {
    fn drop(&mut self) {
        if let Some((table, link)) = &self.0 {
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", table])
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("ip")
                .args(["link", "delete", link])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `docker network create -d overlay --attachable NAME` (the docker CLI must be there); the
/// network's id.
pub fn create_attachable(d: &Daemon, name: &str) -> String {
    d.docker(&["network", "create", "-d", "overlay", "--attachable", name])
        .expect("docker CLI")
        .success()
        .stdout
        .trim()
        .to_string()
}

/// An HTTP GET to a port on the host's loopback (a published port): the body's last line,
/// when it is one word (a task's hostname).
pub fn host_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let last = body.trim().lines().last()?.trim().to_string();
    (!last.is_empty() && !last.contains(' ')).then_some(last)
}

/// A web server in a busybox container that answers with the container's hostname.
pub const HTTPD: &str =
    "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www";

/// An HTTP GET from inside a container (busybox nc, through the docker CLI): the body's last
/// line, when it is one word (a hostname).
pub fn get_from(d: &Daemon, container: &str, host: &str, port: u16) -> Option<String> {
    let cmd = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} {port} | tail -1");
    let out = d.docker(&["exec", container, "sh", "-c", &cmd])?;
    let body = out.stdout.trim().to_string();
    (!body.is_empty() && !body.contains(' ')).then_some(body)
}

/// `docker ARGS` against `d`, which must be there and succeed: its stdout.
pub fn docker_ok(d: &Daemon, args: &[&str]) -> String {
    d.docker(args).expect("docker CLI").success().stdout
}

/// Removes a swarm network through `m` once nothing holds an address on it any more (`network
/// rm` is refused until the tasks and containers that used it are released), then waits until
/// no node of `c` keeps an overlay netns: the end of every overlay test on a cluster.
pub fn remove_network_and_wait_clean(c: &crate::Cluster, m: &Daemon, name: &str) {
    let within = std::time::Duration::from_secs(90);
    let every = std::time::Duration::from_millis(250);
    crate::swarm_setup::poll(&format!("{name} removable"), within, every, || {
        m.docker(&["network", "rm", name])
            .is_some_and(|o| o.code == 0)
    });
    for n in &c.nodes {
        crate::swarm_setup::poll("no overlay leftovers", within, every, || {
            leftovers(n).iter().all(|l| !l.starts_with("overlay netns"))
        });
    }
}
