//! `extends`: a service starts from another one (in the same file or another file) and its own
//! fields are merged over it with the usual merge rules. Paths of an extended file were made
//! absolute against that file's directory when it was canonicalised.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{Environment, canonical, interpolate, merge, parse_yaml, read_text, schema};
use crate::error::LoadError;

pub fn apply_extends(tree: &mut Value, file: &Path, env: &Environment) -> Result<(), LoadError> {
    let Some(Value::Object(services)) = tree.get("services").cloned() else {
        return Ok(());
    };
    if !services.values().any(|s| s.get("extends").is_some()) {
        return Ok(());
    }
    let mut out = Map::new();
    for name in services.keys() {
        let mut stack = Vec::new();
        out.insert(
            name.clone(),
            resolve(name, &services, file, env, &mut stack)?,
        );
    }
    tree["services"] = Value::Object(out);
    Ok(())
}

fn resolve(
    name: &str,
    services: &Map<String, Value>,
    file: &Path,
    env: &Environment,
    stack: &mut Vec<(PathBuf, String)>,
) -> Result<Value, LoadError> {
    let err = |message: String| LoadError::Extends {
        service: name.to_string(),
        message,
    };
    let service = services
        .get(name)
        .ok_or_else(|| err(format!("service {name:?} not found in {}", file.display())))?;
    let Some(ext) = service.get("extends") else {
        return Ok(service.clone());
    };
    let key = (file.to_path_buf(), name.to_string());
    if stack.contains(&key) {
        return Err(err("circular reference with extends".into()));
    }
    stack.push(key);
    let base_name = ext
        .get("service")
        .and_then(Value::as_str)
        .ok_or_else(|| err("extends has no service".into()))?;
    let mut base = match ext.get("file").and_then(Value::as_str) {
        Some(other) => {
            let path = file.parent().unwrap_or(Path::new("/")).join(other);
            let text = read_text(&path)?;
            let mut tree = parse_yaml(&path, &text)?;
            interpolate::interpolate_tree(&mut tree, env, "")?;
            schema::validate(&mut tree).map_err(|message| LoadError::Schema {
                path: path.clone(),
                message,
            })?;
            let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
            canonical::canonicalise_file(&mut tree, &dir)?;
            let Some(Value::Object(others)) = tree.get("services").cloned() else {
                return Err(err(format!("{} has no services", path.display())));
            };
            resolve(base_name, &others, &path, env, stack)?
        }
        None => resolve(base_name, services, file, env, stack)?,
    };
    stack.pop();
    let mut own = service.clone();
    if let Some(o) = own.as_object_mut() {
        o.remove("extends");
    }
    if let Some(b) = base.as_object_mut() {
        b.remove("extends");
    }
    merge::merge(&mut base, own, &format!("services.{name}"));
    Ok(base)
}
