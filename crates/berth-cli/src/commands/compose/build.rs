//! Building services' images (`compose build`, `up --build`, `up` with a missing image):
//! each `build:` section becomes a legacy-builder `POST /build` (berth_compose::build), its
//! directory context is sent as a tar with its `.dockerignore` honoured (the same code as
//! `berth build`), and the build's stream is printed as plain lines, as Docker Compose does
//! with the classic builder.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Result, anyhow};
use berth_compose::build::{
    BuildContext, BuildFlags, BuildRequest, Dockerfile, SessionSpecs, build_request, session_specs,
};
use berth_compose::reconcile::Engine;
use berth_compose::{Project, Service};
use futures_util::StreamExt;

use super::{Ctx, progress_printer};
use crate::commands::build::context::{dir_context, random_dockerfile_name};
use crate::commands::build::session as build_session;
use crate::commands::build::{git, upload};
use crate::format::progress::ProgressRenderer;
use crate::format::units::human_size;
use crate::output::{self, StatusError, describe_client_error};

/// The services of `selected` that `up`/`create` build before converging: all that have a
/// `build:` section with `--build`; otherwise those whose image is missing or whose
/// `pull_policy` is `build`; none with `--no-build` (a missing image is then an error).
pub async fn services_to_build<'p, E: Engine>(
    engine: &E,
    project: &'p Project,
    selected: &std::collections::BTreeSet<String>,
    force: bool,
    no_build: bool,
) -> Result<Vec<&'p Service>> {
    let mut out = Vec::new();
    if no_build {
        return Ok(out);
    }
    for service in project.services.values() {
        if !selected.contains(&service.name) || service.config.build.is_none() {
            continue;
        }
        let wanted = force
            || service.config.pull_policy.as_deref() == Some("build")
            || engine
                .image_id(&service.image_name(&project.name))
                .await
                .map_err(|e| StatusError::error(1, describe_client_error(&e)))?
                .is_none();
        if wanted {
            out.push(service);
        }
    }
    Ok(out)
}

/// The current image ids of `selected`'s services that have a `build:` section, so that
/// `plan` recreates containers made from an older build.
pub async fn built_image_ids<E: Engine>(
    engine: &E,
    project: &Project,
    selected: &std::collections::BTreeSet<String>,
) -> Result<BTreeMap<String, String>> {
    let mut ids = BTreeMap::new();
    for service in project.services.values() {
        if !selected.contains(&service.name) || service.config.build.is_none() {
            continue;
        }
        let image = service.image_name(&project.name);
        if let Some(id) = engine
            .image_id(&image)
            .await
            .map_err(|e| StatusError::error(1, describe_client_error(&e)))?
        {
            ids.insert(service.name.clone(), id);
        }
    }
    Ok(ids)
}

/// Builds `services` (at most `--parallel` at once); output lines carry the service's name
/// when several build together. The first failure is returned after the others finish, so
/// no build is left half-reported.
pub async fn build_services(
    ctx: &Ctx<'_>,
    project: &Project,
    services: &[&Service],
    flags: &BuildFlags,
) -> Result<()> {
    for s in services {
        unsupported(s)?;
    }
    let mut requests: Vec<(BuildRequest, SessionSpecs)> = Vec::new();
    for s in services {
        let specs = session_specs(project, s, &flags.ssh).map_err(|e| StatusError::error(1, e))?;
        if let Some(r) = build_request(project, s, flags) {
            requests.push((r, specs));
        }
    }
    if requests.is_empty() {
        return Ok(());
    }
    let client = ctx.client()?;
    let registry_config = registry_config(ctx);
    let prefixed = requests.len() > 1;
    let limit = if ctx.args.parallel > 0 {
        ctx.args.parallel as usize
    } else {
        requests.len()
    };
    let progress = progress_printer(flags.quiet || ctx.quiet_progress(), false);
    let results: Vec<Result<()>> =
        futures_util::stream::iter(requests.into_iter().map(|(r, specs)| {
            let client = &client;
            let registry_config = registry_config.as_deref();
            let progress = &progress;
            async move {
                let service = r.service.clone();
                progress("Service", &service, "Building");
                let session = Session {
                    specs,
                    environment: &project.environment,
                };
                build_one(client, r, session, registry_config, prefixed, flags.quiet).await?;
                progress("Service", &service, "Built");
                Ok(())
            }
        }))
        .buffer_unordered(limit)
        .collect()
        .await;
    results.into_iter().collect()
}

/// What the legacy `/build` API cannot do, refused before anything is sent, as Compose's
/// classic builder refuses it.
fn unsupported(service: &Service) -> Result<()> {
    let Some(build) = service.raw.get("build") else {
        return Ok(());
    };
    let set = |key: &str| match build.get(key) {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => false,
        Some(serde_json::Value::Array(a)) => !a.is_empty(),
        Some(serde_json::Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    };
    let what = if build
        .get("platforms")
        .and_then(|p| p.as_array())
        .is_some_and(|p| p.len() > 1)
    {
        Some("multi-arch build")
    } else if set("privileged") {
        Some("privileged mode")
    } else if set("additional_contexts") {
        Some("additional contexts")
    } else {
        None
    };
    match what {
        Some(what) => Err(StatusError::error(
            1,
            format!(
                "service {:?}: the builder (the Engine API's classic builder) doesn't support {what}",
                service.name
            ),
        )),
        None => Ok(()),
    }
}

/// `X-Registry-Config`: every stored credential, so `FROM` a private image works.
fn registry_config(ctx: &Ctx<'_>) -> Option<String> {
    use base64::Engine as _;
    let all = crate::credentials::all(&ctx.env.config);
    if all.is_empty() {
        return None;
    }
    let json = serde_json::to_vec(&all).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE.encode(json))
}

/// A build's `--secret`/`--ssh` values and where an `env=` secret's variable is looked up
/// (the project's environment, as interpolation saw it, then the process's).
struct Session<'a> {
    specs: SessionSpecs,
    environment: &'a BTreeMap<String, String>,
}

async fn build_one(
    client: &berth_client::Client,
    request: BuildRequest,
    session: Session<'_>,
    registry_config: Option<&str>,
    prefixed: bool,
    quiet: bool,
) -> Result<()> {
    let BuildRequest {
        service,
        mut options,
        context,
        ..
    } = request;
    let fail_with = |code: u8, message: String| {
        StatusError::error(code, format!("service {service:?}: {message}"))
    };
    let fail = |message: String| fail_with(1, message);
    // Secrets and ssh agents reach `RUN --mount` through a session, as with `berth build`;
    // agents started for key files live until this build is over.
    let mut _agents = Vec::new();
    if !session.specs.is_empty() {
        let lookup = |k: &str| {
            session
                .environment
                .get(k)
                .cloned()
                .or_else(|| std::env::var(k).ok())
        };
        let mut offer = build_session::offer(&session.specs.secrets, &session.specs.ssh, &lookup)
            .map_err(|e| fail(format!("{e:#}")))?;
        _agents = offer.take_spawned();
        options.session = build_session::start(client, Arc::new(offer))
            .await
            .map_err(|e| fail(format!("{e:#}")))?;
    }
    // A git context is cloned here, as Compose's classic builder (and `berth build`) does;
    // the checkout lives until the build is over.
    let mut _checkout = None;
    let context = match context {
        BuildContext::Remote(url) if git::is_git_url(&url) => {
            let dockerfile = std::mem::take(&mut options.dockerfile);
            options.remote.clear();
            let repo = git::parse_remote(&url).map_err(|e| fail(e.to_string()))?;
            let checkout = tokio::task::spawn_blocking(move || git::clone(&repo, false))
                .await
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(format!("unable to prepare context: {e}")))?;
            let root = checkout.context.clone();
            let file = if dockerfile.is_empty() {
                "Dockerfile".to_string()
            } else {
                dockerfile
            };
            _checkout = Some(checkout);
            BuildContext::Dir {
                dockerfile: Dockerfile::Path(root.join(file)),
                root,
            }
        }
        other => other,
    };
    let body = match &context {
        BuildContext::Remote(_) => None,
        BuildContext::Dir { root, dockerfile } => {
            let (file, inline) = match dockerfile {
                Dockerfile::Path(p) => (Some(p.to_string_lossy().into_owned()), None),
                Dockerfile::Inline(text) => (None, Some(text.clone().into_bytes())),
            };
            let ctx =
                dir_context(root, file.as_deref(), inline).map_err(|e| fail(e.to_string()))?;
            let name = random_dockerfile_name();
            options.dockerfile = match (&ctx.extra_dockerfile, &ctx.dockerfile_rel) {
                (Some(_), _) => name.clone(),
                (None, Some(rel)) => rel.clone(),
                (None, None) => "Dockerfile".to_string(),
            };
            Some(upload::tar_stream(false, move |w| {
                ctx.write_tar(w, &name).map(|_| ())
            }))
        }
    };
    let (body, sent) = match body {
        Some((b, s)) => (Some(b), Some(s)),
        None => (None, None),
    };
    let print = |text: &str| {
        if quiet || text.is_empty() {
            return;
        }
        if prefixed {
            let mut lines = String::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                lines.push_str(&format!("[{service}] {line}\n"));
            }
            output::out(&lines);
        } else {
            output::out(text);
        }
    };
    let stream = client
        .image_build(&options, body, registry_config)
        .await
        .map_err(|e| fail(describe_client_error(&e)))?;
    let mut stream = std::pin::pin!(stream);
    let mut renderer = ProgressRenderer::new(false);
    // The whole context has gone once the daemon answers: its size, as Compose prints it.
    if let Some(sent) = &sent {
        let n = i64::try_from(sent.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        print(&format!(
            "Sending build context to Docker daemon  {}\n",
            human_size(n)
        ));
    }
    while let Some(message) = stream.next().await {
        let message = message.map_err(|e| fail(describe_client_error(&e)))?;
        if message.aux.is_some() {
            continue;
        }
        let text = match renderer.render(&message) {
            Ok(t) => t,
            // Docker's words (`The command '/bin/sh -c false' returned a non-zero code: 1`),
            // with the service it belongs to; the exit status is the error's code, as
            // Compose's.
            Err(e) => {
                let code = message
                    .error_detail
                    .as_ref()
                    .and_then(|d| d.code)
                    .and_then(|c| u8::try_from(c).ok())
                    .filter(|c| *c != 0)
                    .unwrap_or(1);
                return Err(fail_with(code, e.0));
            }
        };
        print(&text);
    }
    Ok(())
}

/// `compose build`'s `--build-arg` list, checked as Compose does (a key is required).
pub fn check_build_args(args: &[String]) -> Result<()> {
    for a in args {
        if a.is_empty() || a.starts_with('=') {
            return Err(anyhow!(
                "invalid build arg {a:?}: expected KEY=VALUE or KEY"
            ));
        }
    }
    Ok(())
}
