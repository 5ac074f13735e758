//! What `docker inspect` shows of a container's overlay endpoints
//! (`NetworkSettings.Networks.<overlay>`): the overlay agent records them at each pass; the
//! network adapter the container service asks for a container's settings adds them beside its
//! local networks (`docker_gwbridge`), as dockerd shows a task's or an attached container's.

use std::collections::BTreeMap;
use std::sync::Mutex;

use berth_api::models::container::{EndpointSettings, NetworkSettings};

/// Container id -> overlay network name -> endpoint (one daemon per process).
static TABLE: Mutex<BTreeMap<String, BTreeMap<String, EndpointSettings>>> =
    Mutex::new(BTreeMap::new());

/// Replaces the table (the overlay agent's pass).
pub fn set(table: BTreeMap<String, BTreeMap<String, EndpointSettings>>) {
    *TABLE.lock().unwrap_or_else(|e| e.into_inner()) = table;
}

/// Drops a stopped container's endpoints (until the next pass would).
pub fn forget(id: &str) {
    TABLE.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
}

/// Adds a container's overlay endpoints to its settings.
pub fn extend(id: &str, settings: &mut NetworkSettings) {
    let table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(endpoints) = table.get(id) {
        for (name, ep) in endpoints {
            settings
                .networks
                .entry(name.clone())
                .or_insert_with(|| ep.clone());
        }
    }
}

/// One endpoint as dockerd shows it (overlays have no gateway: the way out is
/// `docker_gwbridge`'s).
pub fn endpoint(
    network_id: &str,
    container: &str,
    addr: ipnet::IpNet,
    addr6: Option<ipnet::IpNet>,
) -> EndpointSettings {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{container}/{network_id}").as_bytes());
    EndpointSettings {
        network_id: network_id.to_string(),
        endpoint_id: d.iter().map(|b| format!("{b:02x}")).collect(),
        mac_address: berth_network::overlay::mac_of(addr.addr()),
        ip_address: addr.addr().to_string(),
        ip_prefix_len: addr.prefix_len() as i64,
        global_ipv6_address: addr6.map(|a| a.addr().to_string()).unwrap_or_default(),
        global_ipv6_prefix_len: addr6.map(|a| a.prefix_len() as i64).unwrap_or_default(),
        ..Default::default()
    }
}
