//! Berth's nftables table: NAT, forwarding and isolation of its bridges, DNAT of published
//! ports. The table is rewritten as a whole, in one `nft` transaction, from a complete
//! [`Ruleset`] each time: the description is the truth, and what is not in it goes away.
//! Tables and chains that are not ours are never touched; the only foreign thing written is
//! one iptables accept rule per bridge when iptables' FORWARD policy is DROP (Docker installed),
//! each marked with a comment naming our table.

use std::net::IpAddr;
use std::process::{Command, Stdio};

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::{Error, Proto, Result};

/// Everything the firewall must do, for all of the daemon's bridges and published ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub bridges: Vec<BridgeRules>,
    pub ports: Vec<PortForward>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRules {
    pub device: String,
    pub subnets: Vec<IpNet>,
    /// No traffic in or out of the bridge except between its own members.
    pub internal: bool,
    /// SNAT traffic leaving through other interfaces (com.docker.network.bridge.enable_ip_masquerade).
    pub masquerade: bool,
    /// Traffic between containers on this bridge allowed (com.docker.network.bridge.enable_icc).
    pub icc: bool,
}

/// A published port: DNAT of `host_ip:host_port` to `container_ip:container_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForward {
    pub proto: Proto,
    /// None = all host addresses.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_ip: IpAddr,
    pub container_port: u16,
    /// The bridge the container is reached through.
    pub bridge: String,
}

/// The daemon's firewall table.
#[derive(Debug, Clone)]
pub struct Firewall {
    table: String,
}

impl Firewall {
    /// `table`: "berth" for the default data root, else "berth_" + 8 hex chars of a hash of the
    /// data root, so concurrent daemons never clobber each other's rules.
    pub fn new(table: &str) -> Self {
        Firewall {
            table: table.to_string(),
        }
    }

    /// The nftables table name (family `inet`).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Replaces the whole table with the rules `rs` asks for, atomically, then makes the
    /// iptables accept rules match `rs`'s bridges.
    pub fn apply(&self, rs: &Ruleset) -> Result<()> {
        self.check_name()?;
        let doc = self.ruleset_json(rs)?;
        let bridges: Vec<(&str, bool)> = rs
            .bridges
            .iter()
            .map(|b| {
                (
                    b.device.as_str(),
                    b.subnets.iter().any(|n| matches!(n, IpNet::V6(_))),
                )
            })
            .collect();
        // nft and the two iptables are separate programs on separate tables: run them side by
        // side (each is mostly process start-up).
        std::thread::scope(|scope| {
            let v4 = scope.spawn(|| self.sync_iptables("iptables", false, &bridges));
            let v6 = scope.spawn(|| self.sync_iptables("ip6tables", true, &bridges));
            let nft = run_nft(&doc, &format!("cannot apply nftables table {}", self.table));
            let join = |h: std::thread::ScopedJoinHandle<'_, Result<()>>| {
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
            };
            let (v4, v6) = (join(v4), join(v6));
            nft.and(v4).and(v6)
        })
    }

    /// Deletes our table and our iptables accept rules. Ok if missing.
    pub fn remove(&self) -> Result<()> {
        self.check_name()?;
        // "add" first so that "delete" cannot fail on a missing table: one transaction.
        let doc = json!({"nftables": [
            {"add": {"table": {"family": "inet", "name": self.table}}},
            {"delete": {"table": {"family": "inet", "name": self.table}}},
        ]});
        run_nft(
            &doc,
            &format!("cannot delete nftables table {}", self.table),
        )?;
        self.sync_iptables("iptables", false, &[])?;
        self.sync_iptables("ip6tables", true, &[])
    }

    fn check_name(&self) -> Result<()> {
        let ok = !self.table.is_empty()
            && self.table.len() <= 64
            && self
                .table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "invalid firewall table name: {:?}",
                self.table
            )))
        }
    }

    /// The whole table as one nft JSON transaction: create-if-missing, delete, re-create with
    /// every chain and rule.
    fn ruleset_json(&self, rs: &Ruleset) -> Result<Value> {
        let t = self.table.as_str();
        let mut cmds = vec![
            json!({"add": {"table": {"family": "inet", "name": t}}}),
            json!({"delete": {"table": {"family": "inet", "name": t}}}),
            json!({"add": {"table": {"family": "inet", "name": t}}}),
        ];
        let chain = |name: &str, kind: &str, hook: &str, prio: i32| {
            json!({"add": {"chain": {"family": "inet", "table": t, "name": name,
                "type": kind, "hook": hook, "prio": prio, "policy": "accept"}}})
        };
        cmds.push(chain("forward", "filter", "forward", 0));
        cmds.push(chain("prerouting", "nat", "prerouting", -100));
        cmds.push(chain("output", "nat", "output", -100));
        cmds.push(chain("postrouting", "nat", "postrouting", 100));
        cmds.push(json!({"add": {"chain": {"family": "inet", "table": t, "name": "ports"}}}));
        let rules = forward_rules(rs)
            .into_iter()
            .chain(nat_rules(rs))
            .chain(postrouting_rules(rs));
        for (chain, expr) in rules {
            cmds.push(
                json!({"add": {"rule": {"family": "inet", "table": t, "chain": chain,
                "expr": expr}}}),
            );
        }
        let doc = json!({ "nftables": cmds });
        // Validate against the nftables crate's schema: a shape error is ours, and is better
        // caught here than in nft's message.
        serde_json::from_value::<nftables::schema::Nftables>(doc.clone())
            .map_err(|e| Error::firewall(format!("nftables table {t}"), e.to_string()))?;
        Ok(doc)
    }

    fn comment(&self) -> String {
        format!("berth:{}", self.table)
    }

    /// With iptables' FORWARD policy DROP (Docker installed), an accept in our own table does
    /// not let forwarded traffic through: iptables' table drops it. So each of our bridges
    /// gets accept rules there (in DOCKER-USER when it exists, Docker's place for user rules),
    /// marked with our comment. Drops stay in our table, where they are final whatever
    /// iptables accepts. Only rules carrying our comment are ever changed. `bin` is iptables,
    /// or ip6tables with `v6` (then only bridges with an IPv6 subnet get rules).
    fn sync_iptables(&self, bin: &str, v6: bool, bridges: &[(&str, bool)]) -> Result<()> {
        let comment = self.comment();
        let Some(listing) = iptables(bin, &["-w", "-S"])? else {
            return Ok(()); // not installed: nothing to coexist with
        };
        let docker_user = listing.lines().any(|l| l.trim() == "-N DOCKER-USER");
        let drop_policy = listing.lines().any(|l| l.trim() == "-P FORWARD DROP");
        let ours: Vec<Vec<String>> = listing
            .lines()
            // `-S` quotes comments; ours have no spaces, so unquoting each word is exact.
            .map(|l| {
                l.split_whitespace()
                    .map(|w| w.trim_matches('"').to_string())
                    .collect::<Vec<_>>()
            })
            .filter(|t| {
                t.first().map(String::as_str) == Some("-A")
                    && t.windows(2).any(|w| w[0] == "--comment" && w[1] == comment)
            })
            .collect();
        let mut wanted: Vec<Vec<String>> = Vec::new();
        if drop_policy || docker_user {
            let chain = if docker_user {
                "DOCKER-USER"
            } else {
                "FORWARD"
            };
            for (dev, has_v6) in bridges {
                if v6 && !has_v6 {
                    continue;
                }
                for dir in ["-i", "-o"] {
                    wanted.push(
                        [
                            "-A",
                            chain,
                            dir,
                            dev,
                            "-m",
                            "comment",
                            "--comment",
                            &comment,
                            "-j",
                            "ACCEPT",
                        ]
                        .map(str::to_string)
                        .to_vec(),
                    );
                }
            }
        }
        for rule in ours.iter().filter(|r| !wanted.contains(r)) {
            let mut args: Vec<&str> = vec!["-w", "-D"];
            args.extend(rule[1..].iter().map(String::as_str));
            iptables(bin, &args)?;
        }
        for rule in wanted.iter().filter(|r| !ours.contains(r)) {
            let mut args: Vec<&str> = vec!["-w", "-I", &rule[1], "1"];
            args.extend(rule[2..].iter().map(String::as_str));
            iptables(bin, &args)?;
        }
        Ok(())
    }
}

fn is(key: &str, value: &str) -> Value {
    json!({"match": {"op": "==", "left": {"meta": {"key": key}}, "right": value}})
}

fn not(key: &str, value: &str) -> Value {
    json!({"match": {"op": "!=", "left": {"meta": {"key": key}}, "right": value}})
}

fn is_in(key: &str, values: &[&str]) -> Value {
    json!({"match": {"op": "==", "left": {"meta": {"key": key}}, "right": {"set": values}}})
}

fn verdict(v: &str) -> Value {
    json!({ v: null })
}

fn ct_dnat() -> Value {
    json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}})
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "ip" } else { "ip6" }
}

fn saddr_in(net: &IpNet) -> Value {
    json!({"match": {"op": "==",
        "left": {"payload": {"protocol": family(net.addr()), "field": "saddr"}},
        "right": {"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}}}})
}

/// The DNAT rule of a published port; None when NAT cannot translate it (a host address of
/// the other family than the container's): the proxy alone serves those, as docker-proxy does.
fn port_rule(p: &PortForward) -> Option<Vec<Value>> {
    let fam = family(p.container_ip);
    let mut expr = Vec::new();
    match p.host_ip {
        Some(ip) if ip.is_unspecified() => {}
        Some(ip) => {
            if family(ip) != fam {
                return None;
            }
            expr.push(json!({"match": {"op": "==",
                "left": {"payload": {"protocol": fam, "field": "daddr"}},
                "right": ip.to_string()}}));
        }
        None => {}
    }
    expr.push(
        json!({"match": {"op": "==", "left": {"meta": {"key": "nfproto"}},
        "right": if fam == "ip" { "ipv4" } else { "ipv6" }}}),
    );
    expr.push(json!({"match": {"op": "==",
        "left": {"payload": {"protocol": p.proto.as_str(), "field": "dport"}},
        "right": p.host_port}}));
    expr.push(
        json!({"dnat": {"addr": p.container_ip.to_string(), "port": p.container_port,
        "family": fam}}),
    );
    Some(expr)
}

fn run_nft(doc: &Value, context: &str) -> Result<()> {
    let payload = doc.to_string();
    nftables::helper::apply_ruleset_raw(
        &payload,
        nftables::helper::DEFAULT_NFT,
        nftables::helper::DEFAULT_ARGS,
    )
    .map(|_| ())
    .map_err(|e| match e {
        nftables::helper::NftablesError::NftFailed { stderr, .. } => {
            Error::firewall(context, stderr.trim().to_string())
        }
        other => Error::firewall(context, other.to_string()),
    })
}

/// Runs an iptables binary; None when it is not installed.
fn iptables(bin: &str, args: &[&str]) -> Result<Option<String>> {
    let out = match Command::new(bin).args(args).stdin(Stdio::null()).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("cannot run {bin}"), e)),
    };
    if !out.status.success() {
        return Err(Error::firewall(
            format!("{bin} {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// The `forward` chain: isolation, internal networks, published ports, accepts.
fn forward_rules(rs: &Ruleset) -> Vec<(&'static str, Vec<Value>)> {
    let mut out = Vec::new();
    let mut rule = |chain: &'static str, expr: Vec<Value>| out.push((chain, expr));
    // forward. A drop anywhere is final, so order is what decides:
    // 1. internal bridges are sealed, whatever else applies;
    // 2. published ports (DNATed connections, both directions) are reachable from other
    //    bridges too, as from any other host: isolation stops direct connections only;
    // 3. isolation between our bridges, and icc=false within one;
    // 4. accepts (what iptables' DROP policy would otherwise stop, see sync_iptables).
    let names: Vec<&str> = rs.bridges.iter().map(|b| b.device.as_str()).collect();
    for b in rs.bridges.iter().filter(|b| b.internal) {
        let dev = b.device.as_str();
        rule(
            "forward",
            vec![is("iifname", dev), not("oifname", dev), verdict("drop")],
        );
        rule(
            "forward",
            vec![is("oifname", dev), not("iifname", dev), verdict("drop")],
        );
    }
    for b in rs.bridges.iter().filter(|b| !b.internal) {
        let dev = b.device.as_str();
        rule(
            "forward",
            vec![is("oifname", dev), ct_dnat(), verdict("accept")],
        );
        rule(
            "forward",
            vec![is("iifname", dev), ct_dnat(), verdict("accept")],
        );
    }
    for b in &rs.bridges {
        let dev = b.device.as_str();
        let others: Vec<&str> = names.iter().copied().filter(|n| *n != dev).collect();
        if !others.is_empty() {
            rule(
                "forward",
                vec![
                    is("iifname", dev),
                    is_in("oifname", &others),
                    verdict("drop"),
                ],
            );
        }
        if !b.icc {
            rule(
                "forward",
                vec![is("iifname", dev), is("oifname", dev), verdict("drop")],
            );
        }
    }
    for b in &rs.bridges {
        let dev = b.device.as_str();
        rule("forward", vec![is("iifname", dev), verdict("accept")]);
        rule(
            "forward",
            vec![
                is("oifname", dev),
                json!({"match": {"op": "in", "left": {"ct": {"key": "state"}},
                "right": ["established", "related"]}}),
                verdict("accept"),
            ],
        );
    }
    out
}

/// The `prerouting`, `output` and `ports` chains: DNAT of published ports.
fn nat_rules(rs: &Ruleset) -> Vec<(&'static str, Vec<Value>)> {
    let mut out = Vec::new();
    let mut rule = |chain: &'static str, expr: Vec<Value>| out.push((chain, expr));
    // NAT: published ports for traffic arriving from anywhere and for the host's own
    // connections to its non-loopback addresses (127.0.0.1 is the proxy's).
    let local = json!({"match": {"op": "==", "left": {"fib": {"result": "type",
        "flags": ["daddr"]}}, "right": "local"}});
    rule(
        "prerouting",
        vec![local.clone(), json!({"jump": {"target": "ports"}})],
    );
    // Loopback destinations are left to the proxy: after DNAT their source would stay
    // 127.0.0.1, which the container cannot answer.
    for (fam, lo, len) in [("ip", "127.0.0.0", 8), ("ip6", "::1", 128)] {
        rule(
            "output",
            vec![
                json!({"match": {"op": "!=",
                    "left": {"payload": {"protocol": fam, "field": "daddr"}},
                    "right": {"prefix": {"addr": lo, "len": len}}}}),
                local.clone(),
                json!({"jump": {"target": "ports"}}),
            ],
        );
    }
    for p in &rs.ports {
        if let Some(expr) = port_rule(p) {
            rule("ports", expr);
        }
    }
    out
}

/// The `postrouting` chain: masquerade and hairpin.
fn postrouting_rules(rs: &Ruleset) -> Vec<(&'static str, Vec<Value>)> {
    let mut out = Vec::new();
    let mut rule = |chain: &'static str, expr: Vec<Value>| out.push((chain, expr));
    // postrouting: masquerade what leaves a bridge for elsewhere, and hairpin (DNATed
    // traffic from a bridge's subnet going back into that bridge) so replies come back
    // through the host.
    for b in rs.bridges.iter().filter(|b| !b.internal) {
        let dev = b.device.as_str();
        for net in &b.subnets {
            if b.masquerade {
                rule(
                    "postrouting",
                    vec![
                        saddr_in(net),
                        not("oifname", dev),
                        json!({"masquerade": null}),
                    ],
                );
            }
            rule(
                "postrouting",
                vec![
                    saddr_in(net),
                    is("oifname", dev),
                    ct_dnat(),
                    json!({"masquerade": null}),
                ],
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ruleset {
        Ruleset {
            bridges: vec![
                BridgeRules {
                    device: "br-a".into(),
                    subnets: vec![
                        "10.1.0.0/24".parse().unwrap(),
                        "fd00:1::/64".parse().unwrap(),
                    ],
                    internal: false,
                    masquerade: true,
                    icc: false,
                },
                BridgeRules {
                    device: "br-b".into(),
                    subnets: vec!["10.2.0.0/24".parse().unwrap()],
                    internal: true,
                    masquerade: true,
                    icc: true,
                },
            ],
            ports: vec![
                PortForward {
                    proto: Proto::Tcp,
                    host_ip: None,
                    host_port: 8080,
                    container_ip: "10.1.0.2".parse().unwrap(),
                    container_port: 80,
                    bridge: "br-a".into(),
                },
                PortForward {
                    proto: Proto::Udp,
                    host_ip: Some("fd00::5".parse().unwrap()),
                    host_port: 53,
                    container_ip: "fd00:1::2".parse().unwrap(),
                    container_port: 5353,
                    bridge: "br-a".into(),
                },
            ],
        }
    }

    fn rules_of<'a>(doc: &'a Value, chain: &str) -> Vec<&'a Value> {
        doc["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["add"]["rule"]["chain"] == chain)
            .map(|c| &c["add"]["rule"]["expr"])
            .collect()
    }

    #[test]
    fn the_table_is_recreated_whole_in_one_document() {
        let doc = Firewall::new("berth_test").ruleset_json(&sample()).unwrap();
        let cmds = doc["nftables"].as_array().unwrap();
        // Create-if-missing, delete, create: the old contents never survive an apply.
        assert!(cmds[0]["add"]["table"].is_object());
        assert!(cmds[1]["delete"]["table"].is_object());
        assert!(cmds[2]["add"]["table"].is_object());
        assert!(cmds.iter().all(|c| {
            let obj = c.as_object().unwrap().values().next().unwrap();
            let inner = obj.as_object().unwrap().values().next().unwrap();
            inner["family"] == "inet"
                && (inner["name"] == "berth_test" || inner["table"] == "berth_test")
        }));
    }

    #[test]
    fn rules_follow_the_description() {
        let doc = Firewall::new("berth_test").ruleset_json(&sample()).unwrap();
        let text = |v: &Vec<&Value>| serde_json::to_string(v).unwrap();
        let ports = rules_of(&doc, "ports");
        assert_eq!(ports.len(), 2);
        assert!(text(&ports).contains(r#""dnat":{"addr":"10.1.0.2","family":"ip","port":80}"#));
        assert!(text(&ports).contains(r#""right":"fd00::5""#));
        let post = rules_of(&doc, "postrouting");
        // br-a: masquerade + hairpin for each of its two subnets; br-b is internal: nothing.
        assert_eq!(post.len(), 4);
        assert!(!text(&post).contains("br-b"));
        let fwd = text(&rules_of(&doc, "forward"));
        // Isolation both ways, internal sealing, icc=false.
        assert!(fwd.contains(r#"{"set":["br-b"]}"#) && fwd.contains(r#"{"set":["br-a"]}"#));
        assert_eq!(fwd.matches(r#""drop":null"#).count(), 2 + 2 + 1);
    }

    #[test]
    fn ports_nat_cannot_translate_are_left_to_the_proxy() {
        let mut rs = sample();
        rs.ports[0].host_ip = Some("fd00::1".parse().unwrap());
        let doc = Firewall::new("berth_test").ruleset_json(&rs).unwrap();
        assert_eq!(rules_of(&doc, "ports").len(), 1);
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", "bad name", "a;b", &"x".repeat(65)] {
            assert!(Firewall::new(name).check_name().is_err(), "{name:?}");
        }
        assert!(Firewall::new("berth_0a1b2c3d").check_name().is_ok());
    }
}
