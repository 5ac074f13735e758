//! The loader: a pipeline of pure stages from files to a typed [`Project`].
//!
//! Per file: YAML tree → interpolation → schema validation → canonical shapes → `extends` →
//! `include`; then the files are merged in order, profiles select services, the model is
//! normalised (default network, resource names, environment) and checked for consistency
//! (dependencies, cycles, undefined networks and volumes). Anchored on compose-go's
//! `loader.go` (`loadYamlFile`, `ModelToProject`).

pub mod canonical;
pub mod dotenv;
mod extends;
pub mod interpolate;
pub mod merge;
mod normalize;
pub mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::LoadError;
use crate::model::Project;

/// The names Compose looks for, in order, in the working directory and its parents.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// What the command line and the environment say about where the project is.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files (`-` is standard input, given in `stdin`).
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--project-directory`.
    pub project_directory: Option<PathBuf>,
    /// `--env-file` (replaces the project directory's `.env`).
    pub env_files: Vec<PathBuf>,
    /// `--profile`.
    pub profiles: Vec<String>,
    /// Services named on the command line: enabled whatever their profiles.
    pub services: Vec<String>,
    /// The process environment (passed in so tests need not touch the real one).
    pub environment: BTreeMap<String, String>,
    /// The current directory.
    pub working_dir: PathBuf,
    /// What `-f -` reads.
    pub stdin: Option<String>,
}

/// The environment for interpolation: the shell's variables over the env files'.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub vars: BTreeMap<String, String>,
    pub files: Vec<PathBuf>,
}

impl interpolate::Lookup for Environment {
    fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
}

fn read_environment(options: &LoadOptions, dir: &Path) -> Result<Environment, LoadError> {
    let mut vars = BTreeMap::new();
    let mut files = Vec::new();
    let explicit = !options.env_files.is_empty();
    let candidates: Vec<PathBuf> = if explicit {
        options
            .env_files
            .iter()
            .map(|f| options.working_dir.join(f))
            .collect()
    } else {
        vec![dir.join(".env")]
    };
    for path in candidates {
        if !explicit && !path.exists() {
            continue;
        }
        let values = dotenv::read_env_file(&path, &options.environment)?;
        vars.extend(values.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        files.push(path);
    }
    // The shell wins over the files.
    vars.extend(options.environment.clone());
    Ok(Environment { vars, files })
}

/// Finds the default compose file in `dir` or its parents.
pub fn find_default_file(dir: &Path) -> Option<PathBuf> {
    let mut at = Some(dir);
    while let Some(d) = at {
        for name in DEFAULT_FILES {
            let candidate = d.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
        at = d.parent();
    }
    None
}

/// Compose's normalisation of a directory name into a project name: lower case, only
/// `[a-z0-9_-]`, no leading `_` or `-`.
pub fn normalize_project_name(name: &str) -> String {
    let lower = name.to_lowercase();
    let kept: String = lower
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

fn check_project_name(name: &str) -> Result<String, LoadError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if valid {
        Ok(name.to_string())
    } else {
        Err(LoadError::Field {
            service: String::new(),
            field: "project name",
            value: name.to_string(),
            message: "must consist only of lowercase alphanumeric characters, hyphens, and underscores as well as start with a letter or number".into(),
        })
    }
}

/// `!reset` and `!override` on a value of an override file (the spec's merge section):
/// the base's value is dropped, or replaced rather than merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeTag {
    Reset,
    Override,
}

/// Where tags were found: the mapping keys leading to the tagged value.
pub type Tags = Vec<(Vec<String>, MergeTag)>;

/// Reads one file into a tree; YAML anchors and merge keys are resolved here.
pub fn parse_yaml(path: &Path, text: &str) -> Result<Value, LoadError> {
    parse_yaml_tagged(path, text).map(|(v, _)| v)
}

/// [`parse_yaml`], also returning the `!reset`/`!override` tags.
pub fn parse_yaml_tagged(path: &Path, text: &str) -> Result<(Value, Tags), LoadError> {
    let mut yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| LoadError::Yaml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    yaml.apply_merge().map_err(|e| LoadError::Yaml {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut tags = Vec::new();
    let value = yaml_to_json(yaml, &mut Vec::new(), &mut tags);
    match value {
        Value::Object(_) => Ok((value, tags)),
        // An empty file is an empty project.
        Value::Null => Ok((Value::Object(Default::default()), tags)),
        _ => Err(LoadError::NotMapping {
            path: path.to_path_buf(),
        }),
    }
}

/// Applies an override file's tags to the model it is about to be merged into.
fn apply_tags(model: &mut Value, over: &mut Value, tags: &Tags) {
    fn remove(tree: &mut Value, path: &[String]) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut at = tree;
        for p in parents {
            match at.get_mut(p) {
                Some(next) => at = next,
                None => return,
            }
        }
        if let Some(o) = at.as_object_mut() {
            o.remove(last);
        }
    }
    for (path, tag) in tags {
        remove(model, path);
        if *tag == MergeTag::Reset {
            remove(over, path);
        }
    }
}

fn yaml_to_json(v: serde_yaml_ng::Value, path: &mut Vec<String>, tags: &mut Tags) -> Value {
    use serde_yaml_ng::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                serde_json::Number::from_f64(n.as_f64().unwrap_or_default())
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                // Tags inside sequences are not addressable by key: not collected.
                .map(|i| yaml_to_json(i, &mut Vec::new(), &mut Vec::new()))
                .collect(),
        ),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match yaml_to_json(k, &mut Vec::new(), &mut Vec::new()) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    path.push(key.clone());
                    let value = yaml_to_json(v, path, tags);
                    path.pop();
                    (key, value)
                })
                .collect(),
        ),
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            match tag.trim_start_matches('!') {
                "reset" => tags.push((path.clone(), MergeTag::Reset)),
                "override" => tags.push((path.clone(), MergeTag::Override)),
                _ => {}
            }
            yaml_to_json(t.value, path, tags)
        }
    }
}

/// One file through the per-file stages: parse, interpolate, validate, canonicalise,
/// extends, include.
pub(crate) fn load_file(
    path: &Path,
    text: &str,
    base: &Path,
    env: &Environment,
    depth: usize,
) -> Result<(Value, Tags), LoadError> {
    let (mut tree, tags) = parse_yaml_tagged(path, text)?;
    interpolate::interpolate_tree(&mut tree, env, "")?;
    schema::validate(&mut tree).map_err(|message| LoadError::Schema {
        path: path.to_path_buf(),
        message,
    })?;
    canonical::canonicalise_file(&mut tree, base)?;
    extends::apply_extends(&mut tree, path, env)?;
    include(&mut tree, base, env, depth)?;
    Ok((tree, tags))
}

fn read_text(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `include:` loads other files as their own sub-projects (paths relative to them) and adds
/// their resources; a resource defined twice is an error, as in Compose.
fn include(
    tree: &mut Value,
    base: &Path,
    env: &Environment,
    depth: usize,
) -> Result<(), LoadError> {
    let Some(list) = tree.as_object_mut().and_then(|m| m.remove("include")) else {
        return Ok(());
    };
    if depth > 10 {
        return Err(LoadError::Include {
            path: base.to_path_buf(),
            message: "include nested too deeply (a cycle?)".into(),
        });
    }
    for entry in list.as_array().into_iter().flatten() {
        let paths: Vec<String> = match entry {
            Value::String(p) => vec![p.clone()],
            Value::Object(o) => match o.get("path") {
                Some(Value::String(p)) => vec![p.clone()],
                Some(Value::Array(ps)) => ps
                    .iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect(),
                _ => vec![],
            },
            _ => vec![],
        };
        let project_dir = entry
            .get("project_directory")
            .and_then(Value::as_str)
            .map(|d| base.join(d));
        let mut sub: Option<Value> = None;
        for p in paths {
            let path = base.join(&p);
            let dir = project_dir
                .clone()
                .unwrap_or_else(|| path.parent().unwrap_or(base).to_path_buf());
            let text = read_text(&path)?;
            let (loaded, _) = load_file(&path, &text, &dir, env, depth + 1)?;
            match &mut sub {
                Some(s) => merge::merge(s, loaded, ""),
                None => sub = Some(loaded),
            }
        }
        let Some(Value::Object(sub)) = sub else {
            continue;
        };
        let target = tree.as_object_mut().expect("a file is a mapping");
        for section in ["services", "networks", "volumes", "secrets", "configs"] {
            let Some(Value::Object(items)) = sub.get(section) else {
                continue;
            };
            let entry = target
                .entry(section.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
            let Some(dest) = entry.as_object_mut() else {
                continue;
            };
            for (name, item) in items {
                if dest.contains_key(name) {
                    return Err(LoadError::Include {
                        path: base.to_path_buf(),
                        message: format!("{section}.{name} conflicts with imported resource"),
                    });
                }
                dest.insert(name.clone(), item.clone());
            }
        }
    }
    Ok(())
}

/// The environment, the files and the project directory a load starts from.
struct Located {
    env: Environment,
    files: Vec<PathBuf>,
    project_dir: PathBuf,
}

/// Loads a project: the whole pipeline.
pub fn load(options: &LoadOptions) -> Result<Project, LoadError> {
    let Located {
        env,
        files,
        project_dir,
    } = locate(options)?;
    let mut model = Value::Object(Default::default());
    for path in &files {
        let text = file_text(options, path)?;
        let (mut tree, tags) = load_file(path, &text, &project_dir, &env, 0)?;
        apply_tags(&mut model, &mut tree, &tags);
        merge::merge(&mut model, tree, "");
    }
    let name = project_name(options, &env, &model, &project_dir)?;
    let mut profiles = options.profiles.clone();
    if profiles.is_empty()
        && let Some(p) = env.vars.get("COMPOSE_PROFILES")
    {
        profiles = p
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
    }
    normalize::to_project(normalize::Inputs {
        model,
        name,
        project_dir,
        files: files.into_iter().filter(|f| f.as_os_str() != "-").collect(),
        env,
        profiles,
        requested: options.services.clone(),
    })
}

/// `config --no-interpolate`: the files merged as written (variables left in place, short
/// syntaxes kept), with the project's name and default network added, as Compose renders
/// its partially resolved model.
pub fn load_uninterpolated(options: &LoadOptions) -> Result<Value, LoadError> {
    let Located {
        env,
        files,
        project_dir,
    } = locate(options)?;
    let mut model = Value::Object(Default::default());
    for path in &files {
        let text = file_text(options, path)?;
        let (mut tree, tags) = parse_yaml_tagged(path, &text)?;
        apply_tags(&mut model, &mut tree, &tags);
        merge::merge(&mut model, tree, "");
    }
    let name = project_name(options, &env, &model, &project_dir)?;
    let map = model.as_object_mut().expect("a file is a mapping");
    map.insert("name".into(), Value::String(name.clone()));
    let mut needs_default = false;
    if let Some(Value::Object(services)) = map.get_mut("services") {
        for service in services.values_mut() {
            // Paths are still resolved: the build context (and its default Dockerfile).
            if let Value::Object(s) = service
                && let Some(build) = s.get_mut("build")
            {
                if let Value::String(ctx) = build {
                    *build = serde_json::json!({"context": ctx.clone()});
                }
                if let Value::Object(b) = build {
                    let ctx = b.get("context").and_then(Value::as_str).unwrap_or(".");
                    if !ctx.contains("://") && !ctx.starts_with("git@") && !ctx.contains("${") {
                        let abs = project_dir.join(ctx);
                        let abs = canonical::clean_path(&abs);
                        b.insert("context".into(), Value::String(abs.display().to_string()));
                    }
                    if !b.contains_key("dockerfile_inline") {
                        b.entry("dockerfile")
                            .or_insert_with(|| Value::String("Dockerfile".into()));
                    }
                }
            }
            if let Value::Object(s) = service
                && !s.contains_key("network_mode")
                && !s.contains_key("networks")
            {
                s.insert("networks".into(), serde_json::json!({"default": null}));
                needs_default = true;
            }
        }
    }
    if needs_default {
        let networks = map
            .entry("networks")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(n) = networks {
            n.entry("default")
                .or_insert_with(|| serde_json::json!({"name": format!("{name}_default")}));
        }
    }
    Ok(model)
}

fn file_text(options: &LoadOptions, path: &Path) -> Result<String, LoadError> {
    if path.as_os_str() == "-" {
        Ok(options.stdin.clone().unwrap_or_default())
    } else {
        read_text(path)
    }
}

fn locate(options: &LoadOptions) -> Result<Located, LoadError> {
    let cwd = &options.working_dir;
    let env_dir = options
        .project_directory
        .as_ref()
        .map(|d| cwd.join(d))
        .unwrap_or_else(|| cwd.clone());
    let mut env = read_environment(options, &env_dir)?;
    let files: Vec<PathBuf> = if !options.files.is_empty() {
        options
            .files
            .iter()
            .map(|f| {
                if f.as_os_str() == "-" {
                    f.clone()
                } else {
                    cwd.join(f)
                }
            })
            .collect()
    } else if let Some(list) = env.vars.get("COMPOSE_FILE").filter(|v| !v.is_empty()) {
        let sep = env
            .vars
            .get("COMPOSE_PATH_SEPARATOR")
            .cloned()
            .unwrap_or_else(|| ":".into());
        list.split(sep.as_str()).map(|f| env_dir.join(f)).collect()
    } else {
        let main = find_default_file(&env_dir).ok_or(LoadError::NoFile)?;
        // Beside the default file, its override file is read too, as Compose does.
        let stem = if main
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("docker-"))
        {
            "docker-compose.override"
        } else {
            "compose.override"
        };
        let dir = main.parent().unwrap_or(Path::new("/")).to_path_buf();
        let over = ["yaml", "yml"]
            .iter()
            .map(|ext| dir.join(format!("{stem}.{ext}")))
            .find(|p| p.is_file());
        std::iter::once(main).chain(over).collect()
    };
    let project_dir = match &options.project_directory {
        Some(d) => cwd.join(d),
        None => files
            .iter()
            .find(|f| f.as_os_str() != "-")
            .and_then(|f| f.parent())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| cwd.clone()),
    };
    if project_dir != env_dir && options.env_files.is_empty() {
        env = read_environment(options, &project_dir)?;
    }
    Ok(Located {
        env,
        files,
        project_dir,
    })
}

/// `-p`, COMPOSE_PROJECT_NAME, `name:`, or the directory's name normalised.
fn project_name(
    options: &LoadOptions,
    env: &Environment,
    model: &Value,
    project_dir: &Path,
) -> Result<String, LoadError> {
    if let Some(p) = options.project_name.as_deref().filter(|p| !p.is_empty()) {
        check_project_name(p)
    } else if let Some(p) = env
        .vars
        .get("COMPOSE_PROJECT_NAME")
        .filter(|p| !p.is_empty())
    {
        check_project_name(p)
    } else if let Some(p) = model
        .get("name")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    {
        check_project_name(p)
    } else {
        let base = project_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(normalize_project_name(&base))
    }
}

#[cfg(test)]
mod tests;
