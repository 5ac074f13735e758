//! A `build:` section's `secrets` and `ssh`, spelled as the buildx flags `berth build` takes
//! (`--secret id=ID,src=FILE|env=VAR`, `--ssh ID[=PATH,...]`), as Compose hands them to buildx.
//! The CLI serves them through the same build session as `berth build`, so `RUN
//! --mount=type=secret|ssh` works in a compose build too (Compose's classic builder refuses
//! both: the legacy `/build` API has no channel for them; Berth's has the session).

use serde_json::Value;

use crate::model::{Project, Service};

/// The `--secret` and `--ssh` values of one service's build.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SessionSpecs {
    pub secrets: Vec<String>,
    pub ssh: Vec<String>,
}

impl SessionSpecs {
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.ssh.is_empty()
    }
}

/// The session `service`'s build needs: its `build.secrets` resolved against the top-level
/// `secrets:` (the id is the reference's `target`, else its `source`, as in Compose), its
/// `build.ssh` and the command line's `--ssh` (added to every service, as `compose build
/// --ssh` does). Key paths are relative to the project directory; `~/` is the home.
pub fn session_specs(
    project: &Project,
    service: &Service,
    cli_ssh: &[String],
) -> Result<SessionSpecs, String> {
    let mut out = SessionSpecs::default();
    let Some(build) = &service.config.build else {
        return Ok(out);
    };
    for item in &build.secrets {
        let (source, target) = match item {
            Value::String(s) => (s.clone(), None),
            Value::Object(o) => (
                o.get("source")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                o.get("target").and_then(Value::as_str).map(str::to_string),
            ),
            other => {
                return Err(format!(
                    "service {:?}: invalid build secret {other}",
                    service.name
                ));
            }
        };
        let Some(object) = project.secrets.get(&source) else {
            return Err(format!(
                "service {:?} refers to undefined build secret {source}",
                service.name
            ));
        };
        let id = target.unwrap_or_else(|| source.clone());
        let spec = match (&object.file, &object.environment) {
            (Some(file), _) => format!("id={id},src={file}"),
            (None, Some(var)) => format!("id={id},env={var}"),
            (None, None) => {
                return Err(format!(
                    "service {:?}: build secret {source} must be a file or an environment variable (an external secret cannot reach a build)",
                    service.name
                ));
            }
        };
        out.secrets.push(spec);
    }
    let mut ssh: Vec<String> = match &build.ssh {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(id, path)| match path.as_str() {
                Some(p) if !p.is_empty() => format!("{id}={p}"),
                _ => id.clone(),
            })
            .collect(),
        Some(other) => {
            return Err(format!(
                "service {:?}: invalid build ssh {other}",
                service.name
            ));
        }
    };
    ssh.extend(cli_ssh.iter().cloned());
    for spec in ssh {
        out.ssh.push(resolve_ssh_paths(&spec, project));
    }
    Ok(out)
}

/// `ID=PATH[,PATH]` with each path made absolute (the CLI may run elsewhere than the
/// project directory, `-f` pointing into it).
fn resolve_ssh_paths(spec: &str, project: &Project) -> String {
    let Some((id, paths)) = spec.split_once('=') else {
        return spec.to_string();
    };
    let home = std::env::var("HOME").unwrap_or_default();
    let resolved: Vec<String> = paths
        .split(',')
        .map(|p| {
            if let Some(rest) = p.strip_prefix("~/") {
                format!("{home}/{rest}")
            } else if p.starts_with('/') {
                p.to_string()
            } else {
                project.working_dir.join(p).display().to_string()
            }
        })
        .collect();
    format!("{id}={}", resolved.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), text).unwrap();
        let p = crate::loader::load(&crate::LoadOptions {
            working_dir: dir.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        (dir, p)
    }

    #[test]
    fn secrets_take_the_target_as_id_and_the_top_level_source() {
        let (dir, p) = load(
            "services:\n  api:\n    build:\n      context: .\n      secrets:\n        - tok\n        - source: env_tok\n          target: TOKEN\n      ssh:\n        - default\n        - deploy=keys/id_ed25519\nsecrets:\n  tok:\n    file: ./tok.txt\n  env_tok:\n    environment: MY_TOKEN\n",
        );
        let specs = session_specs(&p, &p.services["api"], &["extra".into()]).unwrap();
        let file = dir.path().join("tok.txt");
        assert_eq!(
            specs.secrets,
            vec![
                format!("id=tok,src={}", file.display()),
                "id=TOKEN,env=MY_TOKEN".to_string()
            ]
        );
        assert_eq!(
            specs.ssh,
            vec![
                "default".to_string(),
                format!("deploy={}", dir.path().join("keys/id_ed25519").display()),
                "extra".to_string()
            ]
        );
    }

    #[test]
    fn an_undefined_build_secret_is_refused_as_compose_does() {
        let (_dir, p) =
            load("services:\n  api:\n    build:\n      context: .\n      secrets: [nope]\n");
        let err = session_specs(&p, &p.services["api"], &[]).unwrap_err();
        assert_eq!(err, "service \"api\" refers to undefined build secret nope");
    }

    #[test]
    fn ssh_as_a_mapping() {
        let (_dir, p) = load(
            "services:\n  api:\n    build:\n      context: .\n      ssh:\n        default:\n        key: /k\n",
        );
        let specs = session_specs(&p, &p.services["api"], &[]).unwrap();
        assert_eq!(specs.ssh, vec!["default".to_string(), "key=/k".to_string()]);
    }
}
