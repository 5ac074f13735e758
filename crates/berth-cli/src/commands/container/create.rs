//! `create`, and the part of `run` it shares: the create request, the implicit pull, the
//! cidfile.

use anyhow::Result;
use berth_client::Client;
use clap::Args;
use futures_util::StreamExt;
use std::io::IsTerminal;

use super::Env;
use crate::commands::run_opts::{ContainerOptions, OptionError};
use crate::commands::session;
use crate::config::ConfigDir;
use crate::output::{self, StatusError, describe_client_error};

#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    override_usage = "berth create [OPTIONS] IMAGE [COMMAND] [ARG...]"
)]
pub struct CreateArgs {
    #[command(flatten)]
    pub opts: ContainerOptions,
}

/// `busybox` → `busybox:latest` (a tag or digest is kept), for docker's pull messages.
fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// `run`'s errors are prefixed `berth: ` and followed by docker's hint.
pub(super) fn run_error(code: u8, message: &str) -> anyhow::Error {
    StatusError::error(
        code,
        format!("berth: {message}\n\nRun 'berth run --help' for more information"),
    )
}

/// Pulls `image` with the credentials stored for its registry, printing progress to stderr
/// (nothing with `-q`).
async fn pull(
    client: &Client,
    config: &ConfigDir,
    image: &str,
    platform: Option<&str>,
    quiet: bool,
) -> Result<(), String> {
    let reference = with_default_tag(image);
    let (repo, tag) = match reference.rsplit_once('@') {
        Some((repo, digest)) => (repo.to_string(), digest.to_string()),
        None => {
            let (repo, tag) = crate::commands::image::split_tag(&reference);
            (repo.to_string(), tag.unwrap_or("latest").to_string())
        }
    };
    let auth = crate::credentials::registry_auth_for(config, image);
    let mut stream = match client
        .image_pull(&repo, &tag, platform, auth.as_deref())
        .await
    {
        Ok(s) => Box::pin(s),
        Err(e) => return Err(describe_client_error(&e)),
    };
    let mut renderer =
        crate::format::progress::ProgressRenderer::new(std::io::stderr().is_terminal());
    while let Some(message) = stream.next().await {
        let message = message.map_err(|e| describe_client_error(&e))?;
        match renderer.render(&message) {
            Ok(text) if !quiet => output::err(&text),
            Ok(_) => {}
            Err(e) => return Err(e.0),
        }
    }
    Ok(())
}

/// Creates the container as docker's CLI does: cidfile first, pull when the image is missing
/// (per `--pull`), warnings to stderr. Returns the id.
pub(super) async fn create_container(
    client: &Client,
    config: &ConfigDir,
    opts: &ContainerOptions,
    detach: bool,
    in_run: bool,
) -> Result<String> {
    let command = if in_run { "run" } else { "create" };
    let mut spec = opts
        .to_spec(detach)
        .map_err(|e| decorate_option_error(e, command))?;
    // A TTY starts at the local terminal's size (docker sets ConsoleSize for `-t`).
    if opts.tty
        && let (Some(host), Some((h, w))) =
            (spec.request.host_config.as_mut(), session::terminal_size())
    {
        host.console_size = Some([u64::from(h), u64::from(w)]);
    }
    let fail = |code: u8, message: String| {
        if in_run {
            run_error(code, &message)
        } else {
            StatusError::error(code, message)
        }
    };
    let cidfile = (!opts.cidfile.is_empty()).then(|| opts.cidfile.clone());
    if let Some(path) = &cidfile {
        if std::path::Path::new(path).exists() {
            return Err(fail(
                125,
                format!(
                    "container ID file found, make sure the other container isn't running or delete {path}"
                ),
            ));
        }
        std::fs::File::create(path)
            .map_err(|e| fail(125, format!("failed to create the container ID file: {e}")))?;
    }
    let daemon_code = if in_run { 125 } else { 1 };
    let image = opts.image();
    let platform = spec.platform.as_deref();
    if opts.pull == "always" {
        pull(client, config, image, platform, opts.quiet)
            .await
            .map_err(|m| fail(daemon_code, m))?;
    }
    let created = match client
        .container_create(&spec.request, spec.name.as_deref(), platform)
        .await
    {
        // As docker's CLI: any 404 means the image is missing (the daemon's message is not
        // read), when the image is named rather than given by its id.
        Err(e) if e.is_not_found() && opts.pull == "missing" && is_named(image) => {
            if !opts.quiet {
                output::err(&format!(
                    "Unable to find image '{}' locally\n",
                    with_default_tag(image)
                ));
            }
            pull(client, config, image, platform, opts.quiet)
                .await
                .map_err(|m| fail(daemon_code, m))?;
            client
                .container_create(&spec.request, spec.name.as_deref(), platform)
                .await
        }
        other => other,
    };
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            if let Some(path) = &cidfile {
                let _ = std::fs::remove_file(path);
            }
            return Err(if is_connect_error(&e) {
                fail(daemon_code, e.to_string())
            } else {
                fail(daemon_code, describe_client_error(&e))
            });
        }
    };
    for warning in &created.warnings {
        output::err(&format!("WARNING: {warning}\n"));
    }
    if let Some(path) = &cidfile {
        std::fs::write(path, &created.id).map_err(|e| {
            fail(
                125,
                format!("failed to write the container ID to the file: {e}"),
            )
        })?;
    }
    Ok(created.id)
}

fn is_connect_error(e: &berth_client::Error) -> bool {
    matches!(e, berth_client::Error::Connect { .. })
}

/// Whether `image` names an image (`busybox`, `reg:5000/app:1`) rather than giving its id
/// (`sha256:<hex>`, 64 hex digits), as docker's `reference.ParseAnyReference` tells them apart.
fn is_named(image: &str) -> bool {
    berth_reference::Digest::parse(image).is_err()
        && berth_reference::Reference::parse_normalized(image).is_ok()
}

pub async fn create(env: &Env, args: CreateArgs) -> Result<()> {
    let client = env.client()?;
    let id = create_container(&client, &env.config, &args.opts, false, false).await?;
    output::out(&format!("{id}\n"));
    Ok(())
}

/// docker's wording and exit status for a `run`/`create` option error.
pub(super) fn decorate_option_error(e: anyhow::Error, command: &str) -> anyhow::Error {
    match e.downcast::<OptionError>() {
        Ok(option) => option.into_status(
            command,
            &format!("berth {command} [OPTIONS] IMAGE [COMMAND] [ARG...]"),
        ),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tags() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(
            with_default_tag("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(with_default_tag("busybox:1.36"), "busybox:1.36");
        assert_eq!(with_default_tag("busybox@sha256:ab"), "busybox@sha256:ab");
    }
}
