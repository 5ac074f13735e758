//! `berth build` (`berth image build`, `berth builder build`): docker's flags sent as the
//! legacy builder's `POST /build` query, the context streamed as a tar while it is walked,
//! the registry credentials in `X-Registry-Config`, and the build's stream shown plain or
//! as a live view.

pub mod context;
pub mod git;
pub mod session;
pub mod upload;
pub mod view;

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _};

use anyhow::{Context as _, Result, anyhow};
use berth_api::models::JsonMessage;
use berth_api::units::ram_in_bytes;
use berth_client::{BuildOptions, UploadStream};
use clap::Args;
use futures_util::StreamExt;

use self::context::ContextKind;
use super::Env;
use crate::format::progress::ProgressRenderer;
use crate::format::units::human_size;
use crate::output::{self, StatusError};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag", value_name = "list")]
    pub tags: Vec<String>,
    /// Set build-time variables
    #[arg(long = "build-arg", value_name = "list")]
    pub build_args: Vec<String>,
    /// Ulimit options
    #[arg(long, value_name = "ulimit")]
    pub ulimit: Vec<String>,
    /// Name of the Dockerfile (Default is "PATH/Dockerfile")
    #[arg(short = 'f', long = "file", value_name = "string")]
    pub file: Option<String>,
    /// Memory limit
    #[arg(short = 'm', long, value_name = "bytes")]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long, value_name = "bytes", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Size of "/dev/shm"
    #[arg(long, value_name = "bytes")]
    pub shm_size: Option<String>,
    /// CPU shares (relative weight)
    #[arg(
        short = 'c',
        long,
        value_name = "int",
        default_value_t = 0,
        hide_default_value = true
    )]
    pub cpu_shares: i64,
    /// Limit the CPU CFS (Completely Fair Scheduler) period
    #[arg(
        long,
        value_name = "int",
        default_value_t = 0,
        hide_default_value = true
    )]
    pub cpu_period: i64,
    /// Limit the CPU CFS (Completely Fair Scheduler) quota
    #[arg(
        long,
        value_name = "int",
        default_value_t = 0,
        hide_default_value = true
    )]
    pub cpu_quota: i64,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(
        long,
        value_name = "string",
        default_value = "",
        hide_default_value = true
    )]
    pub cpuset_cpus: String,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(
        long,
        value_name = "string",
        default_value = "",
        hide_default_value = true
    )]
    pub cpuset_mems: String,
    /// Set the parent cgroup for the "RUN" instructions during build
    #[arg(
        long,
        value_name = "string",
        default_value = "",
        hide_default_value = true
    )]
    pub cgroup_parent: String,
    /// Container isolation technology
    #[arg(
        long,
        value_name = "string",
        default_value = "",
        hide_default_value = true
    )]
    pub isolation: String,
    /// Set metadata for an image
    #[arg(long, value_name = "list")]
    pub label: Vec<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Remove intermediate containers after a successful build
    #[arg(
        long,
        value_name = "bool",
        default_value = "true",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub rm: bool,
    /// Always remove intermediate containers
    #[arg(long)]
    pub force_rm: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Images to consider as cache sources
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    pub cache_from: Vec<String>,
    /// Compress the build context using gzip
    #[arg(long)]
    pub compress: bool,
    /// Security options
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    pub security_opt: Vec<String>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long, value_name = "string", default_value = "default")]
    pub network: String,
    /// Add a custom host-to-IP mapping ("host:ip")
    #[arg(long = "add-host", value_name = "list")]
    pub add_host: Vec<String>,
    /// Set the target build stage to build.
    #[arg(long, value_name = "string")]
    pub target: Option<String>,
    /// Write the image ID to the file
    #[arg(long, value_name = "string")]
    pub iidfile: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long, value_name = "string", env = "DOCKER_DEFAULT_PLATFORM")]
    pub platform: Option<String>,
    /// Squash newly built layers into a single new layer
    #[arg(long)]
    pub squash: bool,
    /// Skip image verification (deprecated)
    #[arg(long, hide = true)]
    pub disable_content_trust: bool,
    /// Type of progress output: auto, plain, tty
    #[arg(long, value_name = "string", default_value = "auto", value_parser = ["auto", "plain", "tty"])]
    pub progress: String,
    /// Secret to expose to the build (format: "id=mysecret[,src=/local/secret]")
    #[arg(long, value_name = "stringArray")]
    pub secret: Vec<String>,
    /// SSH agent socket or keys to expose to the build (format: default|<id>[=<socket>|<key>[,<key>]])
    #[arg(long, value_name = "stringArray")]
    pub ssh: Vec<String>,
    /// PATH | URL | -
    #[arg(value_name = "PATH | URL | -")]
    pub context: String,
}

fn flag_error(value: &str, flag: &str, reason: impl std::fmt::Display) -> anyhow::Error {
    StatusError::error(
        125,
        format!(
            "invalid argument {value:?} for {flag:?} flag: {reason}\nSee 'berth build --help'."
        ),
    )
}

fn bytes_flag(value: &Option<String>, flag: &str) -> Result<i64> {
    match value.as_deref() {
        None => Ok(0),
        Some(v) => ram_in_bytes(v).map_err(|e| flag_error(v, flag, e)),
    }
}

/// `--build-arg K=V`, or `K` alone: K's value in the environment, or null when unset (the
/// daemon then uses the Dockerfile's default), as the docker CLI sends them.
pub fn build_args_map(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<String, Option<String>> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), env(a)),
        })
        .collect()
}

/// The `/build` query for the flags (the Dockerfile path is set once the context is known).
pub fn build_options(
    args: &BuildArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BuildOptions> {
    let memory_swap = match args.memory_swap.as_deref() {
        Some("-1") => -1,
        _ => bytes_flag(&args.memory_swap, "--memory-swap")?,
    };
    let mut ulimits = Vec::new();
    for u in &args.ulimit {
        let parsed = super::run_opts::parse_ulimit(u).map_err(|e| flag_error(u, "--ulimit", e))?;
        ulimits.push(parsed);
    }
    Ok(BuildOptions {
        tags: args.tags.clone(),
        dockerfile: String::new(),
        quiet: args.quiet,
        no_cache: args.no_cache,
        pull: args.pull,
        remove: args.rm,
        force_remove: args.force_rm,
        build_args: build_args_map(&args.build_args, env),
        labels: args
            .label
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l.clone(), String::new()),
            })
            .collect(),
        target: args.target.clone().unwrap_or_default(),
        network_mode: args.network.clone(),
        // `host=ip` is accepted as `host:ip`, as the docker CLI does.
        extra_hosts: args
            .add_host
            .iter()
            .map(|h| h.replacen('=', ":", 1))
            .collect(),
        shm_size: bytes_flag(&args.shm_size, "--shm-size")?,
        memory: bytes_flag(&args.memory, "-m, --memory")?,
        memory_swap,
        cpu_shares: args.cpu_shares,
        cpu_period: args.cpu_period,
        cpu_quota: args.cpu_quota,
        cpuset_cpus: args.cpuset_cpus.clone(),
        cpuset_mems: args.cpuset_mems.clone(),
        cgroup_parent: args.cgroup_parent.clone(),
        cache_from: args.cache_from.clone(),
        security_opt: args.security_opt.clone(),
        platform: args.platform.clone().unwrap_or_default(),
        remote: String::new(),
        squash: args.squash,
        isolation: args.isolation.clone(),
        ulimits_json: if ulimits.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&ulimits)?
        },
        session: String::new(),
    })
}

/// `X-Registry-Config`: every stored credential, base64url JSON keyed by registry.
fn registry_config(env: &Env) -> Option<String> {
    use base64::Engine as _;
    let all = crate::credentials::all(&env.config);
    if all.is_empty() {
        return None;
    }
    let json = serde_json::to_vec(&all).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE.encode(json))
}

/// What to send: the body and the `dockerfile=` and `remote=` values.
struct Prepared {
    body: Option<UploadStream>,
    dockerfile: String,
    remote: String,
    sent: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// A cloned git context, removed once the build is over.
    _checkout: Option<git::Checkout>,
}

fn read_stdin_all() -> Result<Vec<u8>> {
    let mut text = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut text)
        .context("reading stdin")?;
    Ok(text)
}

fn prepare(args: &BuildArgs) -> Result<Prepared> {
    let compress = args.compress;
    let file = args.file.as_deref().filter(|f| !f.is_empty());
    let dockerfile_from_stdin = file == Some("-");
    match context::detect(&args.context)? {
        ContextKind::Stdin => {
            if dockerfile_from_stdin {
                anyhow::bail!(
                    "invalid argument: can't use stdin for both build context and dockerfile"
                );
            }
            let mut stdin = std::io::stdin().lock();
            let head = context::read_head(&mut stdin)
                .map_err(|e| anyhow!("unable to prepare context from STDIN: failed to peek context header from STDIN: {e}"))?;
            if context::is_archive(&head) {
                // Sent as it comes: the head already read, then the rest of stdin (what the
                // lock buffered beyond the head stays in stdin's shared buffer).
                drop(stdin);
                let (body, sent) = upload::tar_stream(compress, move |w| {
                    w.write_all(&head)?;
                    std::io::copy(&mut std::io::stdin().lock(), w)?;
                    Ok(())
                });
                return Ok(Prepared {
                    body: Some(body),
                    dockerfile: file.unwrap_or_default().to_string(),
                    remote: String::new(),
                    sent: Some(sent),
                    _checkout: None,
                });
            }
            let mut text = head;
            stdin
                .read_to_end(&mut text)
                .context("reading the Dockerfile from stdin")?;
            let tar = context::dockerfile_only_tar(&text)?;
            let (body, sent) = upload::tar_stream(compress, move |w| w.write_all(&tar));
            Ok(Prepared {
                body: Some(body),
                dockerfile: "Dockerfile".to_string(),
                remote: String::new(),
                sent: Some(sent),
                _checkout: None,
            })
        }
        ContextKind::Remote(url) if git::is_git_url(&url) => git_context(&url, file, compress),
        ContextKind::Remote(url) => {
            let body = if dockerfile_from_stdin {
                let text = read_stdin_all()?;
                Some(upload::tar_stream(false, move |w| w.write_all(&text)).0)
            } else {
                None
            };
            Ok(Prepared {
                body,
                dockerfile: file.unwrap_or_default().to_string(),
                remote: url,
                sent: None,
                _checkout: None,
            })
        }
        ContextKind::Dir(dir) => {
            let stdin_text = if dockerfile_from_stdin {
                Some(read_stdin_all()?)
            } else {
                None
            };
            let ctx = context::dir_context(&dir, file, stdin_text)?;
            let name = context::random_dockerfile_name();
            let dockerfile = match (&ctx.extra_dockerfile, &ctx.dockerfile_rel) {
                (Some(_), _) => name.clone(),
                (None, Some(rel)) => rel.clone(),
                (None, None) => "Dockerfile".to_string(),
            };
            let (body, sent) =
                upload::tar_stream(compress, move |w| ctx.write_tar(w, &name).map(|_| ()));
            Ok(Prepared {
                body: Some(body),
                dockerfile,
                remote: String::new(),
                sent: Some(sent),
                _checkout: None,
            })
        }
    }
}

/// A git URL: cloned here, then sent as a directory context (the Dockerfile must be in it).
fn git_context(url: &str, file: Option<&str>, compress: bool) -> Result<Prepared> {
    if which_git().is_none() {
        anyhow::bail!(
            "unable to prepare context: unable to find 'git': executable file not found in $PATH"
        );
    }
    let checkout = git::clone(&git::parse_remote(url)?, false)
        .map_err(|e| anyhow!("unable to prepare context: {e}"))?;
    // `-f` names a file of the repository, relative to the context.
    let in_repo = file.map(|f| checkout.context.join(f).to_string_lossy().into_owned());
    let ctx = context::dir_context(&checkout.context, in_repo.as_deref(), None)?;
    let Some(dockerfile) = ctx.dockerfile_rel.clone() else {
        anyhow::bail!(
            "the Dockerfile ({}) must be within the build context",
            file.unwrap_or("Dockerfile")
        );
    };
    let (body, sent) = upload::tar_stream(compress, move |w| ctx.write_tar(w, "").map(|_| ()));
    Ok(Prepared {
        body: Some(body),
        dockerfile,
        remote: String::new(),
        sent: Some(sent),
        _checkout: Some(checkout),
    })
}

fn which_git() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("git"))
            .find(|g| g.is_file())
    })
}

/// The message's error and exit code (`errorDetail.code`, else 1), as the docker CLI.
fn stream_error(m: &JsonMessage) -> Option<(u8, String)> {
    let detail = m.error_detail.as_ref().filter(|d| !d.message.is_empty());
    let message = detail
        .map(|d| d.message.clone())
        .or_else(|| m.error.clone())?;
    let code = detail
        .and_then(|d| d.code)
        .and_then(|c| u8::try_from(c).ok())
        .filter(|c| *c != 0)
        .unwrap_or(1);
    Some((code, message))
}

pub async fn build(env: &Env, args: BuildArgs) -> Result<()> {
    let envvar = |k: &str| std::env::var(k).ok();
    let mut options = build_options(&args, &envvar)?;
    if let Some(path) = &args.iidfile {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(anyhow!("removing image ID file: {e}"));
            }
            _ => {}
        }
    }
    let mut offer = session::offer(&args.secret, &args.ssh, &envvar)?;
    let _agents = offer.take_spawned();
    let prepared = prepare(&args)?;
    options.dockerfile = prepared.dockerfile;
    options.remote = prepared.remote;
    let client = env.client()?;
    // Secrets and ssh agents reach the build through a session opened first (only when
    // asked for: a plain build costs no extra connection).
    if !offer.is_empty() {
        options.session = session::start(&client, std::sync::Arc::new(offer)).await?;
    }
    let terminal = std::io::stdout().is_terminal();
    let live = !args.quiet
        && match args.progress.as_str() {
            "tty" => true,
            "plain" => false,
            _ => terminal,
        };
    let width = terminal_width();
    let mut view = view::LiveView::new(width);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    let registry_config = registry_config(env);
    let request = client.image_build(&options, prepared.body, registry_config.as_deref());
    let mut request = std::pin::pin!(request);
    // The daemon answers once it has the whole context: until then, a live view shows how
    // much has gone.
    let stream = loop {
        tokio::select! {
            r = &mut request => break r?,
            _ = tick.tick(), if live => {
                if let Some(sent) = &prepared.sent {
                    let n = sent.load(std::sync::atomic::Ordering::Relaxed);
                    output::out(&view.status(&format!(
                        "Sending build context to Berth daemon  {}",
                        human_size(i64::try_from(n).unwrap_or(i64::MAX))
                    )));
                }
            }
        }
    };
    let mut stream = std::pin::pin!(stream);
    let mut image_id = String::new();
    let mut quiet_text = String::new();
    let mut renderer = ProgressRenderer::new(false);
    let mut announced = false;
    let failure: Option<(u8, String)> = loop {
        let message = tokio::select! {
            m = stream.next() => m,
            _ = tick.tick(), if live && view.is_running() => {
                output::out(&view.tick());
                continue;
            }
        };
        let Some(message) = message else { break None };
        let message = message?;
        // The context is fully sent once the daemon answers; say how big it was, as the
        // docker CLI does (piped, only its last progress line).
        if !announced && !args.quiet && !live {
            if let Some(sent) = &prepared.sent {
                let n = sent.load(std::sync::atomic::Ordering::Relaxed);
                output::out(&format!(
                    "Sending build context to Docker daemon  {}\r\r\n",
                    human_size(i64::try_from(n).unwrap_or(i64::MAX))
                ));
            }
            announced = true;
        }
        if let Some(aux) = &message.aux {
            if let Some(id) = aux.get("ID").and_then(|v| v.as_str()) {
                image_id = id.to_string();
            }
            continue;
        }
        if let Some(err) = stream_error(&message) {
            break Some(err);
        }
        if args.quiet {
            if let Some(s) = &message.stream {
                quiet_text.push_str(s);
            }
            continue;
        }
        if live {
            match &message.stream {
                Some(s) => output::out(&view.feed(s)),
                None => {
                    let text = renderer.render(&message).unwrap_or_default();
                    if !text.is_empty() {
                        output::out(&view.print(&text));
                    }
                }
            }
        } else {
            let text = renderer.render(&message).unwrap_or_default();
            if !text.is_empty() {
                output::out(&text);
            }
        }
    };
    if live {
        output::out(&view.finish(failure.is_some()));
    }
    if let Some((code, message)) = failure {
        if args.quiet && !quiet_text.is_empty() {
            output::err(&quiet_text);
        }
        return Err(StatusError::error(code, message));
    }
    if args.quiet {
        let text = if quiet_text.trim().is_empty() {
            format!("{image_id}\n")
        } else {
            quiet_text
        };
        output::out(&text);
    }
    if let Some(path) = &args.iidfile {
        if image_id.is_empty() {
            return Err(anyhow!(
                "server did not provide an image ID. Cannot write {path}"
            ));
        }
        std::fs::write(path, &image_id).with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}

fn terminal_width() -> usize {
    use std::os::fd::AsFd as _;
    rustix::termios::tcgetwinsize(std::io::stdout().as_fd())
        .map(|w| usize::from(w.ws_col))
        .ok()
        .filter(|w| *w > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> BuildArgs {
        let mut argv = vec!["berth", "build"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Build(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_map_to_the_query() {
        let a = parse(&[
            "-t",
            "a:1",
            "-t",
            "b",
            "--build-arg",
            "V=2",
            "--build-arg",
            "HOME_X",
            "--build-arg",
            "UNSET_Y",
            "--target",
            "test",
            "--no-cache",
            "--pull",
            "-q",
            "--label",
            "k=v",
            "--label",
            "flag",
            "--network",
            "host",
            "--add-host",
            "h=1.2.3.4",
            "--shm-size",
            "64m",
            "-m",
            "1g",
            "--memory-swap",
            "-1",
            "--cpu-shares",
            "512",
            "--cpu-quota",
            "5000",
            "--cpuset-cpus",
            "0-1",
            "--platform",
            "linux/amd64",
            "--cache-from",
            "x,y",
            "--rm=false",
            "--force-rm",
            ".",
        ]);
        let env = |k: &str| (k == "HOME_X").then(|| "/home/x".to_string());
        let o = build_options(&a, &env).unwrap();
        assert_eq!(o.tags, ["a:1", "b"]);
        assert_eq!(o.build_args.get("V"), Some(&Some("2".into())));
        assert_eq!(o.build_args.get("HOME_X"), Some(&Some("/home/x".into())));
        assert_eq!(o.build_args.get("UNSET_Y"), Some(&None));
        assert_eq!(
            (
                o.target.as_str(),
                o.no_cache,
                o.pull,
                o.quiet,
                o.remove,
                o.force_remove
            ),
            ("test", true, true, true, false, true)
        );
        assert_eq!(o.labels.get("flag").map(String::as_str), Some(""));
        assert_eq!(
            (o.network_mode.as_str(), o.extra_hosts.clone()),
            ("host", vec!["h:1.2.3.4".to_string()])
        );
        assert_eq!(
            (o.shm_size, o.memory, o.memory_swap),
            (64 << 20, 1 << 30, -1)
        );
        assert_eq!(
            (o.cpu_shares, o.cpu_quota, o.cpuset_cpus.as_str()),
            (512, 5000, "0-1")
        );
        assert_eq!(
            (o.platform.as_str(), o.cache_from.clone()),
            ("linux/amd64", vec!["x".to_string(), "y".to_string()])
        );
        let q = o.to_query().to_query_string();
        assert!(
            q.contains("rm=0") && q.contains("forcerm=1") && q.contains("q=1"),
            "{q}"
        );

        let d = parse(&["."]);
        let o = build_options(&d, &|_| None).unwrap();
        assert!(o.remove && o.build_args.is_empty() && o.network_mode == "default");
        assert_eq!(d.progress, "auto");
        let e = build_options(&parse(&["-m", "lots", "."]), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid argument \"lots\" for \"-m, --memory\" flag"),
            "{e}"
        );
    }

    #[test]
    fn stream_errors_carry_their_code() {
        let m: JsonMessage = serde_json::from_str(
            r#"{"errorDetail":{"code":7,"message":"The command '/bin/sh -c exit 7' returned a non-zero code: 7"},"error":"The command '/bin/sh -c exit 7' returned a non-zero code: 7"}"#,
        )
        .unwrap();
        assert_eq!(
            stream_error(&m),
            Some((
                7,
                "The command '/bin/sh -c exit 7' returned a non-zero code: 7".into()
            ))
        );
        let m: JsonMessage = serde_json::from_str(r#"{"error":"boom"}"#).unwrap();
        assert_eq!(stream_error(&m), Some((1, "boom".into())));
    }
}
