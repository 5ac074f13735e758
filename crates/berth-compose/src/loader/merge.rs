//! Merging an override into a base (several `-f` files, `extends`), with the specification's
//! rules on canonical trees: mappings merge key by key; `command`, `entrypoint` and
//! `healthcheck.test` are replaced; `volumes` and `devices` merge by target, `secrets` and
//! `configs` by target or source; other sequences append what is not there yet.

use serde_json::Value;

/// Merges `over` into `base` (a whole file, or one service when `path` is `services.*`).
pub fn merge(base: &mut Value, over: Value, path: &str) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (key, value) in o {
                let sub = child(path, &key);
                match b.get_mut(&key) {
                    Some(existing) if !replaces(&sub) => merge(existing, value, &sub),
                    _ => {
                        b.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(o)) => {
            let key_of: Option<fn(&Value) -> Option<String>> = match last(path) {
                "volumes" | "devices" if in_service(path) => Some(by_target),
                "secrets" | "configs" if in_service(path) => Some(by_target_or_source),
                _ => None,
            };
            for item in o {
                match key_of {
                    Some(k) => {
                        let key = k(&item);
                        match b.iter_mut().find(|e| key.is_some() && k(e) == key) {
                            Some(existing) => *existing = item,
                            None => b.push(item),
                        }
                    }
                    None => {
                        if !b.contains(&item) {
                            b.push(item);
                        }
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn last(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// `services.NAME.KEY`: a field of a service (service names may hold dots, so count from
/// the front only when the path starts at the file).
fn in_service(path: &str) -> bool {
    path.starts_with("services.") || path.starts_with("service.")
}

fn replaces(path: &str) -> bool {
    in_service(path)
        && matches!(
            last(path),
            "command" | "entrypoint" | "test" | "dns" | "dns_search" | "dns_opt"
        )
}

fn by_target(v: &Value) -> Option<String> {
    v.get("target")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| v.as_str().map(str::to_string))
}

fn by_target_or_source(v: &Value) -> Option<String> {
    v.get("target")
        .or_else(|| v.get("source"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merges_as_the_spec_says() {
        let mut base = json!({"services": {"web": {
            "image": "a", "command": ["x", "y"], "environment": {"A": "1", "B": "2"},
            "ports": [{"target": 80}], "volumes": [{"type": "volume", "source": "d", "target": "/d"}],
            "healthcheck": {"test": ["CMD", "a"], "interval": "1s"}}}});
        let over = json!({"services": {"web": {
            "image": "b", "command": ["z"], "environment": {"B": "3"},
            "ports": [{"target": 80}, {"target": 443}],
            "volumes": [{"type": "bind", "source": "/h", "target": "/d"}],
            "healthcheck": {"test": ["CMD", "b"]}}, "db": {"image": "pg"}}});
        merge(&mut base, over, "");
        let web = &base["services"]["web"];
        assert_eq!(web["image"], "b");
        assert_eq!(web["command"], json!(["z"]));
        assert_eq!(web["environment"], json!({"A": "1", "B": "3"}));
        assert_eq!(web["ports"].as_array().unwrap().len(), 2);
        assert_eq!(
            web["volumes"],
            json!([{"type": "bind", "source": "/h", "target": "/d"}])
        );
        assert_eq!(
            web["healthcheck"],
            json!({"test": ["CMD", "b"], "interval": "1s"})
        );
        assert_eq!(base["services"]["db"]["image"], "pg");
    }
}
