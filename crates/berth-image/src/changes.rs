//! Dockerfile instructions accepted by `docker import --change` (and `docker commit --change`).

use std::collections::BTreeMap;

use berth_api::models::ContainerConfig;

use crate::error::{ImageError, Result};

/// Applies `changes` (e.g. `CMD ["sh"]`, `ENV A=b`) to `config`, in order.
pub fn apply(config: &mut ContainerConfig, changes: &[String]) -> Result<()> {
    for change in changes {
        apply_one(config, change.trim())?;
    }
    Ok(())
}

fn apply_one(config: &mut ContainerConfig, change: &str) -> Result<()> {
    if change.is_empty() {
        return Ok(());
    }
    let (keyword, rest) = match change.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim()),
        None => (change, ""),
    };
    let keyword = keyword.to_ascii_uppercase();
    let need_arg = |what: &str| -> Result<()> {
        if rest.is_empty() {
            Err(ImageError::InvalidArgument(format!(
                "{what} requires at least one argument"
            )))
        } else {
            Ok(())
        }
    };
    match keyword.as_str() {
        "CMD" => config.cmd = Some(exec_or_shell(rest)),
        "ENTRYPOINT" => config.entrypoint = Some(exec_or_shell(rest)),
        "ENV" => {
            need_arg("ENV")?;
            let env = config.env.get_or_insert_with(Vec::new);
            for (k, v) in key_values(rest, "ENV")? {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()) && *e != k);
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            need_arg("LABEL")?;
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in key_values(rest, "LABEL")? {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            need_arg("EXPOSE")?;
            let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in words(rest) {
                let port = if p.contains('/') {
                    p
                } else {
                    format!("{p}/tcp")
                };
                let (num, proto) = port.split_once('/').unwrap_or((&port, "tcp"));
                let valid_num = !num.is_empty() && num.split('-').all(|n| n.parse::<u16>().is_ok());
                if !valid_num || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(ImageError::InvalidArgument(format!(
                        "invalid containerPort: {num}"
                    )));
                }
                ports.insert(port.clone(), BTreeMap::new());
            }
        }
        "USER" => {
            need_arg("USER")?;
            config.user = rest.to_string();
        }
        "WORKDIR" => {
            need_arg("WORKDIR")?;
            config.working_dir = rest.to_string();
        }
        "STOPSIGNAL" => {
            need_arg("STOPSIGNAL")?;
            config.stop_signal = Some(rest.to_string());
        }
        "VOLUME" => {
            need_arg("VOLUME")?;
            let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
            let list = json_array(rest).unwrap_or_else(|| words(rest));
            for v in list {
                volumes.insert(v, BTreeMap::new());
            }
        }
        "ONBUILD" => {
            need_arg("ONBUILD")?;
            config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(rest.to_string());
        }
        _ => {
            return Err(ImageError::InvalidArgument(format!(
                "{} is not a valid change command",
                change.split_whitespace().next().unwrap_or(change)
            )));
        }
    }
    Ok(())
}

/// JSON form (`["a","b"]`) or shell form (`/bin/sh -c "..."`).
fn exec_or_shell(rest: &str) -> Vec<String> {
    json_array(rest).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
}

fn json_array(s: &str) -> Option<Vec<String>> {
    if s.starts_with('[') {
        serde_json::from_str(s).ok()
    } else {
        None
    }
}

/// Whitespace-separated words; double or single quotes group, backslash escapes.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') if quote != Some('\'') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// `K=V K2="v 2"` pairs, or the legacy `K value with spaces` form.
fn key_values(rest: &str, what: &str) -> Result<Vec<(String, String)>> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace).ok_or_else(|| {
            ImageError::InvalidArgument(format!("{what} must have two arguments"))
        })?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words(rest)
        .into_iter()
        .map(|w| {
            w.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    ImageError::InvalidArgument(format!("{what} names can not be blank: {w}"))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> Result<ContainerConfig> {
        let mut c = ContainerConfig::default();
        apply(
            &mut c,
            &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )?;
        Ok(c)
    }

    #[test]
    fn applies_every_supported_instruction() {
        let c = applied(&[
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /entry.sh --flag",
            r#"ENV A=1 B="two words""#,
            "ENV C three four",
            "env A=override",
            "EXPOSE 80 53/udp",
            r#"LABEL maintainer="me" version=1"#,
            "USER nobody",
            "WORKDIR /srv",
            r#"VOLUME ["/data", "/logs"]"#,
            "STOPSIGNAL SIGTERM",
            "ONBUILD RUN echo built",
        ])
        .unwrap();
        assert_eq!(c.cmd.unwrap(), vec!["sh", "-c", "echo hi"]);
        assert_eq!(
            c.entrypoint.unwrap(),
            vec!["/bin/sh", "-c", "/entry.sh --flag"]
        );
        assert_eq!(
            c.env.unwrap(),
            vec!["B=two words", "C=three four", "A=override"]
        );
        let ports = c.exposed_ports.unwrap();
        assert!(ports.contains_key("80/tcp") && ports.contains_key("53/udp"));
        let labels = c.labels.unwrap();
        assert_eq!(labels["maintainer"], "me");
        assert_eq!(labels["version"], "1");
        assert_eq!(c.user, "nobody");
        assert_eq!(c.working_dir, "/srv");
        let vols = c.volumes.unwrap();
        assert!(vols.contains_key("/data") && vols.contains_key("/logs"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGTERM"));
        assert_eq!(c.on_build.unwrap(), vec!["RUN echo built"]);
    }

    #[test]
    fn rejects_unknown_instructions() {
        let err = applied(&["FOO bar"]).unwrap_err();
        assert_eq!(err.to_string(), "FOO is not a valid change command");
        assert_eq!(err.kind(), berth_api::ErrorKind::InvalidArgument);
        assert!(applied(&["EXPOSE notaport"]).is_err());
        assert!(applied(&["ENV"]).is_err());
    }
}
