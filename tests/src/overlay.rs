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
