//! One shape per field: the short syntaxes of a (validated) compose file become the long ones
//! before files are merged, so merging and the typed model see one form. Relative paths become
//! absolute against `base` (the project directory, or the directory of an extended file).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::error::LoadError;

/// Rewrites a whole file in place.
pub fn canonicalise_file(file: &mut Value, base: &Path) -> Result<(), LoadError> {
    let Some(map) = file.as_object_mut() else {
        return Ok(());
    };
    if let Some(Value::Object(services)) = map.get_mut("services") {
        for (name, service) in services.iter_mut() {
            if service.is_null() {
                *service = json!({});
            }
            canonicalise_service(name, service, base)?;
        }
    }
    for section in ["networks", "volumes", "secrets", "configs"] {
        if let Some(Value::Object(items)) = map.get_mut(section) {
            for item in items.values_mut() {
                if item.is_null() {
                    *item = json!({});
                }
                if let Some(obj) = item.as_object_mut() {
                    to_label_map(obj, "labels");
                    to_string_map(obj, "driver_opts");
                    if let Some(Value::String(f)) = obj.get("file") {
                        let p = absolute(base, f);
                        obj.insert("file".into(), json!(p));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Turns `Value` scalars into strings as Compose prints them (`2` not `2.0`, `true`).
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `["A=1", "B"]` or `{A: 1, B: null}` into `{A: "1", B: null}`.
fn to_string_map(obj: &mut Map<String, Value>, key: &str) {
    let Some(value) = obj.get_mut(key) else {
        return;
    };
    let mut out = Map::new();
    match value {
        Value::Array(items) => {
            for item in items.iter() {
                let text = scalar_text(item).unwrap_or_default();
                match text.split_once('=') {
                    Some((k, v)) => out.insert(k.to_string(), json!(v)),
                    None => out.insert(text, Value::Null),
                };
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter() {
                out.insert(k.clone(), scalar_text(v).map_or(Value::Null, Value::String));
            }
        }
        _ => return,
    }
    *value = Value::Object(out);
}

/// Labels as [`to_string_map`], a key without a value being `""` (compose-go's `Labels`), so
/// `labels: [flag]` loads.
fn to_label_map(obj: &mut Map<String, Value>, key: &str) {
    to_string_map(obj, key);
    if let Some(Value::Object(map)) = obj.get_mut(key) {
        for v in map.values_mut() {
            if v.is_null() {
                *v = json!("");
            }
        }
    }
}

fn absolute(base: &Path, path: &str) -> String {
    let expanded = match path.strip_prefix("~") {
        Some(rest) => {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            format!("{home}{rest}")
        }
        None => path.to_string(),
    };
    let p = Path::new(&expanded);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    clean(&joined).to_string_lossy().into_owned()
}

/// `a/./b/../c` into `a/c`, lexically (the path may not exist yet).
/// `.` and `..` components resolved lexically.
pub(crate) fn clean_path(path: &Path) -> PathBuf {
    clean(path)
}

fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Splits a command line as a POSIX shell would (quotes and backslashes), as Compose does for
/// `command: echo "a b"`.
pub fn shell_split(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => word.push(n),
                            Some(n) => {
                                word.push('\\');
                                word.push(n);
                            }
                            None => word.push('\\'),
                        },
                        _ => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

fn service_err(service: &str, field: &'static str, value: &str, message: &str) -> LoadError {
    LoadError::Field {
        service: service.to_string(),
        field,
        value: value.to_string(),
        message: message.to_string(),
    }
}

fn canonicalise_service(name: &str, service: &mut Value, base: &Path) -> Result<(), LoadError> {
    let Some(s) = service.as_object_mut() else {
        return Ok(());
    };
    to_string_map(s, "environment");
    to_label_map(s, "labels");
    to_string_map(s, "sysctls");
    to_string_map(s, "storage_opt");
    // Integer fields the schema also takes as strings (`cpu_shares: "512"`).
    for key in [
        "cpu_count",
        "cpu_period",
        "cpu_quota",
        "cpu_rt_period",
        "cpu_rt_runtime",
        "cpu_shares",
        "oom_score_adj",
        "pids_limit",
    ] {
        if let Some(Value::String(text)) = s.get(key)
            && let Ok(n) = text.trim().parse::<i64>()
        {
            s.insert(key.into(), json!(n));
        }
    }
    to_label_map(s, "annotations");
    for key in ["command", "entrypoint"] {
        if let Some(Value::String(text)) = s.get(key) {
            let words = shell_split(text);
            s.insert(key.into(), json!(words));
        }
    }
    for key in ["dns", "dns_search", "tmpfs", "env_file"] {
        if let Some(v @ Value::String(_)) = s.get(key) {
            let list = json!([v.clone()]);
            s.insert(key.into(), list);
        }
    }
    if let Some(Value::Array(files)) = s.get_mut("env_file") {
        for f in files.iter_mut() {
            if let Value::String(p) = f {
                *f = json!({"path": p.clone(), "required": true});
            }
            if let Some(obj) = f.as_object_mut() {
                obj.entry("required").or_insert(json!(true));
                if let Some(Value::String(p)) = obj.get("path") {
                    let abs = absolute(base, p);
                    obj.insert("path".into(), json!(abs));
                }
            }
        }
    }
    if let Some(Value::String(svc)) = s.get("extends") {
        let v = json!({"service": svc.clone()});
        s.insert("extends".into(), v);
    }
    if let Some(build) = s.get_mut("build") {
        if let Value::String(ctx) = build {
            *build = json!({"context": ctx.clone()});
        }
        if let Some(b) = build.as_object_mut() {
            to_string_map(b, "args");
            to_label_map(b, "labels");
            let ctx = b
                .get("context")
                .and_then(Value::as_str)
                .unwrap_or(".")
                .to_string();
            // A remote context (git URL) stays as it is.
            if !ctx.contains("://") && !ctx.starts_with("git@") {
                b.insert("context".into(), json!(absolute(base, &ctx)));
            }
            if !b.contains_key("dockerfile_inline") {
                b.entry("dockerfile").or_insert(json!("Dockerfile"));
            }
        }
    }
    if let Some(Value::Array(list)) = s.get("depends_on") {
        let map: Map<String, Value> = list
            .iter()
            .filter_map(Value::as_str)
            .map(|d| (d.to_string(), json!({})))
            .collect();
        s.insert("depends_on".into(), Value::Object(map));
    }
    if let Some(Value::Object(deps)) = s.get_mut("depends_on") {
        for dep in deps.values_mut() {
            if let Some(d) = dep.as_object_mut() {
                d.entry("condition").or_insert(json!("service_started"));
                d.entry("required").or_insert(json!(true));
            }
        }
    }
    if let Some(Value::Array(list)) = s.get("networks") {
        let map: Map<String, Value> = list
            .iter()
            .filter_map(Value::as_str)
            .map(|n| (n.to_string(), Value::Null))
            .collect();
        s.insert("networks".into(), Value::Object(map));
    }
    if let Some(Value::Object(hc)) = s.get_mut("healthcheck")
        && let Some(Value::String(cmd)) = hc.get("test")
    {
        let v = json!(["CMD-SHELL", cmd.clone()]);
        hc.insert("test".into(), v);
    }
    for key in ["secrets", "configs"] {
        if let Some(Value::Array(list)) = s.get_mut(key) {
            for item in list.iter_mut() {
                if let Value::String(src) = item {
                    *item = json!({"source": src.clone()});
                }
            }
        }
    }
    if let Some(Value::Array(expose)) = s.get_mut("expose") {
        for e in expose.iter_mut() {
            if let Some(t) = scalar_text(e) {
                *e = json!(t);
            }
        }
    }
    if let Some(Value::Array(ports)) = s.get("ports") {
        let mut long = Vec::new();
        for p in ports {
            match p {
                Value::Object(o) => {
                    let mut o = o.clone();
                    o.entry("protocol").or_insert(json!("tcp"));
                    o.entry("mode").or_insert(json!("ingress"));
                    // The schema allows an (interpolated) string target: a number here.
                    if let Some(Value::String(t)) = o.get("target") {
                        let port: u32 = t
                            .parse()
                            .map_err(|_| service_err(name, "port", t, "invalid target port"))?;
                        o.insert("target".into(), json!(port));
                    }
                    if let Some(published) = o.get("published").and_then(scalar_text) {
                        o.insert("published".into(), json!(published));
                    }
                    long.push(Value::Object(o));
                }
                other => {
                    let text = scalar_text(other).unwrap_or_default();
                    long.extend(
                        parse_port(&text).map_err(|m| service_err(name, "port", &text, &m))?,
                    );
                }
            }
        }
        s.insert("ports".into(), Value::Array(long));
    }
    if let Some(Value::Array(volumes)) = s.get("volumes") {
        let mut long = Vec::new();
        for v in volumes {
            match v {
                Value::String(text) => long.push(
                    parse_volume(text, base).map_err(|m| service_err(name, "volume", text, &m))?,
                ),
                Value::Object(o) => {
                    let mut o = o.clone();
                    if o.get("type").and_then(Value::as_str) == Some("bind")
                        && let Some(Value::String(src)) = o.get("source")
                    {
                        let abs = absolute(base, src);
                        o.insert("source".into(), json!(abs));
                    }
                    long.push(Value::Object(o));
                }
                _ => {}
            }
        }
        s.insert("volumes".into(), Value::Array(long));
    }
    Ok(())
}

/// `[[HOST_IP:]HOST_PORT[-RANGE]:]CONTAINER_PORT[-RANGE][/PROTOCOL]` into long entries.
pub fn parse_port(text: &str) -> Result<Vec<Value>, String> {
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((s, p)) => (s, p),
        None => (text, "tcp"),
    };
    // An IPv6 host address is bracketed: `[::1]:8080:80`.
    let (host_ip, rest) = if let Some(r) = spec.strip_prefix('[') {
        let (ip, rest) = r.split_once(']').ok_or("unclosed [ in host address")?;
        (ip.to_string(), rest.trim_start_matches(':').to_string())
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (String::new(), spec.to_string()),
            3 => (parts[0].to_string(), format!("{}:{}", parts[1], parts[2])),
            _ => return Err("too many colons".into()),
        }
    };
    let (published, target) = match rest.split_once(':') {
        Some((p, t)) => (p.to_string(), t.to_string()),
        None => (String::new(), rest.clone()),
    };
    let range = |r: &str| -> Result<(u32, u32), String> {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        let a: u32 = a.parse().map_err(|_| format!("invalid port {a:?}"))?;
        let b: u32 = b.parse().map_err(|_| format!("invalid port {b:?}"))?;
        if a == 0 || b < a || b > 65535 {
            return Err(format!("invalid port range {r:?}"));
        }
        Ok((a, b))
    };
    let (t0, t1) = range(&target)?;
    let published_range = if published.is_empty() {
        None
    } else {
        Some(range(&published)?)
    };
    let mut out = Vec::new();
    for (i, port) in (t0..=t1).enumerate() {
        let mut entry = Map::new();
        entry.insert("mode".into(), json!("ingress"));
        if !host_ip.is_empty() {
            entry.insert("host_ip".into(), json!(host_ip));
        }
        entry.insert("target".into(), json!(port));
        if let Some((p0, p1)) = published_range {
            let published = if p1 - p0 == t1 - t0 {
                (p0 + i as u32).to_string()
            } else {
                // A host range for one container port: the daemon picks one in it.
                format!("{p0}-{p1}")
            };
            entry.insert("published".into(), json!(published));
        }
        entry.insert("protocol".into(), json!(protocol));
        out.push(Value::Object(entry));
    }
    Ok(out)
}

/// `[SOURCE:]TARGET[:MODE]` into a long volume entry.
pub fn parse_volume(text: &str, base: &Path) -> Result<Value, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [s, t] if t.starts_with('/') => (*s, *t, ""),
        [t, m] => ("", *t, *m),
        [s, t, m] => (*s, *t, *m),
        _ => return Err("too many colons".into()),
    };
    if target.is_empty() {
        return Err("empty target".into());
    }
    let mut entry = Map::new();
    let is_path = source.starts_with('.') || source.starts_with('/') || source.starts_with('~');
    let kind = if source.is_empty() || !is_path {
        "volume"
    } else {
        "bind"
    };
    entry.insert("type".into(), json!(kind));
    if !source.is_empty() {
        let src = if kind == "bind" {
            absolute(base, source)
        } else {
            source.to_string()
        };
        entry.insert("source".into(), json!(src));
    }
    entry.insert("target".into(), json!(target));
    let modes: Vec<&str> = mode.split(',').filter(|m| !m.is_empty()).collect();
    if modes.contains(&"ro") {
        entry.insert("read_only".into(), json!(true));
    }
    if kind == "bind" {
        let mut bind = Map::new();
        bind.insert("create_host_path".into(), json!(true));
        for m in &modes {
            if matches!(*m, "z" | "Z") {
                bind.insert("selinux".into(), json!(m));
            }
            if matches!(
                *m,
                "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate"
            ) {
                bind.insert("propagation".into(), json!(m));
            }
        }
        entry.insert("bind".into(), Value::Object(bind));
    } else if modes.contains(&"nocopy") {
        entry.insert("volume".into(), json!({"nocopy": true}));
    } else {
        entry.insert("volume".into(), json!({}));
    }
    Ok(Value::Object(entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_short_syntax_becomes_long() {
        let p = |t: &str| serde_json::to_string(&parse_port(t).unwrap()).unwrap();
        assert_eq!(
            p("80"),
            r#"[{"mode":"ingress","protocol":"tcp","target":80}]"#
        );
        assert_eq!(
            p("127.0.0.1:8080:80/udp"),
            r#"[{"host_ip":"127.0.0.1","mode":"ingress","protocol":"udp","published":"8080","target":80}]"#
        );
        assert_eq!(parse_port("9090-9091:8080-8081").unwrap().len(), 2);
        assert_eq!(parse_port("[::1]:6001:6001").unwrap()[0]["host_ip"], "::1");
        assert!(parse_port("a:b").is_err());
    }

    #[test]
    fn volumes_short_syntax_becomes_long() {
        let base = Path::new("/proj");
        let v = parse_volume("./data:/data:ro", base).unwrap();
        assert_eq!(v["type"], "bind");
        assert_eq!(v["source"], "/proj/data");
        assert_eq!(v["read_only"], true);
        let v = parse_volume("db:/var/lib/db", base).unwrap();
        assert_eq!(v["type"], "volume");
        assert_eq!(v["source"], "db");
        let v = parse_volume("/anon", base).unwrap();
        assert_eq!(v["type"], "volume");
        assert!(v.get("source").is_none());
    }

    #[test]
    fn commands_split_as_a_shell_does() {
        assert_eq!(
            shell_split(r#"sh -c "echo 'a b' \"c\"" x\ y"#),
            vec!["sh", "-c", "echo 'a b' \"c\"", "x y"]
        );
    }
}
