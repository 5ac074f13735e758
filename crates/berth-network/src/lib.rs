//! Berth's networks.
//!
//! Two halves: the data plane (network namespaces, bridges and veth pairs over netlink, the
//! nftables table, the port proxy, the embedded DNS server) applies plain descriptions of what
//! must exist; the control plane (network records, IPAM, endpoints) decides what that is and
//! remembers it across daemon restarts.
