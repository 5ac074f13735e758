//! The loader's and the reconciler's errors. Messages follow Compose v2's wording where users
//! and scripts know it (`services.web Additional property foo is not allowed`).

use std::path::PathBuf;

/// Why a project could not be loaded. Nothing is created when loading fails.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no configuration file provided: not found")]
    NoFile,
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// serde_yaml_ng's text names the line and column.
    #[error("{}: yaml: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
    #[error("{}: top-level object must be a mapping", path.display())]
    NotMapping { path: PathBuf },
    #[error("validating {}: {message}", path.display())]
    Schema { path: PathBuf, message: String },
    #[error(
        "error while interpolating {path}: required variable {var} is missing a value: {message}"
    )]
    RequiredVariable {
        path: String,
        var: String,
        message: String,
    },
    #[error("error while interpolating {path}: invalid template: {template:?}")]
    InvalidTemplate { path: String, template: String },
    #[error("env file {} not found: stat {}: no such file or directory", path.display(), path.display())]
    EnvFileMissing { path: PathBuf },
    #[error("{}: line {line}: unexpected character in variable name {text:?}", path.display())]
    EnvFileSyntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("dependency cycle detected: {}", cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
    #[error("service {service:?} refers to undefined {kind} {name}: invalid compose project")]
    Undefined {
        service: String,
        kind: &'static str,
        name: String,
    },
    #[error(
        "service {service:?} depends on undefined service {dependency:?}: invalid compose project"
    )]
    UndefinedDependency { service: String, dependency: String },
    #[error("cannot extend service {service:?}: {message}")]
    Extends { service: String, message: String },
    #[error(
        "services.{service}: can't set container_name and {service} as container name must be unique: invalid compose project"
    )]
    ContainerNameWithScale { service: String },
    #[error(
        "service {service:?} has neither an image nor a build context specified: invalid compose project"
    )]
    NoImage { service: String },
    #[error("no such service: {0}")]
    NoSuchService(String),
    #[error("invalid {field} {value:?} in service {service:?}: {message}")]
    Field {
        service: String,
        field: &'static str,
        value: String,
        message: String,
    },
    #[error("include {}: {message}", path.display())]
    Include { path: PathBuf, message: String },
}
