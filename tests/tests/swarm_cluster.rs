//! Swarm mode across several daemons, each in its own network namespace (the harness in
//! `berth_e2e::cluster`).

use berth_e2e::{Cluster, require_root};

/// The harness itself: hosts with their own hostnames and addresses that reach each other,
/// links that can be cut and partitions that can be made and healed, daemons that survive
/// SIGKILL and restart.
#[test]
fn harness_hosts_links_and_restarts() {
    require_root!();
    let mut c = Cluster::new(3, &[]);
    for n in &c.nodes {
        let info = n.api().get("/info").json();
        assert_eq!(
            info["Name"],
            n.hostname.as_str(),
            "each daemon its own hostname"
        );
    }
    let ping = |c: &Cluster, from: usize, to: usize| {
        c.node(from)
            .exec(&["busybox", "ping", "-c", "1", "-W", "1", &c.node(to).ip])
            .code
            == 0
    };
    assert!(ping(&c, 0, 1) && ping(&c, 1, 2));
    c.cut(1);
    assert!(!ping(&c, 0, 1), "a cut link drops traffic");
    assert!(ping(&c, 0, 2));
    c.heal(1);
    assert!(ping(&c, 0, 1));
    c.partition(&[0]);
    assert!(!ping(&c, 0, 1) && !ping(&c, 0, 2));
    assert!(ping(&c, 1, 2), "the majority side still talks");
    c.heal_partition();
    assert!(ping(&c, 0, 2));
    let old = c.node(2).pid().unwrap();
    c.node_mut(2).kill_hard();
    c.node_mut(2).start_again();
    assert_ne!(c.node(2).pid().unwrap(), old);
    let info = c.node(2).api().get("/info").json();
    assert_eq!(info["Name"], c.node(2).hostname.as_str());
}
