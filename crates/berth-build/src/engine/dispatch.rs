//! One stage: its instructions in order, each turned into an image config and a cache key,
//! then found in the cache or handed to the executor.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::models::HealthConfig;
use sha2::{Digest as _, Sha256};

use super::sources::{self, Effective};
use super::{BuildError, PROXY_ARGS, Shared, StageResult, lookup_in, resolve_base, wait_stage};
use crate::cache::CacheRecord;
use crate::executor::StepMount;
use crate::executor::{Commit, Committed, CopyStep, MountedRoot, Output, RunStep, StepExecutor};
use crate::instructions::{
    CommandLine, CopyInstruction, Healthcheck, Instruction, Located, MountKind, RunInstruction,
    RunMount,
};
use crate::plan::{self, Source};

/// A cache key: sha256 over the parts.
pub(crate) fn key_of(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The 12-character id the legacy stream shows.
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What a step does when the cache does not have it.
enum Action {
    Empty,
    Run(Box<RunStep>),
    Copy(Box<CopyStep>),
}

struct StageRun<'s, 'a, E> {
    sh: &'s Shared<'a, E>,
    index: usize,
    cur: StageResult,
    /// ARGs declared in this stage, in order, with their values.
    args: Vec<(String, Option<String>)>,
    author: Option<String>,
    /// CMD was set in this stage (an ENTRYPOINT after it keeps it).
    cmd_set: bool,
    step: usize,
    /// The current step's shape and inputs (see [`CacheRecord::shape`]).
    why: (String, String),
    /// A step of this stage missed the cache (only the first miss has a reason to tell).
    missed: bool,
}

/// Runs stage `index` and publishes its result.
pub(crate) async fn run_stage<E: StepExecutor>(
    sh: &Shared<'_, E>,
    index: usize,
    from_name: String,
) -> Result<(), BuildError> {
    let stage = &sh.df.stages[index];
    let step = sh.plan.first_step[index];
    sh.printer.emit(
        index,
        format!(
            "Step {step}/{} : {}\n",
            sh.plan.total_steps, stage.from.original
        ),
    );
    let base = resolve_base(sh, index, &from_name).await?;
    sh.printer.emit(
        index,
        format!(" ---> {}\n", short_id(base.image.as_deref().unwrap_or(""))),
    );
    let triggers = base.config.on_build.clone().unwrap_or_default();
    let mut run = StageRun {
        sh,
        index,
        cur: base,
        args: Vec::new(),
        author: None,
        cmd_set: false,
        step,
        why: Default::default(),
        missed: false,
    };
    // The base's ONBUILD triggers run first, and the new image does not inherit them.
    run.cur.config.on_build = None;
    if !triggers.is_empty() {
        let s = if triggers.len() == 1 { "" } else { "s" };
        run.emit(format!("# Executing {} build trigger{s}\n", triggers.len()));
        for t in &triggers {
            let inst = parse_trigger(t)?;
            run.dispatch(&inst).await?;
        }
    }
    for inst in &stage.instructions {
        run.step += 1;
        run.emit(format!(
            "Step {}/{} : {}\n",
            run.step, sh.plan.total_steps, inst.original
        ));
        run.dispatch(inst).await?;
        let id = run.cur.image.clone().unwrap_or_default();
        run.emit(format!(" ---> {}\n", short_id(&id)));
    }
    if let Some(id) = &run.cur.image {
        sh.printer.aux(index, id.clone());
    }
    sh.results[index].send_replace(Some(run.cur));
    sh.printer.finish(index);
    Ok(())
}

fn parse_trigger(text: &str) -> Result<Located<Instruction>, BuildError> {
    let df = crate::parse(&format!("FROM scratch\n{text}\n"))
        .map_err(|e| BuildError::new(e.to_string()))?;
    df.stages
        .into_iter()
        .next()
        .and_then(|s| s.instructions.into_iter().next())
        .ok_or_else(|| BuildError::new(format!("invalid ONBUILD trigger: {text}")))
}

fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

/// Go's `%q` of a string slice, as the legacy history shows CMD and ENTRYPOINT.
fn quoted(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", items.join(" "))
}

impl<E: StepExecutor> StageRun<'_, '_, E> {
    fn emit(&self, text: String) {
        self.sh.printer.emit(self.index, text);
    }

    fn output(&self) -> Output {
        let printer = self.sh.printer.clone();
        let index = self.index;
        Arc::new(move |t: &str| printer.emit(index, t.to_string()))
    }

    fn escape(&self) -> char {
        self.sh.df.directives.escape
    }

    /// The value of a variable for substitution: ENV wins over ARG.
    fn lookup(&self, name: &str) -> Option<String> {
        let env = self.cur.config.env.as_deref().unwrap_or_default();
        env.iter()
            .rev()
            .find_map(|e| match e.split_once('=') {
                Some((k, v)) if k == name => Some(v.to_string()),
                _ => None,
            })
            .or_else(|| lookup_in(&self.args, name))
    }

    /// The stage's ARGs with a value that ENV does not shadow, sorted by name: what a RUN
    /// sees in its environment and what its cache key and history record.
    fn used_args(&self) -> Vec<String> {
        let env = self.cur.config.env.as_deref().unwrap_or_default();
        let mut seen = BTreeMap::new();
        for (k, v) in &self.args {
            let shadowed = env
                .iter()
                .any(|e| e.split_once('=').map(|(ek, _)| ek) == Some(k));
            match v {
                Some(v) if !shadowed => {
                    seen.insert(k.clone(), v.clone());
                }
                _ => {
                    seen.remove(k);
                }
            }
        }
        seen.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    fn commit(&self, created_by: String) -> Commit {
        Commit {
            config: self.cur.config.clone(),
            created_by,
            author: self.author.clone(),
            os: self.cur.os.clone(),
            architecture: self.cur.architecture.clone(),
            variant: self.cur.variant.clone(),
        }
    }

    fn shell(&self) -> Vec<String> {
        self.cur
            .config
            .shell
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn argv(&self, c: &CommandLine) -> Vec<String> {
        match c {
            CommandLine::Exec(v) => v.clone(),
            CommandLine::Shell(s) => {
                let mut v = self.shell();
                v.push(s.clone());
                v
            }
        }
    }

    /// Looks the step up in the cache, else runs `action`; then the step's image is current.
    async fn step(
        &mut self,
        key: String,
        description: String,
        kind: &str,
        action: Action,
    ) -> Result<(), BuildError> {
        let sh = self.sh;
        if !sh.opts.no_cache
            && let Ok(Some(r)) = sh.cache.get(&key)
            && sh.exec.image_exists(&r.image).await
        {
            let _ = sh.cache.touch(&key, now());
            self.emit(" ---> Using cache\n".into());
            self.cur.image = Some(r.image);
            self.cur.key = key;
            return Ok(());
        }
        let parent = self.cur.image.clone();
        if !sh.opts.no_cache
            && !sh.opts.cache_from.is_empty()
            && let Some(done) = self.reuse_cache_from(&description, &action).await?
        {
            self.emit(" ---> Using cache\n".into());
            self.record(&self.cur.key, &key, &done, parent, description, kind);
            self.cur.image = Some(done.id);
            self.cur.key = key;
            return Ok(());
        }
        if !sh.opts.no_cache && !self.missed {
            self.missed = true;
            if let Some(reason) = self.miss_reason() {
                self.emit(format!(" ---> Cache miss: {reason}\n"));
            }
        }
        let done: Committed = match action {
            Action::Empty => {
                let commit = self.commit(description.clone());
                sh.exec.commit_empty(parent.clone(), commit).await?
            }
            Action::Run(r) => sh.exec.run(*r, self.output()).await?,
            Action::Copy(c) => sh.exec.copy(*c).await?,
        };
        self.record(&self.cur.key, &key, &done, parent, description, kind);
        self.cur.image = Some(done.id);
        self.cur.key = key;
        Ok(())
    }

    /// Why the first step of a stage that misses the cache does: compared with the last
    /// record of the same instruction after the same parent. Nothing when the parent has no
    /// recorded children at all (a first build).
    fn miss_reason(&self) -> Option<String> {
        let records = self.sh.cache.list().ok()?;
        if !records.iter().any(|r| r.parent_key == self.cur.key) {
            return None;
        }
        let (shape, inputs) = &self.why;
        let Some(prev) = records
            .iter()
            .filter(|r| &r.shape == shape)
            .max_by_key(|r| r.last_used)
        else {
            return Some("the instruction is new or was changed".into());
        };
        if prev.inputs.starts_with("files:") {
            return Some("the files it copies changed".into());
        }
        if let Some(now) = inputs.strip_prefix("args:") {
            let old = prev.inputs.strip_prefix("args:").unwrap_or_default();
            let (now, now_mounts) = now.split_once('\u{1}').unwrap_or((now, ""));
            let (old, old_mounts) = old.split_once('\u{1}').unwrap_or((old, ""));
            let split = |t: &str| -> BTreeMap<String, String> {
                t.split('\0')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (k.to_string(), v.to_string())
                    })
                    .collect()
            };
            let (a, b) = (split(old), split(now));
            let names: std::collections::BTreeSet<&str> = a
                .keys()
                .chain(b.keys())
                .filter(|k| a.get(*k) != b.get(*k))
                .map(String::as_str)
                .collect();
            if !names.is_empty() {
                let names: Vec<&str> = names.into_iter().collect();
                return Some(format!("build args changed: {}", names.join(", ")));
            }
            if now_mounts != old_mounts {
                return Some("the files it mounts changed".into());
            }
        }
        Some("variables in it have other values".into())
    }

    fn record(
        &self,
        parent_key: &str,
        key: &str,
        done: &Committed,
        parent: Option<String>,
        description: String,
        kind: &str,
    ) {
        let t = now();
        let record = CacheRecord {
            key: key.to_string(),
            image: done.id.clone(),
            parent,
            description,
            kind: kind.into(),
            size: done.layer_size,
            created: t,
            last_used: t,
            usage_count: 0,
            parent_key: parent_key.to_string(),
            shape: self.why.0.clone(),
            inputs: self.why.1.clone(),
        };
        if let Err(e) = self.sh.cache.put(&record) {
            tracing::warn!(error = %e, "cannot record a build cache entry");
        }
    }

    /// `--cache-from`: an image whose history starts as the current image's and continues
    /// with this step (same `created_by`) stands in for it, as the legacy builder's
    /// `--cache-from` does: a new image of its layers up to there, with this step's config.
    async fn reuse_cache_from(
        &self,
        created_by: &str,
        action: &Action,
    ) -> Result<Option<Committed>, BuildError> {
        let sh = self.sh;
        let sources = sh
            .cache_from
            .get_or_try_init(|| async {
                let mut out = Vec::new();
                for name in &sh.opts.cache_from {
                    // Local images only, never pulled; one that is not there is no error (as
                    // Docker's legacy builder has it).
                    if let Ok(history) = sh.exec.history(name).await {
                        out.push((name.clone(), history));
                    }
                }
                Ok::<_, BuildError>(out)
            })
            .await?;
        let current = match &self.cur.image {
            Some(id) => sh.exec.history(id).await?,
            None => Vec::new(),
        };
        let n = current.len();
        let Some((source, _)) = sources
            .iter()
            .find(|(_, h)| h.len() > n && h[..n] == current[..] && h[n].created_by == created_by)
        else {
            return Ok(None);
        };
        let commit = match action {
            Action::Empty => self.commit(created_by.to_string()),
            Action::Run(r) => r.commit.clone(),
            Action::Copy(c) => c.commit.clone(),
        };
        Ok(Some(sh.exec.derive(source, n + 1, commit).await?))
    }

    /// A step that only changes the config: `comment` is its history text.
    async fn meta(&mut self, canonical: &str, comment: String) -> Result<(), BuildError> {
        let key = key_of(&[&self.cur.key, "meta", canonical]);
        let created_by = format!("/bin/sh -c #(nop)  {comment}");
        self.step(key, created_by, "regular", Action::Empty).await
    }

    async fn dispatch(&mut self, inst: &Located<Instruction>) -> Result<(), BuildError> {
        let lookup = |n: &str| self.lookup(n);
        let expanded = inst
            .value
            .expand(&lookup, self.escape())
            .map_err(|e| BuildError::new(e.to_string()))?;
        let canonical = format!("{expanded:?}");
        self.why = (key_of(&[&self.cur.key, &inst.original]), canonical.clone());
        let c = &mut self.cur.config;
        match expanded {
            Instruction::Arg(a) => {
                let mut words = Vec::new();
                for d in a.args {
                    let value = match self.sh.opts.build_args.get(&d.name) {
                        Some(v) => v.clone().or(d.default.clone()),
                        None => d
                            .default
                            .clone()
                            .or_else(|| lookup_in(&self.sh.meta, &d.name)),
                    };
                    words.push(match &d.default {
                        Some(v) => format!("{}={v}", d.name),
                        None => d.name.clone(),
                    });
                    self.sh
                        .declared
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(d.name.clone());
                    self.args.push((d.name, value));
                }
                let canonical = format!("{canonical}{:?}", self.used_args());
                return self
                    .meta(&canonical, format!("ARG {}", words.join(" ")))
                    .await;
            }
            Instruction::Env(kvs) => {
                let env = c.env.get_or_insert_with(Vec::new);
                for kv in &kvs {
                    set_env(env, &kv.key, &kv.value);
                }
                let words: Vec<String> = kvs
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect();
                return self
                    .meta(&canonical, format!("ENV {}", words.join(" ")))
                    .await;
            }
            Instruction::Label(kvs) => {
                let labels = c.labels.get_or_insert_with(BTreeMap::new);
                for kv in &kvs {
                    labels.insert(kv.key.clone(), kv.value.clone());
                }
                let words: Vec<String> = kvs
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect();
                return self
                    .meta(&canonical, format!("LABEL {}", words.join(" ")))
                    .await;
            }
            Instruction::Maintainer(m) => {
                self.author = Some(m.clone());
                return self.meta(&canonical, format!("MAINTAINER {m}")).await;
            }
            Instruction::Expose(ports) => {
                let set = c.exposed_ports.get_or_insert_with(BTreeMap::new);
                let mut words = Vec::new();
                for p in ports {
                    for port in expand_port(&p)? {
                        words.push(port.clone());
                        set.insert(port, BTreeMap::new());
                    }
                }
                return self
                    .meta(&canonical, format!("EXPOSE {}", words.join(" ")))
                    .await;
            }
            Instruction::Cmd(cmd) => {
                let argv = self.argv(&cmd);
                self.cur.config.cmd = Some(argv.clone());
                self.cmd_set = true;
                return self
                    .meta(&canonical, format!("CMD {}", quoted(&argv)))
                    .await;
            }
            Instruction::Entrypoint(ep) => {
                let argv = self.argv(&ep);
                self.cur.config.entrypoint = Some(argv.clone());
                if !self.cmd_set {
                    self.cur.config.cmd = None;
                }
                return self
                    .meta(&canonical, format!("ENTRYPOINT {}", quoted(&argv)))
                    .await;
            }
            Instruction::Volume(vols) => {
                let set = c.volumes.get_or_insert_with(BTreeMap::new);
                for v in &vols {
                    if v.trim().is_empty() {
                        return Err(BuildError::new(
                            "VOLUME specified can not be an empty string",
                        ));
                    }
                    set.insert(v.clone(), BTreeMap::new());
                }
                return self
                    .meta(&canonical, format!("VOLUME {}", quoted(&vols)))
                    .await;
            }
            Instruction::User(u) => {
                c.user = u.clone();
                return self.meta(&canonical, format!("USER {u}")).await;
            }
            Instruction::StopSignal(s) => {
                c.stop_signal = Some(s.clone());
                return self.meta(&canonical, format!("STOPSIGNAL {s}")).await;
            }
            Instruction::Shell(v) => {
                c.shell = Some(v.clone());
                return self.meta(&canonical, format!("SHELL {}", quoted(&v))).await;
            }
            Instruction::Onbuild(t) => {
                c.on_build.get_or_insert_with(Vec::new).push(t.clone());
                return self.meta(&canonical, format!("ONBUILD {t}")).await;
            }
            Instruction::Healthcheck(h) => {
                let cfg = self.healthcheck(&h)?;
                self.cur.config.healthcheck = Some(cfg);
                let text = inst
                    .original
                    .split_once(' ')
                    .map_or("", |(_, rest)| rest)
                    .to_string();
                return self.meta(&canonical, format!("HEALTHCHECK {text}")).await;
            }
            Instruction::Workdir(w) => return self.workdir(&canonical, &w).await,
            Instruction::Run(r) => return self.run(&canonical, &r).await,
            Instruction::Copy(ci) => return self.copy(&canonical, &ci, false).await,
            Instruction::Add(ci) => return self.copy(&canonical, &ci, true).await,
        }
    }

    fn healthcheck(&self, h: &Healthcheck) -> Result<HealthConfig, BuildError> {
        let Healthcheck::Cmd {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } = h
        else {
            return Ok(HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            });
        };
        let dur = |flag: &str, v: &Option<String>| -> Result<i64, BuildError> {
            match v {
                None => Ok(0),
                Some(s) => berth_api::duration::parse_go_duration(s).ok_or_else(|| {
                    BuildError::new(format!(
                        "Error parsing --{flag}: time: invalid duration \"{s}\""
                    ))
                }),
            }
        };
        let test = match test {
            CommandLine::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
            CommandLine::Exec(v) => std::iter::once("CMD".to_string())
                .chain(v.iter().cloned())
                .collect(),
        };
        Ok(HealthConfig {
            test: Some(test),
            interval: dur("interval", interval)?,
            timeout: dur("timeout", timeout)?,
            start_period: dur("start-period", start_period)?,
            start_interval: dur("start-interval", start_interval)?,
            retries: match retries {
                None => 0,
                Some(r) => r.parse().map_err(|_| {
                    BuildError::new(format!("Error parsing --retries: invalid value {r:?}"))
                })?,
            },
        })
    }

    async fn workdir(&mut self, canonical: &str, w: &str) -> Result<(), BuildError> {
        let base = match self.cur.config.working_dir.as_str() {
            "" => "/",
            d => d,
        };
        let path = sources::clean_absolute(&if w.starts_with('/') {
            w.to_string()
        } else {
            format!("{base}/{w}")
        });
        self.cur.config.working_dir = path.clone();
        let key = key_of(&[&self.cur.key, "workdir", canonical]);
        let created_by = format!("/bin/sh -c #(nop) WORKDIR {path}");
        let step = CopyStep {
            parent: self.cur.image.clone(),
            items: Vec::new(),
            mkdirs: vec![path],
            chown: None,
            chmod: None,
            exclude: Vec::new(),
            commit: self.commit(created_by.clone()),
        };
        self.step(key, created_by, "regular", Action::Copy(Box::new(step)))
            .await
    }

    async fn run(&mut self, canonical: &str, r: &RunInstruction) -> Result<(), BuildError> {
        // Bind mounts from a stage or an image stay mounted until the step is done.
        let mut _views: Vec<Box<dyn MountedRoot>> = Vec::new();
        let mut mounts = Vec::new();
        let mut mount_keys = Vec::new();
        let mut ssh_index = 0;
        for m in &r.mounts {
            let (mount, key) = self.run_mount(m, &mut _views, ssh_index).await?;
            ssh_index += usize::from(m.kind == MountKind::Ssh);
            mounts.extend(mount);
            mount_keys.push(key);
        }
        let argv = match &r.command {
            CommandLine::Shell(s) => {
                let mut script = s.clone();
                let only_heredoc = r.heredocs.len() == 1
                    && s.trim()
                        .trim_start_matches("<<")
                        .trim_start_matches('-')
                        .trim_matches(['"', '\''])
                        == r.heredocs[0].name;
                if only_heredoc {
                    script = r.heredocs[0].content.clone();
                } else {
                    for h in &r.heredocs {
                        script.push('\n');
                        script.push_str(&h.content);
                        script.push_str(&h.name);
                    }
                }
                let mut v = self.shell();
                v.push(script);
                v
            }
            CommandLine::Exec(v) => v.clone(),
        };
        let args = self.used_args();
        let created_by = if args.is_empty() {
            argv.join(" ")
        } else {
            format!("|{} {} {}", args.len(), args.join(" "), argv.join(" "))
        };
        let key = key_of(&[
            &self.cur.key,
            "run",
            canonical,
            &args.join("\0"),
            &mount_keys.join("\0"),
        ]);
        self.why.1 = format!("args:{}\u{1}{}", args.join("\0"), mount_keys.join("\0"));
        let mut run_config = self.cur.config.clone();
        run_config.cmd = Some(argv);
        // The image's ENTRYPOINT does not wrap a RUN.
        run_config.entrypoint = Some(vec![String::new()]);
        let env = run_config.env.get_or_insert_with(Vec::new);
        for a in &args {
            env.push(a.clone());
        }
        for p in PROXY_ARGS {
            if let Some(Some(v)) = self.sh.opts.build_args.get(p) {
                env.push(format!("{p}={v}"));
            }
        }
        // The first ssh mount is the agent a plain `ssh` finds (BuildKit sets it the same way).
        if let Some(StepMount::Ssh { target, .. }) =
            mounts.iter().find(|m| matches!(m, StepMount::Ssh { .. }))
            && !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK="))
        {
            env.push(format!("SSH_AUTH_SOCK={target}"));
        }
        let step = RunStep {
            parent: self.cur.image.clone(),
            run_config,
            network: r.network,
            mounts,
            network_mode: self.sh.opts.network_mode.clone(),
            commit: self.commit(created_by.clone()),
        };
        self.step(key, created_by, "regular", Action::Run(Box::new(step)))
            .await
    }

    /// The root a `--from` names (a stage's or an image's), mounted read-only.
    async fn mount_from(&self, from: &str) -> Result<Option<Box<dyn MountedRoot>>, BuildError> {
        let image = match plan::resolve_source(self.sh.df, self.index, from, true) {
            Source::Stage(i) => wait_stage(self.sh, i).await?.image,
            Source::Scratch => None,
            Source::Image(name) => Some(
                self.sh
                    .exec
                    .resolve_image(&name, false, self.output())
                    .await?
                    .id,
            ),
        };
        match image {
            Some(id) => Ok(Some(self.sh.exec.mount(&id).await?)),
            None => Ok(None),
        }
    }

    /// One `RUN --mount`: what the container gets, and what goes into the step's cache key
    /// (a bind mount's content digest: a changed file under it reruns the step).
    async fn run_mount(
        &self,
        m: &RunMount,
        views: &mut Vec<Box<dyn MountedRoot>>,
        ssh_index: usize,
    ) -> Result<(Option<StepMount>, String), BuildError> {
        let workdir = match self.cur.config.working_dir.as_str() {
            "" => "/".to_string(),
            w => w.to_string(),
        };
        let target = m.target.as_deref().map(|t| {
            let abs = sources::absolute_dest(t, &workdir);
            sources::clean_absolute(&abs)
        });
        let need_target = || {
            target
                .clone()
                .ok_or_else(|| BuildError::new("mount target is required"))
        };
        let octal = |v: &Option<String>, default: u32| -> Result<u32, BuildError> {
            match v {
                None => Ok(default),
                Some(t) => u32::from_str_radix(t, 8)
                    .map_err(|_| BuildError::new(format!("invalid mount mode {t}"))),
            }
        };
        let num = |v: &Option<String>| -> Result<u32, BuildError> {
            match v {
                None => Ok(0),
                Some(t) => t
                    .parse()
                    .map_err(|_| BuildError::new(format!("invalid mount uid/gid {t}"))),
            }
        };
        match m.kind {
            MountKind::Bind => {
                let target = need_target()?;
                let root = match &m.from {
                    Some(from) => match self.mount_from(from).await? {
                        Some(v) => {
                            let p = v.path().to_path_buf();
                            views.push(v);
                            p
                        }
                        None => {
                            return Err(BuildError::new(format!(
                                "cannot mount from {from}: it has no files"
                            )));
                        }
                    },
                    None => self.sh.opts.context.clone(),
                };
                let source = m.source.clone().unwrap_or_else(|| ".".into());
                let (r2, s2) = (root.clone(), source.clone());
                let digest = tokio::task::spawn_blocking(move || {
                    sources::select(&r2, &[s2], "/", &Effective::default())
                })
                .await
                .map_err(|e| BuildError::new(format!("internal error: {e}")))?
                .map_err(|e| BuildError::new(format!("failed to mount {source}: {e}")))?
                .digest;
                let rel = source.trim_start_matches('/').to_string();
                let resolved = sources::resolve_in_root(&root, std::path::Path::new(&rel))
                    .map_err(|e| BuildError::new(format!("failed to mount {source}: {e}")))?;
                Ok((
                    Some(StepMount::Bind {
                        source: resolved,
                        target,
                        // Writes to a context or stage mount are never kept; a stage's files
                        // are shared with its image, so they are never writable.
                        read_only: !m.read_write || m.from.is_some(),
                    }),
                    format!("bind:{digest}:{:?}", m),
                ))
            }
            MountKind::Cache => {
                let target = need_target()?;
                let mount = StepMount::Cache {
                    id: m.id.clone().unwrap_or_else(|| target.clone()),
                    target,
                    uid: num(&m.uid)?,
                    gid: num(&m.gid)?,
                    mode: octal(&m.mode, 0o755)?,
                };
                Ok((Some(mount), format!("{m:?}")))
            }
            MountKind::Tmpfs => {
                let size = match &m.size {
                    None => 0,
                    Some(s) => berth_api::units::ram_in_bytes(s)
                        .map_err(|_| BuildError::new(format!("invalid tmpfs size {s}")))?
                        as u64,
                };
                let mount = StepMount::Tmpfs {
                    target: need_target()?,
                    size,
                };
                Ok((Some(mount), format!("{m:?}")))
            }
            MountKind::Secret => {
                // BuildKit's defaults: the id is the target's file name, the file goes to
                // /run/secrets/<id> unless the secret only sets a variable.
                let id = match (&m.id, &target) {
                    (Some(id), _) if !id.is_empty() => id.clone(),
                    (_, Some(t)) => t.rsplit('/').next().unwrap_or_default().to_string(),
                    _ => String::new(),
                };
                if id.is_empty() {
                    return Err(BuildError::new("invalid secret mount: an id is required"));
                }
                let target = match (target, &m.env) {
                    (Some(t), _) => Some(t),
                    (None, Some(_)) => None,
                    (None, None) => Some(format!("/run/secrets/{id}")),
                };
                let mount = StepMount::Secret {
                    id,
                    target,
                    env: m.env.clone(),
                    required: m.required,
                    mode: octal(&m.mode, 0o400)?,
                    uid: num(&m.uid)?,
                    gid: num(&m.gid)?,
                };
                // The key has the mount's options, never the secret's value (as BuildKit).
                Ok((Some(mount), format!("{m:?}")))
            }
            MountKind::Ssh => {
                let id =
                    m.id.clone()
                        .filter(|i| !i.is_empty())
                        .unwrap_or_else(|| "default".into());
                let target =
                    target.unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_index}"));
                let mount = StepMount::Ssh {
                    id,
                    target,
                    required: m.required,
                    mode: octal(&m.mode, 0o600)?,
                    uid: num(&m.uid)?,
                    gid: num(&m.gid)?,
                };
                Ok((Some(mount), format!("{m:?}")))
            }
        }
    }

    async fn copy(
        &mut self,
        canonical: &str,
        ci: &CopyInstruction,
        add: bool,
    ) -> Result<(), BuildError> {
        let kw = if add { "ADD" } else { "COPY" };
        let failed = |e: String| BuildError::new(format!("{kw} failed: {e}"));
        // Keeps a stage's or image's root mounted until the layer is written.
        let mut _mounted: Option<Box<dyn MountedRoot>> = None;
        let mut sources_list = ci.sources.clone();
        let urls: Vec<&String> = ci
            .sources
            .iter()
            .filter(|s| s.starts_with("http://") || s.starts_with("https://"))
            .collect();
        // Kept until the layer is written (the clone is removed when it drops).
        let mut _checkout: Option<crate::git::Checkout> = None;
        let git_source = (add && ci.sources.len() == 1 && crate::git::is_git_url(&ci.sources[0]))
            .then(|| ci.sources[0].clone());
        let root = if let Some(url) = git_source {
            // `ADD <git URL>#ref[:dir] /dest`: the repository's files (without `.git` unless
            // `--keep-git-dir`), cloned as a git context is; keyed on the files' content.
            let repo = crate::git::parse_remote(&url).map_err(failed)?;
            let dir = self
                .sh
                .opts
                .scratch
                .join(format!("git-{}-{}", self.index, self.step));
            let keep = ci.keep_git_dir;
            let checkout = tokio::task::spawn_blocking(move || {
                let c = crate::git::clone_into(&repo, &dir, false)?;
                if !keep {
                    let _ = std::fs::remove_dir_all(c.root.join(".git"));
                }
                Ok::<_, String>(c)
            })
            .await
            .map_err(|e| failed(format!("internal error: {e}")))?
            .map_err(failed)?;
            let root = checkout.context.clone();
            _checkout = Some(checkout);
            sources_list = vec![".".to_string()];
            root
        } else if !urls.is_empty() {
            if !add {
                return Err(failed(format!(
                    "source can't be a URL for COPY: {}",
                    urls[0]
                )));
            }
            if urls.len() != ci.sources.len() {
                return Err(failed(
                    "cannot mix URLs and local files in one ADD".to_string(),
                ));
            }
            let dir = self
                .sh
                .opts
                .scratch
                .join(format!("url-{}-{}", self.index, self.step));
            std::fs::create_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
            sources_list.clear();
            for (i, url) in urls.iter().enumerate() {
                // The file is named after the URL's last path segment, as Docker names it.
                let name = url
                    .split(['?', '#'])
                    .next()
                    .and_then(|u| u.rsplit('/').next())
                    .filter(|n| !n.is_empty() && !n.contains(':'))
                    .map_or_else(|| format!("download-{i}"), str::to_string);
                let path = self.sh.exec.download(url, &dir, &name).await?;
                if let Some(want) = &ci.checksum {
                    let got = tokio::task::spawn_blocking(move || file_sha256(&path))
                        .await
                        .map_err(|e| failed(format!("internal error: {e}")))?
                        .map_err(|e| failed(e.to_string()))?;
                    if want != &got {
                        return Err(failed(format!("digest mismatch {got}: {want}")));
                    }
                }
                sources_list.push(name);
            }
            dir
        } else if !ci.heredocs.is_empty() {
            let dir = self
                .sh
                .opts
                .scratch
                .join(format!("heredoc-{}-{}", self.index, self.step));
            std::fs::create_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
            sources_list.clear();
            for h in &ci.heredocs {
                std::fs::write(dir.join(&h.name), &h.content).map_err(|e| failed(e.to_string()))?;
                sources_list.push(h.name.clone());
            }
            dir
        } else if let Some(from) = &ci.from {
            let Some(m) = self.mount_from(from).await? else {
                return Err(failed(format!(
                    "file not found in build context or excluded by .dockerignore: stat {}: \
                     file does not exist",
                    ci.sources.first().map_or("", String::as_str)
                )));
            };
            let p = m.path().to_path_buf();
            _mounted = Some(m);
            p
        } else {
            self.sh.opts.context.clone()
        };
        let chmod = match &ci.chmod {
            None => None,
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .map_err(|_| BuildError::new(format!("invalid chmod parameter: {m}")))?,
            ),
        };
        let workdir = match self.cur.config.working_dir.as_str() {
            "" => "/".to_string(),
            w => w.to_string(),
        };
        let dest = sources::absolute_dest(&ci.dest, &workdir);
        // ADD extracts local archives unless `--unpack=false`; a download only with
        // `--unpack=true`.
        let add = add
            && if urls.is_empty() {
                ci.unpack != Some(false)
            } else {
                ci.unpack == Some(true)
            };
        let parents = ci.parents;
        let sel = {
            let root = root.clone();
            let dest = dest.clone();
            let chown = ci.chown.clone();
            let exclude = ci.exclude.clone();
            // Hashing reads every selected byte: off the async threads.
            tokio::task::spawn_blocking(move || {
                let eff = Effective {
                    chmod,
                    chown: chown.as_deref(),
                    exclude: &exclude,
                    add,
                    parents,
                };
                sources::select(&root, &sources_list, &dest, &eff)
            })
            .await
            .map_err(|e| BuildError::new(format!("internal error: {e}")))?
            .map_err(failed)?
        };
        let created_by = format!(
            "/bin/sh -c #(nop) {kw} {}:{} in {dest} ",
            sel.kind, sel.digest
        );
        let key = key_of(&[&self.cur.key, "copy", canonical, &sel.digest]);
        self.why.1 = format!("files:{}", sel.digest);
        let step = CopyStep {
            parent: self.cur.image.clone(),
            items: sel.items,
            mkdirs: Vec::new(),
            chown: ci.chown.clone(),
            chmod,
            exclude: ci.exclude.clone(),
            commit: self.commit(created_by.clone()),
        };
        let kind = if ci.from.is_some() {
            "regular"
        } else {
            "source.local"
        };
        self.step(key, created_by, kind, Action::Copy(Box::new(step)))
            .await
    }
}

/// `sha256:<hex>` of a file.
fn file_sha256(path: &std::path::Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path)?;
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// `80`, `80/udp`, `8000-8002/tcp` → `80/tcp`, ... (ranges expanded, as Docker does).
fn expand_port(p: &str) -> Result<Vec<String>, BuildError> {
    let (ports, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let bad = || BuildError::new(format!("invalid containerPort: {ports}"));
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(BuildError::new(format!("invalid proto: {proto}")));
    }
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let n = ports.parse::<u16>().map_err(|_| bad())?;
            (n, n)
        }
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|n| format!("{n}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ports() {
        assert_eq!(expand_port("80").unwrap(), ["80/tcp"]);
        assert_eq!(expand_port("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(expand_port("1-2").unwrap(), ["1/tcp", "2/tcp"]);
        assert!(expand_port("x").is_err());
        assert_eq!(
            quoted(&["/bin/sh".into(), "-c".into(), "a \"b\"".into()]),
            r#"["/bin/sh" "-c" "a \"b\""]"#
        );
    }

    #[test]
    fn set_env_replaces_in_place() {
        let mut env = vec!["A=1".to_string(), "B=2".to_string()];
        set_env(&mut env, "A", "3");
        set_env(&mut env, "C", "4");
        assert_eq!(env, ["A=3", "B=2", "C=4"]);
    }
}
