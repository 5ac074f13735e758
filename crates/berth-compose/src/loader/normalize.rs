//! The merged model into a [`Project`]: profiles, implicit dependencies, the default network,
//! resource names, environment from `env_file`s and the shell, and the consistency checks
//! (dependencies, cycles, undefined networks, volumes, secrets and configs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::Environment;
use super::dotenv::read_env_file;
use crate::error::LoadError;
use crate::model::{Project, Service, ServiceConfig};

pub struct Inputs {
    pub model: Value,
    pub name: String,
    pub project_dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub env: Environment,
    pub profiles: Vec<String>,
    pub requested: Vec<String>,
}

fn section(model: &Value, key: &str) -> Map<String, Value> {
    model
        .get(key)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn enabled_by_profiles(service: &Value, active: &[String]) -> bool {
    let profiles: Vec<&str> = service
        .get("profiles")
        .and_then(Value::as_array)
        .map(|p| p.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    profiles.is_empty()
        || active.iter().any(|a| a == "*")
        || profiles.iter().any(|p| active.iter().any(|a| a == p))
}

fn dependencies(service: &Value) -> Vec<(String, bool)> {
    service
        .get("depends_on")
        .and_then(Value::as_object)
        .map(|d| {
            d.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.get("required").and_then(Value::as_bool).unwrap_or(true),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn to_project(inputs: Inputs) -> Result<Project, LoadError> {
    let Inputs {
        mut model,
        name,
        project_dir,
        files,
        env,
        profiles,
        requested,
    } = inputs;
    let mut services = section(&model, "services");
    for r in &requested {
        if !services.contains_key(r) {
            return Err(LoadError::NoSuchService(r.clone()));
        }
    }
    // Implicit dependencies first, so that profiles and ordering see them.
    for service in services.values_mut() {
        add_implicit_dependencies(service);
    }
    let mut enabled: BTreeSet<String> = services
        .iter()
        .filter(|(_, s)| enabled_by_profiles(s, &profiles))
        .map(|(n, _)| n.clone())
        .collect();
    // Named services and what they depend on are enabled whatever their profiles.
    let mut queue: Vec<String> = requested.clone();
    while let Some(n) = queue.pop() {
        if enabled.insert(n.clone()) || requested.contains(&n) {
            for (d, _) in services.get(&n).map(dependencies).unwrap_or_default() {
                if !enabled.contains(&d) && services.contains_key(&d) {
                    queue.push(d);
                }
            }
        }
    }
    for n in &enabled {
        let service = &services[n];
        for (dep, required) in dependencies(service) {
            if !enabled.contains(&dep) && required {
                return Err(LoadError::UndefinedDependency {
                    service: n.clone(),
                    dependency: dep,
                });
            }
        }
    }
    check_cycles(&services, &enabled)?;

    let mut networks = section(&model, "networks");
    let mut volumes = section(&model, "volumes");
    let mut secrets = section(&model, "secrets");
    let mut configs = section(&model, "configs");
    let mut hash_views: BTreeMap<String, Value> = BTreeMap::new();
    for (sname, service) in services.iter_mut() {
        let s = service.as_object_mut().expect("services are mappings");
        // Optional dependencies that are not enabled are dropped.
        if let Some(Value::Object(deps)) = s.get_mut("depends_on") {
            deps.retain(|d, _| enabled.contains(d) || !enabled.contains(sname));
        }
        if !s.contains_key("networks") && !s.contains_key("network_mode") {
            s.insert("networks".into(), json!({"default": null}));
        }
        if enabled.contains(sname)
            && s.get("networks").and_then(|n| n.get("default")).is_some()
            && !networks.contains_key("default")
        {
            networks.insert("default".into(), json!({}));
        }
        resolve_environment(s, &env)?;
        // After the env_files are merged: the hash Compose writes in its label is taken then.
        let lookup = |k: &str| env.vars.get(k).cloned();
        hash_views.insert(sname.clone(), crate::hash::view(s, &lookup));
    }
    for (key, net) in networks.iter_mut() {
        name_resource(net, key, &name);
    }
    for (key, vol) in volumes.iter_mut() {
        name_resource(vol, key, &name);
    }
    for (key, item) in secrets.iter_mut().chain(configs.iter_mut()) {
        name_resource(item, key, &name);
    }

    let mut project = Project {
        name: name.clone(),
        working_dir: project_dir,
        config_files: files,
        env_files: env.files.clone(),
        services: BTreeMap::new(),
        disabled: BTreeMap::new(),
        networks: typed(&networks)?,
        volumes: typed(&volumes)?,
        secrets: typed(&secrets)?,
        configs: typed(&configs)?,
        model: Value::Null,
        environment: env.vars.clone(),
    };
    let mut enabled_raw = Map::new();
    for (sname, raw) in services {
        let config: ServiceConfig =
            serde_json::from_value(raw.clone()).map_err(|e| LoadError::Field {
                service: sname.clone(),
                field: "service",
                value: String::new(),
                message: e.to_string(),
            })?;
        let service = Service {
            name: sname.clone(),
            config,
            raw: raw.clone(),
            hash_view: hash_views.remove(&sname).unwrap_or(Value::Null),
        };
        if enabled.contains(&sname) {
            check_service(&service, &project)?;
            enabled_raw.insert(sname.clone(), raw);
            project.services.insert(sname, service);
        } else {
            project.disabled.insert(sname, service);
        }
    }
    let top = model.as_object_mut().expect("the model is a mapping");
    top.remove("include");
    top.remove("version");
    top.insert("name".into(), json!(name));
    top.insert("services".into(), Value::Object(enabled_raw));
    for (key, items) in [
        ("networks", networks),
        ("volumes", volumes),
        ("secrets", secrets),
        ("configs", configs),
    ] {
        if items.is_empty() {
            top.remove(key);
        } else {
            top.insert(key.into(), Value::Object(items));
        }
    }
    project.model = model;
    Ok(project)
}

fn typed<T: serde::de::DeserializeOwned>(
    items: &Map<String, Value>,
) -> Result<BTreeMap<String, T>, LoadError> {
    items
        .iter()
        .map(|(k, v)| {
            serde_json::from_value(v.clone())
                .map(|t| (k.clone(), t))
                .map_err(|e| LoadError::Field {
                    service: String::new(),
                    field: "resource",
                    value: k.clone(),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// `PROJECT_KEY` unless named, or the key itself for an external resource.
fn name_resource(item: &mut Value, key: &str, project: &str) {
    let Some(o) = item.as_object_mut() else {
        return;
    };
    let external = o.get("external").and_then(Value::as_bool).unwrap_or(false);
    if !o.contains_key("name") {
        let name = if external {
            key.to_string()
        } else {
            format!("{project}_{key}")
        };
        o.insert("name".into(), json!(name));
    }
}

fn add_implicit_dependencies(service: &mut Value) {
    let Some(s) = service.as_object_mut() else {
        return;
    };
    let mut implicit = Vec::new();
    if let Some(mode) = s.get("network_mode").and_then(Value::as_str)
        && let Some(other) = mode.strip_prefix("service:")
    {
        implicit.push(other.to_string());
    }
    for from in s
        .get("volumes_from")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(f) = from.as_str()
            && !f.starts_with("container:")
        {
            implicit.push(f.split(':').next().unwrap_or(f).to_string());
        }
    }
    for link in s
        .get("links")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(l) = link.as_str() {
            implicit.push(l.split(':').next().unwrap_or(l).to_string());
        }
    }
    if implicit.is_empty() {
        return;
    }
    let deps = s
        .entry("depends_on")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(d) = deps.as_object_mut() {
        for name in implicit {
            d.entry(name)
                .or_insert(json!({"condition": "service_started", "required": true}));
        }
    }
}

/// `env_file`s then `environment`; variables without a value come from the shell (or stay
/// unset). The resolved map replaces both, as Compose shows it.
fn resolve_environment(s: &mut Map<String, Value>, env: &Environment) -> Result<(), LoadError> {
    let mut values: BTreeMap<String, Option<String>> = BTreeMap::new();
    if let Some(Value::Array(files)) = s.remove("env_file") {
        for f in files {
            let path = PathBuf::from(f.get("path").and_then(Value::as_str).unwrap_or_default());
            let required = f.get("required").and_then(Value::as_bool).unwrap_or(true);
            if !required && !path.exists() {
                continue;
            }
            values.extend(read_env_file(&path, env)?);
        }
    }
    if let Some(Value::Object(own)) = s.get("environment") {
        for (k, v) in own {
            values.insert(k.clone(), v.as_str().map(str::to_string));
        }
    }
    if values.is_empty() {
        return Ok(());
    }
    let resolved: Map<String, Value> = values
        .into_iter()
        .map(|(k, v)| {
            let v = v.or_else(|| env.vars.get(&k).cloned());
            (k, v.map_or(Value::Null, Value::String))
        })
        .collect();
    s.insert("environment".into(), Value::Object(resolved));
    Ok(())
}

fn check_cycles(
    services: &Map<String, Value>,
    enabled: &BTreeSet<String>,
) -> Result<(), LoadError> {
    fn visit(
        n: &str,
        services: &Map<String, Value>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Result<(), LoadError> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_string());
            return Err(LoadError::Cycle { cycle });
        }
        if done.contains(n) {
            return Ok(());
        }
        path.push(n.to_string());
        for (d, _) in services.get(n).map(dependencies).unwrap_or_default() {
            visit(&d, services, path, done)?;
        }
        path.pop();
        done.insert(n.to_string());
        Ok(())
    }
    let mut done = BTreeSet::new();
    for n in enabled {
        visit(n, services, &mut Vec::new(), &mut done)?;
    }
    Ok(())
}

fn check_service(service: &Service, project: &Project) -> Result<(), LoadError> {
    let c = &service.config;
    let undefined = |kind: &'static str, name: &str| LoadError::Undefined {
        service: service.name.clone(),
        kind,
        name: name.to_string(),
    };
    if c.image.is_none() && c.build.is_none() {
        return Err(LoadError::NoImage {
            service: service.name.clone(),
        });
    }
    for net in c.networks.keys() {
        if !project.networks.contains_key(net) {
            return Err(undefined("network", net));
        }
    }
    for v in &c.volumes {
        if v.kind == "volume"
            && let Some(src) = &v.source
            && !project.volumes.contains_key(src)
        {
            return Err(undefined("volume", src));
        }
    }
    for s in &c.secrets {
        if !project.secrets.contains_key(&s.source) {
            return Err(undefined("secret", &s.source));
        }
    }
    for s in &c.configs {
        if !project.configs.contains_key(&s.source) {
            return Err(undefined("config", &s.source));
        }
    }
    if c.container_name.is_some() && service.replicas() > 1 {
        return Err(LoadError::ContainerNameWithScale {
            service: service.name.clone(),
        });
    }
    Ok(())
}
