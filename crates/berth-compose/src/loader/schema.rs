//! Validation against the Compose specification's JSON schema (`compose-spec.json`, shipped
//! by the compose-spec project and embedded here), as compose-go does after interpolation.
//! Only the keywords the schema uses are implemented: `$ref`, `type`, `properties`,
//! `patternProperties`, `additionalProperties`, `items`, `oneOf`, `required`, `enum`,
//! `uniqueItems`, `minimum`, `maximum`, `pattern`. Messages are Compose's:
//! `services.web Additional property foo is not allowed`.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

static SCHEMA_TEXT: &str = include_str!("compose-spec.json");

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::from_str(SCHEMA_TEXT).expect("embedded compose-spec.json"))
}

/// Checks a whole (interpolated) compose file; the error is the first violation found.
/// A string where the schema wants a number or a boolean is converted when it reads as one
/// (interpolation makes strings: `replicas: ${N}`), as compose-go's casts do.
pub fn validate(file: &mut Value) -> Result<(), String> {
    let root = schema();
    check(root, root, file, "")
}

fn show(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut target = root;
            for part in r.trim_start_matches("#/").split('/') {
                target = &target[part];
            }
            resolve(root, target)
        }
        None => node,
    }
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn article(kind: &str) -> &'static str {
    match kind {
        "string" => "a string",
        "number" => "a number",
        "integer" => "an integer",
        "boolean" => "a boolean",
        "object" => "a mapping",
        "array" => "a list",
        "null" => "null",
        _ => "a value",
    }
}

fn regex(pattern: &str) -> Option<Regex> {
    // The schema's patterns are few; compile on use (validation runs once per file).
    Regex::new(pattern).ok()
}

/// The string as a value of `kind`, if it reads as one.
fn coerce(kind: &str, text: &str) -> Option<Value> {
    match kind {
        "integer" => text.trim().parse::<i64>().ok().map(Value::from),
        "number" => {
            let t = text.trim();
            t.parse::<i64>().ok().map(Value::from).or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            })
        }
        "boolean" => match text.trim() {
            "true" | "True" | "TRUE" => Some(Value::Bool(true)),
            "false" | "False" | "FALSE" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `cast` prints as `text` (so the conversion loses nothing).
fn reads_back(cast: &Value, text: &str) -> bool {
    let shown = cast.to_string();
    shown == text
}

fn check(root: &Value, node: &Value, value: &mut Value, path: &str) -> Result<(), String> {
    let node = resolve(root, node);
    if let Some(kinds) = node.get("type") {
        let kinds: Vec<&str> = match kinds {
            Value::String(k) => vec![k.as_str()],
            Value::Array(ks) => ks.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !kinds.is_empty()
            && !kinds.iter().any(|k| type_matches(k, value))
            && let Value::String(text) = &*value
            && let Some(cast) = kinds.iter().find_map(|k| coerce(k, text))
        {
            *value = cast;
        } else if kinds.contains(&"string")
            && !kinds.contains(&"number")
            && let Value::String(text) = &*value
            && let Some(cast) = ["integer", "boolean"]
                .iter()
                .filter(|k| kinds.contains(k))
                .find_map(|k| coerce(k, text))
                // Only text that reads back the same ("80", "true"; not "007").
                .filter(|cast| reads_back(cast, text))
        {
            // A typed field that also takes a string so that it can be interpolated
            // (`privileged: ${PRIV}`): the value it stands for.
            *value = cast;
        }
        if !kinds.is_empty() && !kinds.iter().any(|k| type_matches(k, value)) {
            let wanted: Vec<&str> = kinds.iter().map(|k| article(k)).collect();
            return Err(format!("{} must be {}", show(path), wanted.join(" or ")));
        }
    }
    if let Some(options) = node.get("enum").and_then(Value::as_array)
        && !options.contains(&*value)
    {
        let names: Vec<String> = options
            .iter()
            .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_string))
            .collect();
        return Err(format!(
            "{} must be one of: {}",
            show(path),
            names.join(", ")
        ));
    }
    if let Some(branches) = node.get("oneOf").and_then(Value::as_array) {
        let mut errors = Vec::new();
        for branch in branches {
            match check(root, branch, value, path) {
                Ok(()) => {
                    errors.clear();
                    break;
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            // The deepest message names the most specific problem (a branch of the right
            // type that failed inside), rather than "must be a string" for a mapping.
            let deepest = errors
                .iter()
                .max_by_key(|e| e.split(' ').next().unwrap_or("").len())
                .cloned()
                .unwrap_or_default();
            return Err(deepest);
        }
    }
    match value {
        Value::Object(map) => {
            let properties = node.get("properties").and_then(Value::as_object);
            let patterns = node.get("patternProperties").and_then(Value::as_object);
            let additional = node.get("additionalProperties");
            if let Some(required) = node.get("required").and_then(Value::as_array) {
                for r in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(r) {
                        return Err(format!("{} {r} is required", show(path)));
                    }
                }
            }
            for (key, item) in map.iter_mut() {
                let sub = child(path, key);
                let mut matched = false;
                if let Some(schema) = properties.and_then(|p| p.get(key)) {
                    matched = true;
                    check(root, schema, item, &sub)?;
                }
                for (pattern, schema) in patterns.into_iter().flatten() {
                    if regex(pattern).is_some_and(|r| r.is_match(key)) {
                        matched = true;
                        check(root, schema, item, &sub)?;
                    }
                }
                if !matched {
                    match additional {
                        Some(Value::Bool(false)) => {
                            return Err(format!(
                                "{} Additional property {key} is not allowed",
                                show(path)
                            ));
                        }
                        Some(schema @ Value::Object(_)) => check(root, schema, item, &sub)?,
                        _ => {}
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(schema) = node.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    check(root, schema, item, &child(path, &i.to_string()))?;
                }
            }
            if node.get("uniqueItems") == Some(&Value::Bool(true)) {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        return Err(format!("{} must contain unique items", show(path)));
                    }
                }
            }
        }
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or_default();
            if let Some(min) = node.get("minimum").and_then(Value::as_f64)
                && f < min
            {
                return Err(format!(
                    "{} must be greater than or equal to {min}",
                    show(path)
                ));
            }
            if let Some(max) = node.get("maximum").and_then(Value::as_f64)
                && f > max
            {
                return Err(format!(
                    "{} must be less than or equal to {max}",
                    show(path)
                ));
            }
        }
        Value::String(s) => {
            if let Some(pattern) = node.get("pattern").and_then(Value::as_str)
                && regex(pattern).is_some_and(|r| !r.is_match(s))
            {
                return Err(format!("{} does not match pattern {pattern:?}", show(path)));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn accepts_a_typical_file() {
        let mut file = json!({
            "name": "app",
            "services": {
                "web": {
                    "image": "nginx",
                    "ports": ["8080:80", {"target": 443, "published": "8443"}],
                    "environment": {"A": "1", "B": 2, "C": null},
                    "depends_on": {"db": {"condition": "service_healthy"}},
                    "x-custom": {"anything": true}
                },
                "db": {"image": "postgres", "volumes": ["data:/var/lib/postgresql/data"],
                       "healthcheck": {"test": ["CMD", "true"], "interval": "1s"}}
            },
            "volumes": {"data": {}},
            "networks": {"front": null},
            "x-anchors": 1
        });
        validate(&mut file).unwrap();
    }

    #[test]
    fn unknown_keys_are_named_as_compose_names_them() {
        let e = validate(&mut json!({"services": {"web": {"image": "x", "foo": 1}}})).unwrap_err();
        assert_eq!(e, "services.web Additional property foo is not allowed");
        let e = validate(&mut json!({"servics": {}})).unwrap_err();
        assert_eq!(e, "(root) Additional property servics is not allowed");
    }

    #[test]
    fn wrong_types_are_named() {
        let e = validate(&mut json!({"services": {"web": {"image": 3}}})).unwrap_err();
        assert_eq!(e, "services.web.image must be a string");
        let e = validate(&mut json!({"services": {"web": {"ports": {"a": 1}}}})).unwrap_err();
        assert_eq!(e, "services.web.ports must be a list");
        let e = validate(
            &mut json!({"services": {"web": {"depends_on": {"db": {"condition": "never"}}}}}),
        )
        .unwrap_err();
        assert!(e.contains("condition must be one of"), "{e}");
    }
}
