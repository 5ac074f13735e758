//! `berth context ...`: named daemon endpoints stored in the config dir, as docker's contexts.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::Env;
use crate::config::{
    ConfigFile, ContextMeta, ContextMetadata, DEFAULT_CONTEXT, Endpoint, default_context_host,
    validate_context_name,
};
use crate::format::{Format, render_one};
use crate::output::{self, StatusError};

#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Create a context
    Create(CreateArgs),
    /// List contexts
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Set the current berth context
    Use {
        /// Context name
        name: String,
    },
    /// Remove one or more contexts
    #[command(visible_alias = "remove")]
    Rm(RemoveArgs),
    /// Display detailed information on one or more contexts
    Inspect(InspectArgs),
    /// Print the name of the current context
    Show,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Context name
    pub name: String,
    /// Description of the context
    #[arg(long, value_name = "string", default_value = "")]
    pub description: String,
    /// set the berth endpoint (host=URL)
    #[arg(long, value_name = "stringToString")]
    pub docker: Vec<String>,
    /// create context from a named context
    #[arg(long, value_name = "string")]
    pub from: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Only show context names
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Force the removal of a context in use
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true, value_name = "CONTEXT")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
    #[arg(value_name = "CONTEXT")]
    pub names: Vec<String>,
}

pub async fn run(env: &Env, command: ContextCommand) -> Result<()> {
    match command {
        ContextCommand::Create(args) => create(env, args),
        ContextCommand::Ls(args) => list(env, args),
        ContextCommand::Use { name } => use_context(env, &name),
        ContextCommand::Rm(args) => remove(env, args),
        ContextCommand::Inspect(args) => inspect(env, args),
        ContextCommand::Show => {
            output::out(&format!("{}\n", current_name(env)?));
            Ok(())
        }
    }
}

/// The context that applies now (flags and environment included), as `context show` prints it.
fn current_name(env: &Env) -> Result<String> {
    Ok(env.resolve()?.context)
}

/// TLS files to store with a context: (docker's file name, where the user has it).
type TlsFiles = Vec<(&'static str, std::path::PathBuf)>;

/// Parses docker's `--docker host=URL,ca=FILE,cert=FILE,key=FILE,skip-tls-verify=true`
/// endpoint spec.
fn parse_endpoint(specs: &[String]) -> Result<(Endpoint, TlsFiles)> {
    let mut endpoint = Endpoint::default();
    let mut files = TlsFiles::new();
    for spec in specs {
        for part in spec.split(',') {
            let Some((key, value)) = part.split_once('=') else {
                bail!(
                    "unable to create docker endpoint config: invalid docker endpoint option {part:?}"
                );
            };
            match key {
                "host" => {
                    berth_client::Host::parse(value)?;
                    endpoint.host = value.to_string();
                }
                "skip-tls-verify" => endpoint.skip_tls_verify = value == "true",
                "ca" | "cert" | "key" => {
                    let name = match key {
                        "ca" => crate::tls::CA,
                        "cert" => crate::tls::CERT,
                        _ => crate::tls::KEY,
                    };
                    files.retain(|(n, _)| *n != name);
                    files.push((name, std::path::PathBuf::from(value)));
                }
                other => bail!(
                    "unable to create docker endpoint config: unrecognized config key: {other}"
                ),
            }
        }
    }
    Ok((endpoint, files))
}

fn create(env: &Env, args: CreateArgs) -> Result<()> {
    validate_context_name(&args.name)?;
    if env.config.context(&args.name)?.is_some() {
        bail!("context {:?} already exists", args.name);
    }
    let (endpoint, files) = if !args.docker.is_empty() {
        parse_endpoint(&args.docker)?
    } else {
        let from = args.from.clone().unwrap_or_else(|| match env.resolve() {
            Ok(r) => r.context,
            Err(_) => DEFAULT_CONTEXT.to_string(),
        });
        // The TLS the source context uses comes along, as docker copies it.
        let resolved = crate::config::Resolved {
            host: String::new(),
            context: from.clone(),
        };
        let endpoint = if from == DEFAULT_CONTEXT {
            Endpoint {
                host: default_context_host(&env.host_inputs()?),
                skip_tls_verify: false,
            }
        } else {
            match env.config.context(&from)? {
                Some(meta) => meta.endpoints.get("docker").cloned().unwrap_or_default(),
                None => bail!("context {from:?} does not exist"),
            }
        };
        let mut files = TlsFiles::new();
        if let Some(tls) = env.tls_options(&resolved)? {
            let (ca, cert, key) = (crate::tls::CA, crate::tls::CERT, crate::tls::KEY);
            for (name, path) in [(ca, tls.ca), (cert, tls.cert), (key, tls.key)] {
                if let Some(path) = path.filter(|p| p.exists()) {
                    files.push((name, path));
                }
            }
        }
        (endpoint, files)
    };
    // The files are read before anything is stored: a bad path leaves no half context.
    for (_, path) in &files {
        std::fs::metadata(path).map_err(|e| {
            anyhow::anyhow!(
                "unable to create docker endpoint config: unable to read {}: {}",
                path.display(),
                super::os_error_text(&e)
            )
        })?;
    }
    let mut meta = ContextMeta {
        name: args.name.clone(),
        metadata: ContextMetadata {
            description: args.description,
        },
        ..Default::default()
    };
    meta.endpoints.insert("docker".to_string(), endpoint);
    env.config.save_context(&meta)?;
    if let Err(e) = crate::tls::store(&env.config, &args.name, &files) {
        let _ = env.config.remove_context(&args.name);
        return Err(e);
    }
    output::out(&format!("{}\n", args.name));
    output::err(&format!("Successfully created context {:?}\n", args.name));
    Ok(())
}

/// The built-in default context as docker describes it.
fn default_meta(env: &Env) -> Result<ContextMeta> {
    let mut meta = ContextMeta {
        name: DEFAULT_CONTEXT.to_string(),
        metadata: ContextMetadata {
            description: "Current BERTH_HOST based configuration".to_string(),
        },
        ..Default::default()
    };
    meta.endpoints.insert(
        "docker".to_string(),
        Endpoint {
            host: default_context_host(&env.host_inputs()?),
            skip_tls_verify: false,
        },
    );
    Ok(meta)
}

fn list(env: &Env, args: ListArgs) -> Result<()> {
    let current = current_name(env)?;
    let mut all = vec![default_meta(env)?];
    all.extend(env.config.contexts()?);
    if args.quiet {
        let names: String = all.iter().map(|c| format!("{}\n", c.name)).collect();
        output::out(&names);
        return Ok(());
    }
    let format = Format::parse(
        args.format.as_deref(),
        "table {{.Name}}{{if .Current}} *{{end}}\t{{.Description}}\t{{.DockerEndpoint}}\t{{.Error}}",
    );
    let rows: Vec<Value> = all
        .iter()
        .map(|c| {
            json!({
                "Name": c.name,
                "Description": c.metadata.description,
                "DockerEndpoint": c.host(),
                "Current": c.name == current,
                "Error": "",
            })
        })
        .collect();
    let text = format.render(
        &rows,
        &[
            ("Name", "NAME"),
            ("Description", "DESCRIPTION"),
            ("DockerEndpoint", "DOCKER ENDPOINT"),
            ("Error", "ERROR"),
            ("Current", ""),
        ],
    )?;
    output::out(&text);
    Ok(())
}

fn use_context(env: &Env, name: &str) -> Result<()> {
    if name != DEFAULT_CONTEXT && env.config.context(name)?.is_none() {
        bail!("context {name:?} does not exist");
    }
    let mut config: ConfigFile = env.config.load()?;
    config.current_context = if name == DEFAULT_CONTEXT {
        String::new()
    } else {
        name.to_string()
    };
    env.config.save(&config)?;
    output::out(&format!("{name}\n"));
    output::err(&format!("Current context is now {name:?}\n"));
    let set = |v: &str| std::env::var(v).is_ok_and(|h| !h.is_empty());
    // The variable that overrides it, as `env_endpoint` picks it.
    let var = if set("BERTH_HOST") {
        Some("BERTH_HOST")
    } else if !set("BERTH_CONTEXT") && set("DOCKER_HOST") {
        Some("DOCKER_HOST")
    } else {
        None
    };
    if let Some(var) = var {
        output::err(&format!(
            "Warning: {var} environment variable overrides the active context. To use a context, either set the global --context flag, or unset {var} environment variable.\n",
        ));
    }
    Ok(())
}

fn remove(env: &Env, args: RemoveArgs) -> Result<()> {
    let mut config = env.config.load()?;
    let mut errors = Vec::new();
    for name in &args.names {
        if name == DEFAULT_CONTEXT {
            errors.push(format!("context {name:?} cannot be removed"));
            continue;
        }
        if env.config.context(name)?.is_none() {
            errors.push(format!("context {name:?} does not exist"));
            continue;
        }
        if config.current_context == *name {
            if !args.force {
                errors.push(format!(
                    "context {name:?} is in use, set -f flag to force remove"
                ));
                continue;
            }
            config.current_context.clear();
            env.config.save(&config)?;
        }
        env.config.remove_context(name)?;
        output::out(&format!("{name}\n"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StatusError::error(1, errors.join("\n")))
    }
}

/// `context inspect`'s element, fields in docker's order.
#[derive(serde::Serialize)]
struct InspectOutput {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Metadata")]
    metadata: ContextMetadata,
    #[serde(rename = "Endpoints")]
    endpoints: std::collections::BTreeMap<String, Endpoint>,
    #[serde(rename = "TLSMaterial")]
    tls_material: Value,
    #[serde(rename = "Storage")]
    storage: Storage,
}

#[derive(serde::Serialize)]
struct Storage {
    #[serde(rename = "MetadataPath")]
    metadata_path: String,
    #[serde(rename = "TLSPath")]
    tls_path: String,
}

fn inspect(env: &Env, args: InspectArgs) -> Result<()> {
    let names = if args.names.is_empty() {
        vec![current_name(env)?]
    } else {
        args.names.clone()
    };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        let meta = if name == DEFAULT_CONTEXT {
            let mut meta = default_meta(env)?;
            meta.metadata.description.clear();
            Some(meta)
        } else {
            env.config.context(name)?
        };
        match meta {
            Some(meta) => {
                let (meta_path, tls_path) = if name == DEFAULT_CONTEXT {
                    ("<IN MEMORY>".to_string(), "<IN MEMORY>".to_string())
                } else {
                    (
                        env.config.meta_dir(name).display().to_string(),
                        env.config.tls_dir(name).display().to_string(),
                    )
                };
                let material = if name == DEFAULT_CONTEXT {
                    Vec::new()
                } else {
                    crate::tls::material(&env.config, name)
                };
                found.push(InspectOutput {
                    name: meta.name,
                    metadata: meta.metadata,
                    endpoints: meta.endpoints,
                    tls_material: if material.is_empty() {
                        json!({})
                    } else {
                        json!({ "docker": material })
                    },
                    storage: Storage {
                        metadata_path: meta_path,
                        tls_path,
                    },
                });
            }
            None => errors.push(format!("context {name:?} does not exist")),
        }
    }
    match args.format.as_deref() {
        Some(f) if !f.is_empty() => {
            let mut text = String::new();
            for item in &found {
                text.push_str(&render_one(f, &serde_json::to_value(item)?)?);
            }
            output::out(&text);
        }
        _ => {
            // Serialized from structs, so docker's field order is kept; `<`/`>` escaped as Go does.
            let raw = serde_json::to_string(&found)?
                .replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026");
            output::out(&format!("{}\n", crate::format::indent_json(raw.as_bytes())));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StatusError::error(1, errors.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    use super::*;

    #[test]
    fn parses_context_commands() {
        let cli = Cli::try_parse_from([
            "berth",
            "context",
            "create",
            "x",
            "--docker",
            "host=tcp://h:1",
            "--description",
            "d",
        ])
        .unwrap();
        let Some(Command::Context {
            command: ContextCommand::Create(args),
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(args.docker, vec!["host=tcp://h:1"]);
        assert_eq!(args.description, "d");
        assert!(Cli::try_parse_from(["berth", "context", "rm"]).is_err());
        assert!(Cli::try_parse_from(["berth", "context", "rm", "-f", "a", "b"]).is_ok());
        assert!(Cli::try_parse_from(["berth", "context", "ls", "-q", "--format", "json"]).is_ok());
        assert!(Cli::try_parse_from(["berth", "context", "list"]).is_ok());
        assert!(Cli::try_parse_from(["berth", "-c", "x", "context", "show"]).is_ok());
    }

    #[test]
    fn endpoint_specs() {
        let (e, files) = parse_endpoint(&["host=unix:///tmp/a.sock".to_string()]).unwrap();
        assert_eq!(e.host, "unix:///tmp/a.sock");
        assert!(files.is_empty());
        let (e, files) = parse_endpoint(&[
            "host=tcp://h:2376,ca=/c/ca.pem,cert=/c/cert.pem,key=/c/key.pem".to_string(),
        ])
        .unwrap();
        assert_eq!(e.host, "tcp://h:2376");
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, vec!["ca.pem", "cert.pem", "key.pem"]);
        assert!(parse_endpoint(&["bogus=1".to_string()]).is_err());
        assert!(parse_endpoint(&["host=ftp://x".to_string()]).is_err());
    }

    #[test]
    fn lifecycle_in_a_temp_config() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(crate::cli::GlobalOptions {
            config: Some(dir.path().display().to_string()),
            ..Default::default()
        });
        create(
            &env,
            CreateArgs {
                name: "foo".into(),
                description: "my d".into(),
                docker: vec!["host=tcp://1.2.3.4:2375".into()],
                from: None,
            },
        )
        .unwrap();
        assert!(
            create(
                &env,
                CreateArgs {
                    name: "foo".into(),
                    description: String::new(),
                    docker: vec![],
                    from: None,
                }
            )
            .is_err()
        );
        use_context(&env, "foo").unwrap();
        assert_eq!(env.config.load().unwrap().current_context, "foo");
        let err = remove(
            &env,
            RemoveArgs {
                force: false,
                names: vec!["foo".into()],
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "context \"foo\" is in use, set -f flag to force remove"
        );
        let err = remove(
            &env,
            RemoveArgs {
                force: false,
                names: vec!["default".into()],
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "context \"default\" cannot be removed");
        remove(
            &env,
            RemoveArgs {
                force: true,
                names: vec!["foo".into()],
            },
        )
        .unwrap();
        assert_eq!(env.config.load().unwrap().current_context, "");
    }
}
