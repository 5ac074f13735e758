//! The engine against a fake executor: images are numbered configs in memory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::cache::MemoryCache;
use crate::executor::{Commit, Committed, CopyStep, ExecError, MountedRoot, Output, RunStep};
use crate::instructions::*;

#[derive(Default)]
struct Fake {
    images: Mutex<HashMap<String, (Option<String>, Commit)>>,
    runs: Mutex<Vec<Vec<String>>>,
    copies: Mutex<Vec<CopyStep>>,
    /// When set, every RUN waits here: with n parties, n RUNs must be in flight at once.
    barrier: Option<tokio::sync::Barrier>,
}

impl Fake {
    fn add(&self, parent: Option<String>, commit: Commit) -> Committed {
        let mut images = self.images.lock().unwrap();
        let id = format!("sha256:{:064x}", images.len() + 1);
        images.insert(id.clone(), (parent, commit));
        Committed { id, layer_size: 1 }
    }
    fn config(&self, id: &str) -> ContainerConfig {
        self.images.lock().unwrap()[id].1.config.clone()
    }
}

/// A "mounted" image: a temporary directory, removed when the engine lets go of it.
struct Root(tempfile::TempDir);
impl MountedRoot for Root {
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl StepExecutor for Fake {
    async fn resolve_image(
        &self,
        name: &str,
        _pull: bool,
        _out: Output,
    ) -> Result<ImageInfo, ExecError> {
        if name != "busybox" {
            return Err(ExecError::new(format!(
                "pull access denied for {name}, repository does not exist or may require 'docker login'"
            )));
        }
        Ok(ImageInfo {
            id: format!("sha256:{}", "b".repeat(64)),
            config: ContainerConfig {
                cmd: Some(vec!["sh".into()]),
                env: Some(vec!["PATH=/bin".into()]),
                ..Default::default()
            },
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        })
    }
    async fn image_exists(&self, id: &str) -> bool {
        self.images.lock().unwrap().contains_key(id)
    }
    async fn run(&self, step: RunStep, out: Output) -> Result<Committed, ExecError> {
        let argv = step.run_config.cmd.clone().unwrap();
        out(" ---> Running in 0123456789ab\n");
        if let Some(b) = &self.barrier {
            b.wait().await;
        }
        self.runs
            .lock()
            .unwrap()
            .push(step.run_config.env.clone().unwrap_or_default());
        if argv.last().is_some_and(|c| c == "exit 7") {
            return Err(ExecError::new(format!(
                "The command '{}' returned a non-zero code: 7",
                argv.join(" ")
            )));
        }
        Ok(self.add(step.parent, step.commit))
    }
    async fn copy(&self, step: CopyStep) -> Result<Committed, ExecError> {
        self.copies.lock().unwrap().push(step.clone());
        Ok(self.add(step.parent, step.commit))
    }
    async fn commit_empty(
        &self,
        parent: Option<String>,
        commit: Commit,
    ) -> Result<Committed, ExecError> {
        let mut c = self.add(parent, commit);
        c.layer_size = 0;
        Ok(c)
    }
    async fn download(
        &self,
        url: &str,
        _dir: &Path,
        _name: &str,
    ) -> Result<std::path::PathBuf, ExecError> {
        Err(ExecError::new(format!("no network in tests: {url}")))
    }
    async fn history(&self, _id: &str) -> Result<Vec<crate::executor::HistoryItem>, ExecError> {
        Ok(Vec::new())
    }
    async fn derive(
        &self,
        _source: &str,
        _entries: usize,
        commit: Commit,
    ) -> Result<Committed, ExecError> {
        Ok(self.add(None, commit))
    }
    async fn mount(&self, _image: &str) -> Result<Box<dyn MountedRoot>, ExecError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("artifact"), b"x").unwrap();
        Ok(Box::new(Root(dir)))
    }
}

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);
impl BuildOutput for Lines {
    fn stream(&self, text: &str) {
        self.0.lock().unwrap().push(text.to_string());
    }
    fn aux_id(&self, id: &str) {
        self.0.lock().unwrap().push(format!("aux {id}"));
    }
}

fn loc<T>(original: &str, v: T) -> Located<T> {
    Located {
        line: 1,
        end_line: 1,
        original: original.into(),
        value: v,
    }
}

fn stage(name: Option<&str>, from: &str, insts: Vec<(&str, Instruction)>) -> Stage {
    Stage {
        name: name.map(str::to_string),
        from: loc(
            &format!("FROM {from}"),
            FromInstruction {
                image: from.into(),
                platform: None,
                name: name.map(str::to_string),
            },
        ),
        instructions: insts.into_iter().map(|(o, i)| loc(o, i)).collect(),
    }
}

fn df(stages: Vec<Stage>) -> Dockerfile {
    Dockerfile {
        directives: Directives::default(),
        meta_args: vec![],
        stages,
    }
}

fn copy(src: &str, dest: &str, from: Option<&str>) -> Instruction {
    Instruction::Copy(CopyInstruction {
        sources: vec![src.into()],
        dest: dest.into(),
        from: from.map(str::to_string),
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        exclude: vec![],
        checksum: None,
        keep_git_dir: false,
        unpack: None,
        heredocs: vec![],
    })
}

fn run(cmd: &str) -> Instruction {
    Instruction::Run(RunInstruction {
        command: CommandLine::Shell(cmd.into()),
        mounts: vec![],
        network: None,
        security: None,
        heredocs: vec![],
    })
}

fn opts(ctx: &Path) -> BuildOptions {
    BuildOptions {
        context: ctx.to_path_buf(),
        scratch: ctx.join(".scratch"),
        target: None,
        build_args: BTreeMap::new(),
        labels: BTreeMap::new(),
        no_cache: false,
        pull: false,
        network_mode: None,
        platform: Platform::host(),
        cache_from: Vec::new(),
    }
}

async fn go(
    d: &Dockerfile,
    o: &BuildOptions,
    fake: &Fake,
    cache: &MemoryCache,
) -> (Result<String, BuildError>, Vec<String>) {
    let lines = Arc::new(Lines::default());
    let r = build(d, o, fake, cache, lines.clone()).await;
    let out = lines.0.lock().unwrap().clone();
    (r, out)
}

fn app() -> Dockerfile {
    df(vec![stage(
        None,
        "busybox",
        vec![
            (
                "ENV A=1",
                Instruction::Env(vec![KeyValue {
                    key: "A".into(),
                    value: "1".into(),
                }]),
            ),
            ("COPY a.txt /a", copy("a.txt", "/a", None)),
            ("RUN echo hi", run("echo hi")),
            ("COPY b.txt /b", copy("b.txt", "/b", None)),
            (
                "CMD [\"x\"]",
                Instruction::Cmd(CommandLine::Exec(vec!["x".into()])),
            ),
        ],
    )])
}

#[tokio::test]
async fn rebuild_is_all_cache_and_same_id_and_copy_change_reuses_prefix() {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("a.txt"), "a").unwrap();
    std::fs::write(ctx.path().join("b.txt"), "b").unwrap();
    let (fake, cache) = (Fake::default(), MemoryCache::new());
    let o = opts(ctx.path());
    let (first, out) = go(&app(), &o, &fake, &cache).await;
    let first = first.unwrap();
    assert_eq!(out[0], "Step 1/6 : FROM busybox\n");
    assert_eq!(out[1], " ---> bbbbbbbbbbbb\n");
    assert!(out.iter().all(|l| !l.contains("Using cache")));
    assert_eq!(out.last().unwrap(), &format!("aux {first}"));
    let cfg = fake.config(&first);
    assert_eq!(cfg.cmd, Some(vec!["x".to_string()]));
    assert_eq!(
        cfg.env,
        Some(vec!["PATH=/bin".to_string(), "A=1".to_string()])
    );

    let (again, out) = go(&app(), &o, &fake, &cache).await;
    assert_eq!(again.unwrap(), first);
    assert_eq!(out.iter().filter(|l| l.contains("Using cache")).count(), 5);

    // Same content, new mtime: still cached.
    let f = std::fs::File::options()
        .write(true)
        .open(ctx.path().join("b.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    assert_eq!(go(&app(), &o, &fake, &cache).await.0.unwrap(), first);

    std::fs::write(ctx.path().join("b.txt"), "B").unwrap();
    let runs = fake.runs.lock().unwrap().len();
    let (changed, out) = go(&app(), &o, &fake, &cache).await;
    assert_ne!(changed.unwrap(), first);
    assert!(
        out.iter()
            .any(|l| l == " ---> Cache miss: the files it copies changed\n"),
        "{out:?}"
    );
    assert_eq!(out.iter().filter(|l| l.contains("Using cache")).count(), 3);
    assert_eq!(
        fake.runs.lock().unwrap().len(),
        runs,
        "RUN before the change is cached"
    );
}

#[tokio::test]
async fn multi_stage_target_and_copy_from() {
    let ctx = tempfile::tempdir().unwrap();
    let d = df(vec![
        stage(Some("one"), "busybox", vec![("RUN echo 1", run("echo 1"))]),
        stage(
            Some("unused"),
            "busybox",
            vec![("RUN echo u", run("echo u"))],
        ),
        stage(
            Some("final"),
            "busybox",
            vec![("COPY --from=one / /x/", copy(".", "/x/", Some("one")))],
        ),
    ]);
    let (fake, cache) = (Fake::default(), MemoryCache::new());
    let (r, out) = go(&d, &opts(ctx.path()), &fake, &cache).await;
    r.unwrap();
    assert_eq!(
        fake.runs.lock().unwrap().len(),
        1,
        "the unused stage is skipped"
    );
    let steps: Vec<&String> = out.iter().filter(|l| l.starts_with("Step")).collect();
    assert_eq!(steps[0], "Step 1/4 : FROM busybox\n");
    assert_eq!(steps[3], "Step 4/4 : COPY --from=one / /x/\n");
    let mut o = opts(ctx.path());
    o.target = Some("one".into());
    let (r, _) = go(&d, &o, &fake, &cache).await;
    assert!(r.is_ok());
    o.target = Some("zzz".into());
    let (r, _) = go(&d, &o, &fake, &cache).await;
    assert_eq!(
        r.unwrap_err().message,
        "failed to reach build target zzz in Dockerfile"
    );
}

#[tokio::test]
async fn errors_are_dockers_words() {
    let ctx = tempfile::tempdir().unwrap();
    let (fake, cache) = (Fake::default(), MemoryCache::new());
    let o = opts(ctx.path());
    let d = df(vec![stage(
        None,
        "busybox",
        vec![("RUN exit 7", run("exit 7"))],
    )]);
    let (r, _) = go(&d, &o, &fake, &cache).await;
    assert_eq!(
        r.unwrap_err().message,
        "The command '/bin/sh -c exit 7' returned a non-zero code: 7"
    );
    let d = df(vec![stage(
        None,
        "busybox",
        vec![("COPY ../x /", copy("../x", "/", None))],
    )]);
    let (r, _) = go(&d, &o, &fake, &cache).await;
    assert_eq!(
        r.unwrap_err().message,
        "COPY failed: forbidden path outside the build context: ../x ()"
    );
    let d = df(vec![stage(None, "nosuch", vec![])]);
    assert!(
        go(&d, &o, &fake, &cache)
            .await
            .0
            .unwrap_err()
            .message
            .contains("pull access denied")
    );
}

#[tokio::test]
async fn args_reach_run_and_entrypoint_resets_cmd() {
    let ctx = tempfile::tempdir().unwrap();
    let (fake, cache) = (Fake::default(), MemoryCache::new());
    let mut o = opts(ctx.path());
    o.build_args.insert("V".into(), Some("2".into()));
    o.build_args
        .insert("HTTP_PROXY".into(), Some("http://p".into()));
    let d = df(vec![stage(
        None,
        "busybox",
        vec![
            (
                "ARG V=1",
                Instruction::Arg(ArgInstruction {
                    args: vec![ArgDecl {
                        name: "V".into(),
                        default: Some("1".into()),
                    }],
                }),
            ),
            ("RUN env", run("env")),
            (
                "ENTRYPOINT [\"e\"]",
                Instruction::Entrypoint(CommandLine::Exec(vec!["e".into()])),
            ),
        ],
    )]);
    let id = go(&d, &o, &fake, &cache).await.0.unwrap();
    let env = fake.runs.lock().unwrap()[0].clone();
    assert!(env.contains(&"V=2".to_string()), "{env:?}");
    assert!(env.contains(&"HTTP_PROXY=http://p".to_string()), "{env:?}");
    let cfg = fake.config(&id);
    assert_eq!(cfg.entrypoint, Some(vec!["e".to_string()]));
    assert_eq!(cfg.cmd, None);
    o.build_args.insert("NOPE".into(), Some("1".into()));
    let (_, out) = go(&d, &o, &fake, &cache).await;
    assert!(
        out.iter()
            .any(|l| l == "[Warning] One or more build-args [NOPE] were not consumed\n"),
        "{out:?}"
    );
    o.build_args.remove("NOPE");
    // A different build arg value misses the RUN's cache, and says so.
    o.build_args.insert("V".into(), Some("3".into()));
    let (_, out) = go(&d, &o, &fake, &cache).await;
    assert_eq!(out.iter().filter(|l| l.contains("Using cache")).count(), 0);
    assert!(
        out.iter().any(|l| l.starts_with(" ---> Cache miss: ")),
        "{out:?}"
    );
}

#[tokio::test]
async fn independent_stages_run_at_once_and_print_in_order() {
    let ctx = tempfile::tempdir().unwrap();
    let d = df(vec![
        stage(Some("a"), "busybox", vec![("RUN echo a", run("echo a"))]),
        stage(Some("b"), "busybox", vec![("RUN echo b", run("echo b"))]),
        stage(Some("c"), "busybox", vec![("RUN echo c", run("echo c"))]),
        stage(
            None,
            "busybox",
            vec![
                ("COPY --from=a / /a/", copy(".", "/a/", Some("a"))),
                ("COPY --from=b / /b/", copy(".", "/b/", Some("b"))),
                ("COPY --from=c / /c/", copy(".", "/c/", Some("c"))),
            ],
        ),
    ]);
    // Each RUN waits until all three are running: sequential stages would never get there.
    let fake = Fake {
        barrier: Some(tokio::sync::Barrier::new(3)),
        ..Default::default()
    };
    let cache = MemoryCache::new();
    let (r, out) = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        go(&d, &opts(ctx.path()), &fake, &cache),
    )
    .await
    .expect("the three stages did not run concurrently");
    r.unwrap();
    let steps: Vec<&str> = out
        .iter()
        .filter(|l| l.starts_with("Step"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        steps,
        [
            "Step 1/10 : FROM busybox\n",
            "Step 2/10 : RUN echo a\n",
            "Step 3/10 : FROM busybox\n",
            "Step 4/10 : RUN echo b\n",
            "Step 5/10 : FROM busybox\n",
            "Step 6/10 : RUN echo c\n",
            "Step 7/10 : FROM busybox\n",
            "Step 8/10 : COPY --from=a / /a/\n",
            "Step 9/10 : COPY --from=b / /b/\n",
            "Step 10/10 : COPY --from=c / /c/\n",
        ]
    );
    // Each stage's lines stay together: stage b's come after all of stage a's.
    let pos = |needle: &str| out.iter().position(|l| l == needle).unwrap();
    assert!(pos("Step 3/10 : FROM busybox\n") > pos("Step 2/10 : RUN echo a\n") + 1);
}
