//! Address management of bridge networks: pools (subnet, optional `--ip-range`, gateway,
//! auxiliary addresses), allocation in Docker's sequential "round robin" order so that an
//! address just released is not handed out again at once, explicit `--ip` requests, and the
//! choice of a free subnet from the default pools.
//!
//! Which addresses are in use is not stored here: it is derived from the endpoints (the
//! store's container records) each time the daemon starts, so a crash cannot leak a lease.
//! Only the cursor of the round robin is kept with the network.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use crate::control_error::{ControlError, Result};

/// One address pool of a network and its allocation state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// The network's subnet (host bits zero).
    pub subnet: IpNet,
    /// Where dynamic addresses come from (`--ip-range`); the whole subnet when absent.
    pub range: Option<IpNet>,
    pub gateway: Option<IpAddr>,
    /// `--aux-address name=ip`: reserved, never handed out.
    #[serde(default)]
    pub aux: Vec<(String, IpAddr)>,
    /// The last address handed out; the next search starts after it.
    #[serde(default)]
    pub last: Option<IpAddr>,
    /// Addresses in use (rebuilt from endpoints on start; not persisted).
    #[serde(skip)]
    pub used: BTreeSet<IpAddr>,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((v as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(v.into()),
    }
}

/// Parses `10.1.0.0/16`; Docker refuses a subnet with host bits set only for `--ip-range`
/// mismatches, so the subnet is truncated to its network address like Docker does.
pub fn parse_net(s: &str) -> Result<IpNet> {
    s.parse::<IpNet>()
        .map_err(|_| ControlError::invalid(format!("invalid CIDR address: {s}")))
}

pub fn parse_ip(s: &str) -> Result<IpAddr> {
    s.parse::<IpAddr>()
        .map_err(|_| ControlError::invalid(format!("invalid address: {s}")))
}

/// Two networks overlap when either contains the other's first address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl Pool {
    /// A pool for a subnet, validating gateway and range the way Docker does.
    pub fn new(
        subnet: IpNet,
        range: Option<IpNet>,
        gateway: Option<IpAddr>,
        aux: Vec<(String, IpAddr)>,
    ) -> Result<Pool> {
        let subnet = subnet.trunc();
        if let Some(r) = &range
            && !(subnet.contains(&r.network()) && subnet.prefix_len() <= r.prefix_len())
        {
            return Err(ControlError::invalid(format!(
                "Invalid Address Pool: ip-range {r} is not within subnet {subnet}"
            )));
        }
        if let Some(g) = gateway
            && !subnet.contains(&g)
        {
            return Err(ControlError::invalid(format!(
                "Invalid Address Pool: gateway {g} is not within subnet {subnet}"
            )));
        }
        for (name, ip) in &aux {
            if !subnet.contains(ip) {
                return Err(ControlError::invalid(format!(
                    "auxiliary address {name}={ip} is not within subnet {subnet}"
                )));
            }
        }
        let mut pool = Pool {
            subnet,
            range: range.map(|r| r.trunc()),
            gateway,
            aux,
            last: None,
            used: BTreeSet::new(),
        };
        if pool.gateway.is_none() {
            pool.gateway = Some(pool.first_host());
        }
        Ok(pool)
    }

    /// The first usable address of the subnet (Docker's default gateway).
    pub fn first_host(&self) -> IpAddr {
        let n = to_u128(self.subnet.network());
        if self.subnet.max_prefix_len() - self.subnet.prefix_len() <= 1 {
            return self.subnet.network();
        }
        from_u128(n + 1, self.subnet.network())
    }

    pub fn is_v6(&self) -> bool {
        matches!(self.subnet, IpNet::V6(_))
    }

    /// The address with this pool's prefix length (for interfaces and inspect).
    pub fn with_prefix(&self, ip: IpAddr) -> IpNet {
        IpNet::new(ip, self.subnet.prefix_len()).expect("prefix length of an existing subnet")
    }

    fn reserved(&self, ip: IpAddr) -> bool {
        let host_bits = self.subnet.max_prefix_len() - self.subnet.prefix_len();
        if ip == self.subnet.network() && host_bits > 1 {
            return true;
        }
        if let IpNet::V4(n) = self.subnet
            && host_bits > 1
            && ip == IpAddr::V4(n.broadcast())
        {
            return true;
        }
        Some(ip) == self.gateway || self.aux.iter().any(|(_, a)| *a == ip)
    }

    /// Marks an address in use (endpoints found on start).
    pub fn mark(&mut self, ip: IpAddr) {
        if self.subnet.contains(&ip) {
            self.used.insert(ip);
        }
    }

    pub fn release(&mut self, ip: IpAddr) {
        self.used.remove(&ip);
    }

    /// Hands out `want` if given (it must be in the subnet and free), else the next free
    /// address of the range after the last one handed out.
    pub fn allocate(&mut self, want: Option<IpAddr>) -> Result<IpAddr> {
        if let Some(ip) = want {
            if !self.subnet.contains(&ip) {
                return Err(ControlError::invalid(format!(
                    "no configured subnet or ip-range contain the IP address {ip}"
                )));
            }
            if self.used.contains(&ip) || self.reserved(ip) {
                return Err(ControlError::conflict(format!(
                    "Address already in use: {ip}"
                )));
            }
            self.used.insert(ip);
            return Ok(ip);
        }
        let range = self.range.unwrap_or(self.subnet);
        let lo = to_u128(range.network());
        let hi = match range {
            IpNet::V4(n) => u32::from(n.broadcast()) as u128,
            IpNet::V6(n) => u128::from(n.broadcast()),
        };
        let start = match self.last {
            Some(l) if range.contains(&l) && to_u128(l) < hi => to_u128(l) + 1,
            _ => lo,
        };
        let like = range.network();
        let mut v = start;
        // At most one full lap of the range (bounded for huge v6 ranges by the used set).
        let span = hi - lo + 1;
        let limit = span.min(self.used.len() as u128 + 1 + 8 + self.aux.len() as u128);
        let mut steps: u128 = 0;
        loop {
            let ip = from_u128(v, like);
            if !self.reserved(ip) && !self.used.contains(&ip) {
                self.used.insert(ip);
                self.last = Some(ip);
                return Ok(ip);
            }
            steps += 1;
            if steps >= span || (span > 1 << 20 && steps > limit) {
                break;
            }
            v = if v >= hi { lo } else { v + 1 };
        }
        Err(ControlError::unavailable(format!(
            "no available IPv{} addresses on this network's address pools: {}",
            if self.is_v6() { 6 } else { 4 },
            self.subnet
        )))
    }
}

/// An endpoint's addresses on one network, with the gateways of their pools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointAddresses {
    pub ipv4: Option<IpNet>,
    pub ipv6: Option<IpNet>,
    pub gateway_v4: Option<IpAddr>,
    pub gateway_v6: Option<IpAddr>,
}

/// The addresses of one endpoint, taken from a network's pools: dropped before
/// [`Allocation::commit`], it gives them back, so a failure part-way (the IPv6 pool full after
/// the IPv4 address was taken) leaves the pools as they were.
#[derive(Debug)]
pub struct Allocation<'a> {
    pools: &'a mut [Pool],
    taken: Vec<(usize, IpAddr)>,
    addresses: EndpointAddresses,
}

impl<'a> Allocation<'a> {
    /// One address from the first IPv4 pool (the one containing `want4` when given) and one
    /// from the first IPv6 pool (`want6` when it is in it).
    pub fn endpoint(
        pools: &'a mut [Pool],
        want4: Option<IpAddr>,
        want6: Option<IpAddr>,
    ) -> Result<Allocation<'a>> {
        let mut a = Allocation {
            pools,
            taken: Vec::new(),
            addresses: EndpointAddresses::default(),
        };
        for i in 0..a.pools.len() {
            let p = &mut a.pools[i];
            if p.is_v6() && a.addresses.ipv6.is_none() {
                let ip = p.allocate(want6.filter(|w| p.subnet.contains(w)))?;
                a.taken.push((i, ip));
                a.addresses.ipv6 = Some(p.with_prefix(ip));
                a.addresses.gateway_v6 = p.gateway;
            } else if !p.is_v6() && a.addresses.ipv4.is_none() {
                let w = want4.filter(|w| p.subnet.contains(w));
                if want4.is_some() && w.is_none() {
                    continue;
                }
                let ip = p.allocate(w)?;
                a.taken.push((i, ip));
                a.addresses.ipv4 = Some(p.with_prefix(ip));
                a.addresses.gateway_v4 = p.gateway;
            }
        }
        if let Some(want) = want4
            && a.addresses.ipv4.is_none()
        {
            return Err(ControlError::invalid(format!(
                "no configured subnet or ip-range contain the IP address {want}"
            )));
        }
        Ok(a)
    }

    pub fn addresses(&self) -> &EndpointAddresses {
        &self.addresses
    }

    /// What was allocated (kept from now on).
    pub fn commit(mut self) -> EndpointAddresses {
        self.taken.clear();
        self.addresses
    }
}

impl Drop for Allocation<'_> {
    fn drop(&mut self) {
        for (i, ip) in self.taken.drain(..) {
            self.pools[i].release(ip);
        }
    }
}

/// A default pool: subnets of `size` bits carved from `base` (daemon.json `default-address-pools`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultPool {
    pub base: IpNet,
    pub size: u8,
}

/// Docker's built-in default pools: 172.17-31.0.0/16 and 192.168.0.0/16 in /20s.
pub fn docker_default_pools() -> Vec<DefaultPool> {
    let mut v: Vec<DefaultPool> = (17..=31)
        .map(|b| DefaultPool {
            base: IpNet::V4(Ipv4Net::new([172, b, 0, 0].into(), 16).expect("valid")),
            size: 16,
        })
        .collect();
    v.push(DefaultPool {
        base: IpNet::V4(Ipv4Net::new([192, 168, 0, 0].into(), 16).expect("valid")),
        size: 20,
    });
    v
}

/// The first subnet from `pools` (in order) that overlaps none of `taken`.
pub fn choose_subnet(pools: &[DefaultPool], taken: &[IpNet], v6: bool) -> Option<IpNet> {
    for p in pools {
        if matches!(p.base, IpNet::V6(_)) != v6 || p.size < p.base.prefix_len() {
            continue;
        }
        let subnets: Box<dyn Iterator<Item = IpNet>> = match p.base {
            IpNet::V4(b) => Box::new(b.subnets(p.size).ok()?.map(IpNet::V4)),
            IpNet::V6(b) => Box::new(b.subnets(p.size).ok()?.map(IpNet::V6).take(1 << 16)),
        };
        for s in subnets {
            if !taken.iter().any(|t| overlaps(t, &s)) {
                return Some(s);
            }
        }
    }
    None
}

/// Docker's MAC for an IPv4 address: `02:42` followed by the address's four bytes.
pub fn mac_for(ip: IpAddr) -> [u8; 6] {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            [0x02, 0x42, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            [0x02, 0x42, o[12], o[13], o[14], o[15]]
        }
    }
}

pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let bad = || ControlError::invalid(format!("invalid MAC address: {s}"));
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        m[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn gateway_network_and_broadcast_are_reserved() {
        let mut p = Pool::new(net("10.9.0.0/30"), None, None, vec![]).unwrap();
        assert_eq!(p.gateway, Some(ip("10.9.0.1")));
        assert_eq!(p.allocate(None).unwrap(), ip("10.9.0.2"));
        assert!(p.allocate(None).is_err());
    }

    #[test]
    fn released_address_is_not_reused_at_once() {
        let mut p = Pool::new(net("10.9.0.0/24"), None, None, vec![]).unwrap();
        let a = p.allocate(None).unwrap();
        assert_eq!(a, ip("10.9.0.2"));
        p.release(a);
        assert_eq!(p.allocate(None).unwrap(), ip("10.9.0.3"));
    }

    #[test]
    fn wraps_around_to_free_addresses() {
        let mut p = Pool::new(net("10.9.0.0/29"), None, None, vec![]).unwrap();
        let got: Vec<_> = (0..5).map(|_| p.allocate(None).unwrap()).collect();
        assert_eq!(got.last(), Some(&ip("10.9.0.6")));
        assert!(p.allocate(None).is_err());
        p.release(ip("10.9.0.3"));
        assert_eq!(p.allocate(None).unwrap(), ip("10.9.0.3"));
    }

    #[test]
    fn range_and_explicit_requests() {
        let mut p = Pool::new(
            net("10.9.0.0/16"),
            Some(net("10.9.5.0/24")),
            Some(ip("10.9.0.254")),
            vec![],
        )
        .unwrap();
        // Dynamic addresses come from the range only (its first address included, as Docker).
        assert_eq!(p.allocate(None).unwrap(), ip("10.9.5.0"));
        assert_eq!(p.allocate(Some(ip("10.9.0.7"))).unwrap(), ip("10.9.0.7"));
        assert!(p.allocate(Some(ip("10.9.0.7"))).is_err());
        assert!(p.allocate(Some(ip("10.9.0.254"))).is_err());
        assert!(p.allocate(Some(ip("10.10.0.1"))).is_err());
        assert!(Pool::new(net("10.9.0.0/16"), Some(net("10.8.0.0/24")), None, vec![]).is_err());
        assert!(Pool::new(net("10.9.0.0/16"), None, Some(ip("10.8.0.1")), vec![]).is_err());
    }

    #[test]
    fn v6_pool() {
        let mut p = Pool::new(net("fd00:1::/64"), None, None, vec![]).unwrap();
        assert_eq!(p.gateway, Some(ip("fd00:1::1")));
        assert_eq!(p.allocate(None).unwrap(), ip("fd00:1::2"));
    }

    #[test]
    fn default_pool_choice_skips_taken() {
        let pools = docker_default_pools();
        assert_eq!(
            choose_subnet(&pools, &[], false),
            Some(net("172.17.0.0/16"))
        );
        let taken = [net("172.17.0.0/16"), net("172.18.5.0/24")];
        assert_eq!(
            choose_subnet(&pools, &taken, false),
            Some(net("172.19.0.0/16"))
        );
        let all: Vec<IpNet> = (17..=31).map(|b| net(&format!("172.{b}.0.0/16"))).collect();
        assert_eq!(
            choose_subnet(&pools, &all, false),
            Some(net("192.168.0.0/20"))
        );
    }

    #[test]
    fn mac_from_ip() {
        assert_eq!(format_mac(&mac_for(ip("172.17.0.2"))), "02:42:ac:11:00:02");
        assert_eq!(
            parse_mac("02:42:ac:11:00:02").unwrap(),
            mac_for(ip("172.17.0.2"))
        );
        assert!(parse_mac("02:42").is_err());
    }

    #[test]
    fn a_failed_endpoint_allocation_gives_back_what_it_took() {
        let mut pools = vec![
            Pool::new(net("10.9.0.0/24"), None, None, vec![]).unwrap(),
            Pool::new(net("fd09::/64"), None, None, vec![]).unwrap(),
        ];
        let taken: IpAddr = "fd09::5".parse().unwrap();
        pools[1].mark(taken);
        let e = Allocation::endpoint(&mut pools, None, Some(taken)).unwrap_err();
        assert_eq!(e.to_string(), "Address already in use: fd09::5");
        // The IPv4 address taken before the IPv6 pool refused is free again.
        assert!(pools[0].used.is_empty());
        let a = Allocation::endpoint(&mut pools, None, None)
            .unwrap()
            .commit();
        // The round robin's cursor moved on: .2 is not handed out again at once.
        assert_eq!(a.ipv4, Some(net("10.9.0.3/24")));
        assert_eq!(pools[0].used.len(), 1);
        // Dropped without commit: nothing stays taken.
        drop(Allocation::endpoint(&mut pools, None, None).unwrap());
        assert_eq!(pools[0].used.len(), 1);
        let e = Allocation::endpoint(&mut pools, "10.10.0.1".parse().ok(), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no configured subnet or ip-range contain the IP address 10.10.0.1"
        );
        // The committed endpoint keeps one address in each pool; fd09::5 stays marked.
        assert_eq!((pools[0].used.len(), pools[1].used.len()), (1, 2));
    }
}
