//! The build engine: runs a [`Dockerfile`]'s stages through a [`StepExecutor`], with the
//! content-based cache, and writes the legacy builder's output.
//!
//! Stages the target does not need are skipped; the others run concurrently, each as soon as
//! the stages it reads from are done. Their output is nevertheless printed in stage order
//! (a later stage's lines wait in a buffer until the earlier ones finish), so the stream reads
//! as the legacy builder's: `Step N/M : ...` in order.
//!
//! A failed stage ends the build: the other stages' futures are dropped, which cancels their
//! running steps (the executor's contract).

mod dispatch;
mod output;
pub mod sources;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use berth_api::models::ContainerConfig;
use futures_util::future::try_join_all;
use tokio::sync::watch;

use crate::cache::CacheStore;
use crate::executor::{ExecError, ImageInfo, StepExecutor};
use crate::instructions::{ArgInstruction, Dockerfile};
use crate::plan::{self, Source};

pub use dispatch::short_id;
pub use output::BuildOutput;
use output::Printer;

/// The args Docker passes without a declaration (and keeps out of the history and the cache).
pub const PROXY_ARGS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// The platform the build runs on and for (Berth builds for its own platform).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform {
            os: "linux".into(),
            arch: arch.into(),
            variant: None,
        }
    }

    /// Whether `text` (`os[/arch[/variant]]`, as `--platform` takes it) names this platform;
    /// arch aliases as containerd's normalization (`x86_64` is `amd64`, `aarch64` `arm64`).
    pub fn matches(&self, text: &str) -> bool {
        let mut parts = text.split('/');
        let os = parts.next().unwrap_or_default().to_ascii_lowercase();
        let arch = parts.next().map(str::to_ascii_lowercase);
        let arch = match arch.as_deref() {
            None => self.arch.as_str(),
            Some("x86_64" | "x86-64") => "amd64",
            Some("aarch64") => "arm64",
            Some(a) => a,
        };
        let variant = parts.next();
        os == self.os
            && arch == self.arch
            && (variant.is_none() || variant == self.variant.as_deref())
    }

    fn text(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.arch),
            None => format!("{}/{}", self.os, self.arch),
        }
    }

    /// BUILDPLATFORM, TARGETPLATFORM and their parts, as BuildKit defines them.
    fn args(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for prefix in ["BUILD", "TARGET"] {
            out.push((format!("{prefix}PLATFORM"), self.text()));
            out.push((format!("{prefix}OS"), self.os.clone()));
            out.push((format!("{prefix}ARCH"), self.arch.clone()));
            out.push((
                format!("{prefix}VARIANT"),
                self.variant.clone().unwrap_or_default(),
            ));
        }
        out
    }
}

/// What a build is asked for (the `/build` query, parsed by the daemon).
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The extracted context.
    pub context: PathBuf,
    /// A directory the engine may write to (here-document files).
    pub scratch: PathBuf,
    pub target: Option<String>,
    /// `--build-arg k=v` (`None`: `--build-arg k`, taken from nowhere: unset).
    pub build_args: BTreeMap<String, Option<String>>,
    /// `--label`: added to the final image as a last LABEL step (as the legacy builder).
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    pub pull: bool,
    pub network_mode: Option<String>,
    pub platform: Platform,
    /// `--cache-from`: images whose history may stand in for steps the cache misses.
    pub cache_from: Vec<String>,
}

/// A build failure, worded as Docker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub message: String,
    pub cancelled: bool,
    /// A failed RUN's exit code.
    pub code: Option<i64>,
}

impl BuildError {
    pub fn new(message: impl Into<String>) -> Self {
        BuildError {
            message: message.into(),
            cancelled: false,
            code: None,
        }
    }
}

impl From<ExecError> for BuildError {
    fn from(e: ExecError) -> Self {
        BuildError {
            message: e.message,
            cancelled: e.cancelled,
            code: e.code,
        }
    }
}

/// What a finished stage hands to the stages that read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct StageResult {
    /// `None` for a scratch stage with no steps.
    pub image: Option<String>,
    pub config: ContainerConfig,
    pub key: String,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

type Results = Vec<watch::Sender<Option<StageResult>>>;

/// Everything the stages share.
pub(crate) struct Shared<'a, E> {
    pub df: &'a Dockerfile,
    pub opts: &'a BuildOptions,
    pub exec: &'a E,
    pub cache: &'a dyn CacheStore,
    pub printer: Printer,
    pub results: Results,
    /// The global ARGs after substitution (name → value, `None` when declared without one).
    pub meta: Vec<(String, Option<String>)>,
    /// `first_step[i]` and `total_steps` of the plan.
    pub plan: plan::Plan,
    /// ARG names the build declared (for the warning about unconsumed `--build-arg`s).
    pub declared: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The `--cache-from` images' ids and histories, looked up at the first cache miss.
    pub cache_from: tokio::sync::OnceCell<Vec<(String, Vec<crate::executor::HistoryItem>)>>,
}

/// Runs a build; returns the final image id (`sha256:...`). The caller tags it.
pub async fn build<E: StepExecutor>(
    df: &Dockerfile,
    opts: &BuildOptions,
    exec: &E,
    cache: &dyn CacheStore,
    out: Arc<dyn BuildOutput>,
) -> Result<String, BuildError> {
    let mut df = df.clone();
    add_label_step(&mut df, &opts.labels);
    let escape = df.directives.escape;
    let meta = meta_args(&df.meta_args, opts, escape)?;
    let lookup_meta = |name: &str| lookup_in(&meta, name);
    let mut from_names = Vec::with_capacity(df.stages.len());
    let mut from_platforms = Vec::with_capacity(df.stages.len());
    for s in &df.stages {
        let expanded = s
            .from
            .value
            .expand(&lookup_meta, escape)
            .map_err(|e| BuildError::new(e.to_string()))?;
        from_names.push(expanded.image);
        from_platforms.push(expanded.platform);
    }
    let plan = plan::plan(&df, &from_names, opts.target.as_deref()).map_err(BuildError::new)?;
    // `FROM --platform=P`: Berth runs no emulation, so a needed stage for another platform is
    // refused before anything runs (`$BUILDPLATFORM`, `$TARGETPLATFORM` are this one).
    for &i in &plan.stages {
        if let Some(p) = from_platforms[i].as_deref().filter(|p| !p.is_empty())
            && !opts.platform.matches(p)
        {
            return Err(BuildError::new(format!(
                "FROM --platform={p} {}: this daemon builds for {} only (it runs no emulation)",
                from_names[i],
                opts.platform.text()
            )));
        }
    }
    let printer = Printer::new(out.clone(), plan.stages.clone());
    // The meta ARGs are steps of their own, printed before the first stage.
    for (i, a) in df.meta_args.iter().enumerate() {
        printer.emit(
            plan.stages[0],
            format!("Step {}/{} : {}\n", i + 1, plan.total_steps, a.original),
        );
    }
    let results: Results = (0..df.stages.len())
        .map(|_| watch::channel(None).0)
        .collect();
    let declared = df
        .meta_args
        .iter()
        .flat_map(|a| a.value.args.iter().map(|d| d.name.clone()))
        .collect();
    let shared = Shared {
        df: &df,
        opts,
        exec,
        cache,
        printer,
        results,
        meta,
        plan,
        declared: std::sync::Mutex::new(declared),
        cache_from: tokio::sync::OnceCell::new(),
    };
    let stages = shared.plan.stages.clone();
    let target = *stages.last().expect("a plan has a stage");
    try_join_all(
        stages
            .iter()
            .map(|&i| dispatch::run_stage(&shared, i, from_names[i].clone())),
    )
    .await?;
    // The legacy builder's warning, after the last stage's output.
    let unused: Vec<&String> = {
        let declared = shared.declared.lock().unwrap_or_else(|e| e.into_inner());
        opts.build_args
            .keys()
            .filter(|k| !declared.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .collect()
    };
    if !unused.is_empty() {
        let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
        out.stream(&format!(
            "[Warning] One or more build-args [{}] were not consumed\n",
            names.join(" ")
        ));
    }
    let result = shared.results[target].borrow().clone();
    match result.and_then(|r| r.image) {
        Some(id) => Ok(id),
        None => Err(BuildError::new(
            "No image was generated. Is your Dockerfile empty?",
        )),
    }
}

/// The legacy builder turns `--label` into a LABEL instruction after the target's last one.
fn add_label_step(df: &mut Dockerfile, labels: &BTreeMap<String, String>) {
    use crate::instructions::{Instruction, KeyValue, Located};
    if labels.is_empty() {
        return;
    }
    let kvs: Vec<KeyValue> = labels
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: v.clone(),
        })
        .collect();
    let original = format!(
        "LABEL {}",
        kvs.iter()
            .map(|kv| format!("{:?}={:?}", kv.key, kv.value))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Every stage: the target is only known after planning, and a label on a stage that is
    // not the target changes nothing the user sees.
    for s in &mut df.stages {
        let line = s
            .instructions
            .last()
            .map_or(s.from.end_line, |i| i.end_line);
        s.instructions.push(Located {
            line,
            end_line: line,
            original: original.clone(),
            value: Instruction::Label(kvs.clone()),
        });
    }
}

/// The value of `name` in an ordered scope (later declarations win).
pub(crate) fn lookup_in(scope: &[(String, Option<String>)], name: &str) -> Option<String> {
    scope
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.clone())
}

/// The global ARGs: `--build-arg` overrides a default; defaults see the ARGs before them and
/// the platform args.
fn meta_args(
    decls: &[crate::instructions::Located<ArgInstruction>],
    opts: &BuildOptions,
    escape: char,
) -> Result<Vec<(String, Option<String>)>, BuildError> {
    let mut scope: Vec<(String, Option<String>)> = opts
        .platform
        .args()
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect();
    for decl in decls {
        let inst = crate::instructions::Instruction::Arg(decl.value.clone());
        let lookup = |n: &str| lookup_in(&scope, n);
        let expanded = inst
            .expand(&lookup, escape)
            .map_err(|e| BuildError::new(e.to_string()))?;
        let crate::instructions::Instruction::Arg(a) = expanded else {
            continue;
        };
        for d in a.args {
            let value = match opts.build_args.get(&d.name) {
                Some(v) => v.clone().or(d.default),
                None => d.default,
            };
            scope.push((d.name, value));
        }
    }
    Ok(scope)
}

/// Resolves a stage's base: an earlier stage's result, scratch, or an image.
pub(crate) async fn resolve_base<E: StepExecutor>(
    sh: &Shared<'_, E>,
    stage: usize,
    name: &str,
) -> Result<StageResult, BuildError> {
    match plan::resolve_source(sh.df, stage, name, false) {
        Source::Stage(i) => wait_stage(sh, i).await,
        Source::Scratch => Ok(StageResult {
            image: None,
            config: ContainerConfig::default(),
            key: crate::engine::dispatch::key_of(&["scratch"]),
            os: sh.opts.platform.os.clone(),
            architecture: sh.opts.platform.arch.clone(),
            variant: sh.opts.platform.variant.clone(),
        }),
        Source::Image(name) => {
            let printer = sh.printer.clone();
            let out: crate::executor::Output =
                Arc::new(move |t: &str| printer.emit(stage, t.to_string()));
            let info: ImageInfo = sh.exec.resolve_image(&name, sh.opts.pull, out).await?;
            Ok(StageResult {
                key: dispatch::key_of(&["image", &info.id]),
                image: Some(info.id),
                config: info.config,
                os: info.os,
                architecture: info.architecture,
                variant: info.variant,
            })
        }
    }
}

/// Waits for stage `i` to finish.
pub(crate) async fn wait_stage<E>(sh: &Shared<'_, E>, i: usize) -> Result<StageResult, BuildError> {
    let mut rx = sh.results[i].subscribe();
    let r = rx
        .wait_for(Option::is_some)
        .await
        .map_err(|_| BuildError::new("build stage ended without a result"))?;
    Ok(r.clone().expect("waited for a result"))
}

#[cfg(test)]
mod tests;
