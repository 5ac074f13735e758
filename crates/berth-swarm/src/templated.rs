//! Templated secrets and configs (`--template-driver golang`, `Spec.Templating`): the payload is
//! a Go template, expanded on the node that runs the task, with that task's context, just
//! before its container starts (swarmkit's `template.PayloadContext`). The expansion lives
//! only in the task's in-memory files, as every secret does.
//!
//! The context: `.Service.ID/.Name/.Labels`, `.Node.ID/.Hostname/.Platform.Architecture/.OS`,
//! `.Task.ID/.Name/.Slot`; the functions `env "VAR"` (the task's environment), `secret
//! "TARGET"` and `config "TARGET"` (the raw payload of another secret or config this task
//! references, by its target) and swarmkit's `join SEP STRINGS...`. As in swarmkit the
//! template runs with `missingkey=error` and without the docker CLI's functions.

use berth_template::{FuncError, Funcs, Options, Template, Val, go_struct, string_arg};
use serde_json::{Value, json};

use crate::agent::{TaskFile, secret_bytes, stored, task_name};
use crate::store::State;
use crate::types::Task;

/// swarmkit's only template driver.
pub const GOLANG: &str = "golang";

/// The template's name in Go's error messages (swarmkit's).
const NAME: &str = "expansion";

/// The references of a container spec in the order `agent::task_files` makes their files:
/// secrets, then configs. Each: whether a config, the object's id, its file's target name.
fn references(cs: &Value) -> impl Iterator<Item = (bool, &str, &str)> {
    [
        ("Secrets", "SecretID", false),
        ("Configs", "ConfigID", true),
    ]
    .into_iter()
    .flat_map(move |(key, id_key, config)| {
        cs[key].as_array().into_iter().flatten().map(move |r| {
            (
                config,
                r[id_key].as_str().unwrap_or_default(),
                r["File"]["Name"].as_str().unwrap_or_default(),
            )
        })
    })
}

/// Expands the task's templated files in place: `files` as `agent::task_files` made them, one
/// per secret reference, then one per config reference. The error is dockerd's task error
/// (the task fails as its container's start would).
pub fn expand_files(state: &State, task: &Task, files: &mut [TaskFile]) -> Result<(), String> {
    let cs = &task.spec["ContainerSpec"];
    for ((config, id, _), file) in references(cs).zip(files.iter_mut()) {
        let Some(templating) = stored(state, config, id)
            .map(|s| &s.spec["Templating"])
            .filter(|t| !t.is_null())
        else {
            continue;
        };
        let kind = if config { "config" } else { "secret" };
        file.data = expand(state, task, templating, &file.data).map_err(|e| {
            format!(
                "starting container failed: unable to get {kind} from {kind} store: failed to expand templated {kind} {id}: {e}"
            )
        })?;
    }
    Ok(())
}

/// Expands one payload with `templating`'s driver for `task`.
pub fn expand(
    state: &State,
    task: &Task,
    templating: &Value,
    data: &[u8],
) -> Result<Vec<u8>, String> {
    if templating["Name"] != GOLANG {
        return Err("unrecognized template type".to_string());
    }
    let cs = &task.spec["ContainerSpec"];
    let mut funcs = Funcs::new();
    funcs.add("env", |args| {
        let var = string_arg("env", args)?;
        let found = cs["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find_map(|e| e.split_once('=').filter(|(k, _)| *k == var))
            .map_or("", |(_, v)| v);
        Ok(Some(json!(found)))
    });
    funcs.add("secret", |args| {
        let target = string_arg("secret", args)?;
        referenced(state, cs, false, &target)
    });
    funcs.add("config", |args| {
        let target = string_arg("config", args)?;
        referenced(state, cs, true, &target)
    });
    funcs.add("join", swarmkit_join);
    let options = Options {
        name: NAME.to_string(),
        missing_key_error: true,
        funcs: funcs.names(),
        ..Options::default()
    };
    // Go's `string(payload)` keeps any bytes; a Rust string must be UTF-8.
    let text = String::from_utf8_lossy(data);
    let template = Template::parse_with(&text, options).map_err(|e| e.to_string())?;
    template
        .render_with(&context(state, task), &funcs)
        .map(String::into_bytes)
        .map_err(|e| e.to_string())
}

/// The raw payload of the secret or config this task references with file target `target`.
fn referenced(state: &State, cs: &Value, config: bool, target: &str) -> Result<Val, FuncError> {
    let kind = if config { "config" } else { "secret" };
    let Some((_, id, _)) = references(cs).find(|(c, _, t)| *c == config && *t == target) else {
        return Err(FuncError::Failed(format!(
            "{kind} target {target} not found"
        )));
    };
    let Some(stored) = stored(state, config, id) else {
        return Err(FuncError::Failed(format!("{kind} {id} not found")));
    };
    Ok(Some(json!(
        String::from_utf8_lossy(&secret_bytes(&stored.spec)).into_owned()
    )))
}

/// swarmkit's `join`: the separator, then the strings.
fn swarmkit_join(args: &[Val]) -> Result<Val, FuncError> {
    let mut strings = Vec::with_capacity(args.len());
    for a in args {
        match a {
            Some(Value::String(s)) => strings.push(s.as_str()),
            _ => {
                return Err(FuncError::Args(format!(
                    "wrong type for value; expected string; got {}",
                    match a {
                        Some(Value::Number(_)) => "int",
                        Some(Value::Bool(_)) => "bool",
                        _ => "interface {}",
                    }
                )));
            }
        }
    }
    match strings.split_first() {
        Some((sep, rest)) => Ok(Some(json!(rest.join(sep)))),
        None => Err(FuncError::Failed(
            "runtime error: slice bounds out of range [1:0]".to_string(),
        )),
    }
}

/// swarmkit's `PayloadContext` for `task` on this node, with Go's types for its errors.
pub fn context(state: &State, task: &Task) -> Value {
    let service = state.services.get(&task.service_id);
    let service_name = service.map(|s| s.name().to_string()).unwrap_or_default();
    let labels = service
        .map(|s| s.spec["Labels"].clone())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let node = state.nodes.get(&task.node_id);
    let described = |f: &dyn Fn(&Value) -> &Value| {
        node.and_then(|n| f(&n.description).as_str())
            .unwrap_or_default()
            .to_string()
    };
    // Global tasks have no slot: swarmkit falls back to the node id.
    let slot = if task.slot > 0 {
        task.slot.to_string()
    } else {
        task.node_id.clone()
    };
    let ctx = go_struct(
        "template.Context",
        vec![
            (
                "Service",
                go_struct(
                    "struct { ID string; Name string; Labels map[string]string }",
                    vec![
                        ("ID", json!(task.service_id)),
                        ("Name", json!(service_name)),
                        ("Labels", labels),
                    ],
                ),
            ),
            (
                "Node",
                go_struct(
                    "struct { ID string; Hostname string; Platform template.Platform }",
                    vec![
                        ("ID", json!(task.node_id)),
                        ("Hostname", json!(described(&|d| &d["Hostname"]))),
                        (
                            "Platform",
                            go_struct(
                                "template.Platform",
                                vec![
                                    (
                                        "Architecture",
                                        json!(described(&|d| &d["Platform"]["Architecture"])),
                                    ),
                                    ("OS", json!(described(&|d| &d["Platform"]["OS"]))),
                                ],
                            ),
                        ),
                    ],
                ),
            ),
            (
                "Task",
                go_struct(
                    "struct { ID string; Name string; Slot string }",
                    vec![
                        ("ID", json!(task.meta.id)),
                        ("Name", json!(task_name(&service_name, task))),
                        ("Slot", json!(slot)),
                    ],
                ),
            ),
        ],
    );
    // `PayloadContext` embeds `Context`: its fields are the payload context's, and
    // `.Context` names the whole.
    let mut fields: Vec<(&str, Value)> = ["Service", "Node", "Task"]
        .into_iter()
        .map(|k| (k, ctx[k].clone()))
        .collect();
    fields.insert(0, ("Context", ctx));
    go_struct("*template.PayloadContext", fields)
}

#[cfg(test)]
mod tests;
