//! Published ports: Docker's port keys and bindings parsed into [`PortSpec`]s.

use std::collections::BTreeMap;
use std::net::IpAddr;

use berth_api::models::container::PortBinding;

use crate::Proto;
use crate::control_error::{ControlError, Result};
use crate::store::PortSpec;

/// `80/tcp` → (80, tcp); Docker's message for anything else.
pub fn parse_port_key(key: &str) -> Result<(u16, u16, Proto)> {
    let (ports, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" | "" => Proto::Tcp,
        "udp" => Proto::Udp,
        "sctp" => {
            return Err(ControlError::invalid(format!(
                "invalid port specification: sctp is not supported: {key:?}"
            )));
        }
        _ => {
            return Err(ControlError::invalid(format!("invalid proto: {proto}")));
        }
    };
    let (lo, hi) = parse_range(ports)
        .ok_or_else(|| ControlError::invalid(format!("invalid port specification: {key:?}")))?;
    Ok((lo, hi, proto))
}

pub(super) fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().ok()?;
    let b: u16 = b.parse().ok()?;
    (a <= b).then_some((a, b))
}

/// The ports to publish from `PortBindings` (and with `-P` the exposed ports, on random host
/// ports); returns them and the exposed ports left unpublished.
pub fn port_specs(
    bindings: &BTreeMap<String, Option<Vec<PortBinding>>>,
    publish_all: bool,
    exposed: &[String],
) -> Result<(Vec<PortSpec>, Vec<String>)> {
    let mut specs = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    for (key, list) in bindings {
        let (lo, hi, proto) = parse_port_key(key)?;
        keys.push(format!("{lo}/{proto}"));
        if lo != hi {
            return Err(ControlError::invalid(format!(
                "invalid port specification: {key:?}"
            )));
        }
        let list = list.clone().unwrap_or_default();
        let list = if list.is_empty() {
            vec![PortBinding::default()]
        } else {
            list
        };
        for b in list {
            let host_ip = match b.host_ip.trim_start_matches('[').trim_end_matches(']') {
                "" => None,
                ip => Some(ip.parse::<IpAddr>().map_err(|_| {
                    ControlError::invalid(format!("invalid host IP address: {}", b.host_ip))
                })?),
            };
            let (host_port, host_port_last) = if b.host_port.is_empty() {
                (0, 0)
            } else {
                parse_range(&b.host_port).ok_or_else(|| {
                    ControlError::invalid(format!("invalid port specification: {:?}", b.host_port))
                })?
            };
            specs.push(PortSpec {
                proto,
                container_port: lo,
                host_ip,
                host_port,
                host_port_last,
            });
        }
    }
    let mut left = Vec::new();
    for e in exposed {
        let (lo, hi, proto) = parse_port_key(e)?;
        for port in lo..=hi {
            let key = format!("{port}/{proto}");
            if keys.contains(&key) {
                continue;
            }
            if publish_all {
                specs.push(PortSpec {
                    proto,
                    container_port: port,
                    host_ip: None,
                    host_port: 0,
                    host_port_last: 0,
                });
            } else {
                left.push(key);
            }
        }
    }
    Ok((specs, left))
}
