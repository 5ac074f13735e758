//! Several `berthd` on one machine as separate hosts: each in its own network namespace with
//! its own hostname, joined by veths to a bridge that lives in a "switch" namespace the test
//! makes, on a /24 of its own. Each daemon has its own data root, exec root and unix socket
//! (the test drives it from the host through that socket, as any [`Daemon`]).
//!
//! Daemons start under `nsenter --net=/run/netns/N unshare --uts sh -c 'hostname H; exec
//! berthd ...'`: `ip netns exec` would remount /sys and hide the cgroup v1 mounts. The PID the
//! test holds is berthd's own (nsenter and unshare exec, they do not fork), so SIGTERM and
//! SIGKILL reach the daemon. Dropping a [`Cluster`] stops the daemons (by PID), then deletes
//! the namespaces (their veths, bridges and nftables tables go with them), also on panic.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::daemon::{Daemon, Output, run};

static CLUSTER_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One daemon of a [`Cluster`]: a host with its namespace, address and hostname.
pub struct Node {
    pub daemon: Daemon,
    /// Its network namespace (`/run/netns/<netns>`).
    pub netns: String,
    /// Its address on the cluster's /24.
    pub ip: String,
    pub hostname: String,
    /// Its veth's end in the switch namespace (what [`Cluster::cut`] sets down).
    link: String,
}

impl std::ops::Deref for Node {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.daemon
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}

impl Node {
    /// `ip:port`, e.g. the swarm address of this node (`addr(2377)`).
    pub fn addr(&self, port: u16) -> String {
        format!("{}:{port}", self.ip)
    }

    /// Runs a command inside this node's network namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns))
            .args(args);
        run(cmd, None)
    }
}

/// Hosts on one switch. Nodes are dropped (daemons stopped) before the namespaces go.
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// The switch namespace holding the bridge `br0` and the nodes' veth ends.
    switch: String,
    /// Every namespace made so far (the switch first), deleted on drop.
    made: Vec<String>,
    /// The first three octets of the cluster's /24.
    prefix: String,
    /// Daemon flags every node gets (e.g. a short `--dispatcher-heartbeat`).
    extra_args: Vec<String>,
    id: String,
}

/// Runs `ip ARGS`, panicking with its output when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// `n` hosts, each running a daemon with `extra_args` (and nothing else in common).
    pub fn new(n: usize, extra_args: &[&str]) -> Cluster {
        let k = CLUSTER_COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let id = format!("{:x}{k}", pid & 0xff_ffff);
        // Unique per test process and cluster; only ever routed inside the namespaces.
        let prefix = format!("10.{}.{}", 200 + pid % 50, (pid / 50 + k as u32 * 7) % 256);
        let mut cluster = Cluster {
            nodes: Vec::new(),
            switch: format!("bcsw-{id}"),
            made: Vec::new(),
            prefix,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            id,
        };
        let sw = cluster.switch.clone();
        ip(&["netns", "add", &sw]);
        cluster.made.push(sw.clone());
        ip(&["-n", &sw, "link", "set", "lo", "up"]);
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for _ in 0..n {
            cluster.add_node();
        }
        cluster
    }

    /// Adds one more host (namespace, veth, address, daemon) and answers its index.
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let netns = format!("bcn-{}-{i}", self.id);
        let link = format!("v{i}");
        let sw = self.switch.clone();
        ip(&["netns", "add", &netns]);
        self.made.push(netns.clone());
        ip(&[
            "-n", &sw, "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns",
            &netns,
        ]);
        ip(&["-n", &sw, "link", "set", &link, "master", "br0", "up"]);
        let addr = format!("{}.{}", self.prefix, i + 1);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        let hostname = format!("node{i}-{}", self.id);
        let wrapper = vec![
            "nsenter".to_string(),
            format!("--net=/run/netns/{netns}"),
            "unshare".into(),
            "--uts".into(),
            "sh".into(),
            "-c".into(),
            format!("hostname {hostname} && exec \"$@\""),
            "sh".into(),
        ];
        let extra: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        let daemon = Daemon::start_wrapped(&extra, wrapper, |_| {});
        self.nodes.push(Node {
            daemon,
            netns,
            ip: addr,
            hostname,
            link,
        });
        i
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }

    /// Cuts node `i` off the switch (its link goes down), as a pulled cable.
    pub fn cut(&self, i: usize) {
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &self.nodes[i].link,
            "down",
        ]);
    }

    /// Plugs node `i` back in.
    pub fn heal(&self, i: usize) {
        ip(&["-n", &self.switch, "link", "set", &self.nodes[i].link, "up"]);
    }

    /// Splits the switch in two with nftables (bridge family, in the switch namespace):
    /// nodes of `side` and the others no longer reach each other; each side still works.
    pub fn partition(&self, side: &[usize]) {
        let mut rules = String::from(
            "table bridge partition {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n",
        );
        for &a in side {
            for b in (0..self.nodes.len()).filter(|b| !side.contains(b)) {
                let (la, lb) = (&self.nodes[a].link, &self.nodes[b].link);
                rules.push_str(&format!("  iifname \"{la}\" oifname \"{lb}\" drop\n"));
                rules.push_str(&format!("  iifname \"{lb}\" oifname \"{la}\" drop\n"));
            }
        }
        rules.push_str(" }\n}\n");
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.switch))
            .args(["nft", "-f", "-"]);
        run(cmd, Some(rules.as_bytes())).success();
    }

    /// Ends a [`Cluster::partition`].
    pub fn heal_partition(&self) {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.switch)).args([
            "nft",
            "delete",
            "table",
            "bridge",
            "partition",
        ]);
        run(cmd, None).success();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Daemons first (by their PIDs; their containers' cleanup needs the namespaces).
        self.nodes.clear();
        for ns in self.made.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
