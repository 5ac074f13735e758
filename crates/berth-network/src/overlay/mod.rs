//! Overlay networks' data plane on one node (see docs/architecture.md, "Overlay networks").

use std::net::IpAddr;

/// The MAC an overlay endpoint gets: derived from its address, as Docker's
/// (`02:42:` + the IPv4 bytes), so that every node computes its peers' MACs from the cluster
/// state without asking them.
pub fn mac_bytes(ip: IpAddr) -> [u8; 6] {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            [0x02, 0x42, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [0x02, 0x42, o[12], o[13], o[14], o[15]]
        }
    }
}

/// [`mac_bytes`] as text (`02:42:0a:00:01:03`).
pub fn mac_of(ip: IpAddr) -> String {
    mac_bytes(ip)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
