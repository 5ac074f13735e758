//! A demotion the node missed: the leader marks a manager `demoting` in the store, which the
//! manager normally reads in its own replica before it is taken out of the Raft membership.
//! A manager cut off meanwhile never gets that entry: once out of the membership no leader
//! sends it anything, and it would stay a leaderless manager for good. So a manager without
//! a leader for a while asks the other managers for its own node object
//! ([`crate::transport::Request::OwnNode`]), and becomes a worker if the cluster says so.

use std::time::{Duration, Instant};

use super::Active;
use crate::transport::Request;
use crate::types::Node;

/// How long a manager goes without a leader before it asks (an election takes a few
/// seconds at most), and how often it asks again.
const ASK_AFTER: Duration = Duration::from_secs(5);

/// Whether the cluster demoted this manager while it was out of reach. `leaderless` is when
/// it last had a leader (or last asked).
pub(super) async fn missed(a: &Active, leaderless: &mut Option<Instant>) -> bool {
    if a.raft.metrics().borrow().current_leader.is_some() {
        *leaderless = None;
        return false;
    }
    let since = *leaderless.get_or_insert_with(Instant::now);
    if since.elapsed() < ASK_AFTER {
        return false;
    }
    *leaderless = Some(Instant::now());
    let Some(client) = a.peers.client() else {
        return false;
    };
    let me = a.local.node_id.clone();
    let mut addrs: Vec<String> = a.store.view(|s| {
        s.nodes
            .values()
            .filter(|n| n.meta.id != me)
            .filter_map(|n| n.manager_status.as_ref().map(|m| m.addr.clone()))
            .collect()
    });
    addrs.extend(a.local.managers.iter().cloned());
    addrs.sort();
    addrs.dedup();
    let req = Request::OwnNode(me.clone());
    for addr in addrs {
        let answer =
            crate::transport::call_as::<Option<Node>>(&client, &addr, &req, Duration::from_secs(3))
                .await;
        match answer {
            // The leader's word: a worker now (or still being demoted, and this manager out
            // of the membership: the leader only clears the status after removing it).
            Ok(Some(n)) => return demoted(&n, a.local.raft_id),
            // Removed altogether, or not the leader: nothing to follow here.
            Ok(None) | Err(_) => continue,
        }
    }
    false
}

fn demoted(n: &Node, raft_id: u64) -> bool {
    n.spec.role == "worker"
        && n.manager_status
            .as_ref()
            .is_none_or(|m| m.raft_id != raft_id || m.reachability == super::cluster::DEMOTING)
}
