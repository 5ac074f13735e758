//! The files Docker generates for each container and bind-mounts over the image's:
//! `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`.

/// `/etc/hosts` for a container in its own network namespace: localhost entries, the
/// `--add-host` entries (`host-gateway` standing for `host_gateway`), then the container's
/// own addresses with its hostname, as Docker writes it.
pub fn hosts(
    hostname: &str,
    extra_hosts: &[String],
    addresses: &[std::net::IpAddr],
    host_gateway: Option<std::net::IpAddr>,
) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for h in extra_hosts {
        // `--add-host name:ip` (or `name=ip`).
        let (name, ip) = match h.split_once('=') {
            Some(p) => p,
            None => match h.split_once(':') {
                Some(p) => p,
                None => continue,
            },
        };
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let ip = match (ip, host_gateway) {
            ("host-gateway", Some(g)) => g.to_string(),
            _ => ip.to_string(),
        };
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    for a in addresses {
        out.push_str(&format!("{a}\t{hostname}\n"));
    }
    out
}

/// DNS settings given on the command line (`--dns`, `--dns-search`, `--dns-option`).
#[derive(Debug, Clone, Default)]
pub struct DnsOverrides<'a> {
    pub servers: &'a [String],
    pub search: &'a [String],
    pub options: &'a [String],
}

/// The container's `resolv.conf`, from the host's: in a private network namespace, local
/// (`127.x`, `::1`) nameservers cannot be reached, so they are dropped, and Google's public
/// servers used when none remain (as Docker does). `--dns*` flags replace the host's values.
///
/// With `embedded` (user-defined networks) the only nameserver is the embedded server at
/// 127.0.0.11 and `ndots:0` is added, as Docker writes it.
pub fn resolv_conf(host: &str, host_network: bool, embedded: bool, o: &DnsOverrides<'_>) -> String {
    let mut servers = Vec::new();
    let mut search = Vec::new();
    let mut options = Vec::new();
    let mut other = Vec::new();
    for line in host.lines() {
        let trimmed = line.trim();
        let mut words = trimmed.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ns) = words.next() {
                    servers.push(ns.to_string());
                }
            }
            Some("search") | Some("domain") => {
                search = words.map(str::to_string).collect();
            }
            Some("options") => options.extend(words.map(str::to_string)),
            Some(w) if !w.starts_with('#') && !w.starts_with(';') => {
                other.push(trimmed.to_string())
            }
            _ => {}
        }
    }
    if !host_network {
        servers.retain(|s| !(s.starts_with("127.") || s == "::1"));
    }
    if !o.servers.is_empty() {
        servers = o.servers.to_vec();
    }
    if !o.search.is_empty() {
        search = o
            .search
            .iter()
            .filter(|s| s.as_str() != ".")
            .cloned()
            .collect();
    }
    if !o.options.is_empty() {
        options = o.options.to_vec();
    }
    if servers.is_empty() && !host_network {
        servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    if embedded {
        servers = vec!["127.0.0.11".into()];
        if !options.iter().any(|o| o.starts_with("ndots:")) {
            options.push("ndots:0".into());
        }
    }
    let mut out = String::new();
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    for l in other {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// The host's resolver configuration: systemd-resolved's upstream list when the stub
/// resolver is in use (its 127.0.0.53 would be useless in the container), else /etc/resolv.conf.
pub fn host_resolv_conf() -> String {
    let main = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if main.contains("nameserver 127.0.0.53")
        && let Ok(upstream) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf")
    {
        return upstream;
    }
    main
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_nameservers_are_replaced() {
        let host = "# generated\nnameserver 127.0.0.11\nsearch example.com\noptions ndots:2\n";
        let c = resolv_conf(host, false, false, &DnsOverrides::default());
        assert_eq!(
            c,
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch example.com\noptions ndots:2\n"
        );
        let h = resolv_conf(host, true, false, &DnsOverrides::default());
        assert!(h.starts_with("nameserver 127.0.0.11\n"));
        let kept = resolv_conf(
            "nameserver 10.0.0.2\nnameserver 127.0.0.1\n",
            false,
            false,
            &DnsOverrides::default(),
        );
        assert_eq!(kept, "nameserver 10.0.0.2\n");
    }

    #[test]
    fn overrides_win() {
        let servers = vec!["1.1.1.1".to_string()];
        let search = vec!["corp".to_string()];
        let c = resolv_conf(
            "nameserver 10.0.0.2\nsearch a\n",
            false,
            false,
            &DnsOverrides {
                servers: &servers,
                search: &search,
                options: &[],
            },
        );
        assert_eq!(c, "nameserver 1.1.1.1\nsearch corp\n");
    }

    #[test]
    fn hosts_file() {
        let h = hosts(
            "abc",
            &[
                "db:10.0.0.5".into(),
                "v6=[::2]".into(),
                "gw:host-gateway".into(),
            ],
            &["172.17.0.2".parse().unwrap()],
            Some("172.17.0.1".parse().unwrap()),
        );
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.0.0.5\tdb\n::2\tv6\n172.17.0.1\tgw\n172.17.0.2\tabc\n"));
    }

    #[test]
    fn embedded_dns_resolv_conf() {
        let c = resolv_conf(
            "nameserver 10.0.0.2\nsearch corp\n",
            false,
            true,
            &DnsOverrides::default(),
        );
        assert_eq!(c, "nameserver 127.0.0.11\nsearch corp\noptions ndots:0\n");
    }
}
