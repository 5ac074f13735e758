//! The container's init: creating (and starting) it in a [`helper`] process, and
//! [`OciContainer`], the [`Container`] the shim's supervisor runs over (the OCI runtime, the
//! bundle's files, SIGCHLD and `waitpid`).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use libcontainer::container::Container as Created;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::driver::{
    Driver, SeccompExecutor, Spawned, cleanup_failed, create_err, embedded_seccomp, embedded_stdio,
    error_chain, mount_destinations, pty_io, set_winsize, with_child_signal_state,
};
use super::exec::exec_in_helper;
use super::state::{Container, InitProcess, Limits, Supervisor};
use super::stdio::{ProcIo, nix_io};
use crate::bundle::{Bundle, ExitRecord, ShimConfig, replace_file, write_json_atomic};
use crate::error::RuntimeError;
use crate::seccomp_bpf::CompiledFilter;
use crate::shim::io::bind_long;
use crate::shim::lookup::check_executable;
use crate::shim::{ExecConfig, helper, loopback};

/// Create the container with the embedded libcontainer: the init is held before exec.
/// The spec joins an existing PID namespace (`--pid container:<id>`).
fn joins_pid_namespace(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter().any(|n| {
                n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && n.path().is_some()
            })
        })
}

/// A remapped container's network namespace (see [`crate::spec::NETNS_ANNOTATION`]): joined
/// by this helper, whose children (the runtime's processes) inherit it, before the runtime
/// creates the user namespace that could no longer join it.
fn join_netns_before_userns(spec: &Spec) -> Result<(), String> {
    let Some(path) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(crate::spec::NETNS_ANNOTATION))
    else {
        return Ok(());
    };
    let ns =
        std::fs::File::open(path).map_err(|e| format!("open network namespace {path}: {e}"))?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("join network namespace {path}: {e}"))
}

fn create_embedded(
    bundle: &Bundle,
    cfg: &ShimConfig,
    console_path: &Path,
    seccomp: Option<CompiledFilter>,
) -> Result<(Created, Pid, ProcIo, Option<UnixListener>), RuntimeError> {
    let builder = ContainerBuilder::new(cfg.id.clone(), SyscallType::default())
        .with_root_path(bundle.runtime_root())
        .map_err(|e| create_err(&cfg.id, &e))?
        .with_executor(SeccompExecutor { seccomp });
    let (builder, io, console) = embedded_stdio(builder, cfg.tty, cfg.open_stdin, console_path)?;

    // The container's init is cloned from this process during build(): it must inherit
    // default signal dispositions and an empty signal mask (SIGCHLD is not blocked yet).
    let built = with_child_signal_state(|| {
        builder
            .as_init(bundle.dir())
            .with_systemd(false)
            .with_detach(true)
            .build()
    });
    let container = match built {
        Ok(c) => c,
        Err(e) => {
            let e = create_err(&cfg.id, &e);
            cleanup_failed(bundle, &cfg.id, None);
            return Err(e);
        }
    };
    let Some(pid) = container.pid() else {
        cleanup_failed(bundle, &cfg.id, Some(container));
        return Err(RuntimeError::Create {
            id: cfg.id.clone(),
            message: "runtime reported no pid".into(),
        });
    };
    Ok((container, pid, io, console))
}

/// Create (and with `start_now` start) the container; runs in a [`helper`] process. The init
/// is the helper's child until the helper exits, then the shim's.
fn create_in_helper(
    bundle: &Bundle,
    cfg: &ShimConfig,
    driver: &Driver,
    start_now: bool,
) -> Result<(Spawned, Vec<OwnedFd>), RuntimeError> {
    let spec = Spec::load(bundle.config_path()).map_err(|e| RuntimeError::Create {
        id: cfg.id.clone(),
        message: format!(
            "load {}: {}",
            bundle.config_path().display(),
            error_chain(&e)
        ),
    })?;
    precheck(bundle, &spec)?;
    let console_path = bundle.dir().join("console.sock");
    let (mut container, pid, mut io, mut console) = match driver {
        Driver::Embedded(_) => {
            join_netns_before_userns(&spec).map_err(|e| RuntimeError::Create {
                id: cfg.id.clone(),
                message: e,
            })?;
            let seccomp = embedded_seccomp(bundle, &spec)?;
            // An init that joins another container's PID namespace is visible there from its
            // clone on, like an exec's process: no host procfs handle may reach it.
            if joins_pid_namespace(&spec) {
                helper::defuse_procfs_cache();
            }
            let (c, pid, io, console) = create_embedded(bundle, cfg, &console_path, seccomp)?;
            (Some(c), pid, io, console)
        }
        Driver::OciCli(cli) => match cli.create(cfg, &console_path) {
            Ok((pid, io, console)) => (None, pid, io, console),
            Err(e) => {
                cleanup_failed(bundle, &cfg.id, None);
                return Err(e);
            }
        },
    };
    let fail = |container: Option<Created>, e: RuntimeError| {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        match container {
            Some(c) => cleanup_failed(bundle, &cfg.id, Some(c)),
            None => driver.cleanup_failed(bundle, &cfg.id),
        }
        e
    };
    if let Err(e) = replace_file(&bundle.init_pid_path(), pid.as_raw().to_string().as_bytes()) {
        return Err(fail(container, e));
    }
    if let Err(message) = apply_rootless_resources(&spec) {
        return Err(fail(
            container,
            RuntimeError::Create {
                id: cfg.id.clone(),
                message,
            },
        ));
    }
    if loopback::has_private_network(&spec)
        && let Err(e) = loopback::bring_up(pid)
    {
        return Err(fail(
            container,
            RuntimeError::Create {
                id: cfg.id.clone(),
                message: e.to_string(),
            },
        ));
    }
    if let Some(listener) = console.take()
        && let Err(e) = take_console(&listener, cfg, &console_path, &mut io)
    {
        return Err(fail(container, e));
    }
    if start_now {
        let started = match (&mut container, driver) {
            (Some(c), _) => c.start().map_err(|e| create_err(&cfg.id, &e)),
            (None, Driver::OciCli(cli)) => cli.start(),
            (None, Driver::Embedded(_)) => unreachable!("the embedded runtime made a container"),
        };
        if let Err(e) = started {
            return Err(fail(container, e));
        }
    }
    let (tty, stdin, fds) = io.into_fds();
    let spawned = Spawned {
        pid: pid.as_raw(),
        tty,
        stdin,
        cgroups_path: spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()),
    };
    Ok((spawned, fds))
}

/// A rootless daemon's limits (see [`crate::cgroup_apply`]), written into the container's
/// cgroup that the runtime's create made, before the process starts.
fn apply_rootless_resources(spec: &Spec) -> Result<(), String> {
    let Some(json) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(crate::cgroup_apply::ANNOTATION))
    else {
        return Ok(());
    };
    let res: oci_spec::runtime::LinuxResources =
        serde_json::from_str(json).map_err(|e| format!("the container's resources: {e}"))?;
    let path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .ok_or("the container has resources but no cgroup")?;
    let dir = Path::new(crate::cgroups::ROOT).join(path.strip_prefix("/").unwrap_or(&path));
    crate::cgroup_apply::apply(&dir, &res)
}

/// Receives a tty init's pty master on the console socket (its stdio from now on) and sizes
/// the terminal while the process is still held before exec.
fn take_console(
    listener: &UnixListener,
    cfg: &ShimConfig,
    console_path: &Path,
    io: &mut ProcIo,
) -> Result<(), RuntimeError> {
    let p = pty_io(listener, cfg.open_stdin)
        .map_err(|e| RuntimeError::io("receive pty from", console_path, e))?;
    if let (Some((rows, cols)), Some(pty)) = (cfg.console_size, p.pty.as_ref())
        && rows > 0
        && cols > 0
        && let Err(e) = set_winsize(pty, rows, cols)
    {
        eprintln!("berth-shim: cannot set the initial terminal size: {e}");
    }
    *io = p;
    let _ = std::fs::remove_file(console_path);
    Ok(())
}

/// Refuse a command that is certainly missing from the root filesystem.
fn precheck(bundle: &Bundle, spec: &Spec) -> Result<(), RuntimeError> {
    let Some(process) = spec.process() else {
        return Ok(());
    };
    let args = process.args().as_deref().unwrap_or_default();
    // With `--init`, judge the command the init will run.
    let args = match args {
        [init, dashdash, rest @ ..] if init == crate::init::INIT_PATH && dashdash == "--" => rest,
        _ => args,
    };
    let Some(args0) = args.first() else {
        return Ok(());
    };
    let Some(root) = spec.root() else {
        return Ok(());
    };
    let rootfs = bundle.dir().join(root.path());
    let mounted = mount_destinations(spec);
    let env = process.env().clone().unwrap_or_default();
    check_executable(&rootfs, args0, &env, process.cwd(), &mounted)
}

/// How often the OOM killer fired in the container's memory cgroup (v1 `memory.oom_control`
/// or v2 `memory.events`, whichever this host has).
fn oom_kills(cgroups_path: &Path) -> u64 {
    let rel = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    let candidates = [
        (
            Path::new("/sys/fs/cgroup/memory")
                .join(rel)
                .join("memory.oom_control"),
            "oom_kill ",
        ),
        (
            Path::new("/sys/fs/cgroup").join(rel).join("memory.events"),
            "oom_kill ",
        ),
    ];
    for (path, key) in candidates {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
        }
    }
    0
}

/// The container as the shim runs it: the OCI runtime ([`Driver`]), the bundle's files, and
/// its children's exits from SIGCHLD and `waitpid`.
pub(super) struct OciContainer {
    bundle: Bundle,
    id: String,
    driver: Driver,
    pid: Pid,
    cgroups_path: Option<PathBuf>,
    sigfd: SignalFd,
}

impl OciContainer {
    /// Creates the container in the bundle `dir` (and with `start_now` starts it), and returns
    /// its supervisor, serving `shim.sock`.
    pub(super) fn create(
        dir: &Path,
        start_now: bool,
    ) -> Result<Supervisor<OciContainer>, RuntimeError> {
        let bundle = Bundle::new(dir);
        let cfg: ShimConfig = bundle.read_shim_config()?;
        replace_file(
            &bundle.shim_pid_path(),
            std::process::id().to_string().as_bytes(),
        )?;
        let driver = Driver::new(&bundle, &cfg);
        let (spawned, fds) = helper::run("create container", || {
            create_in_helper(&bundle, &cfg, &driver, start_now)
        })?;
        let pid = Pid::from_raw(spawned.pid);
        let fail = |e: RuntimeError| {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            let _ = helper::run("clean up", || {
                driver.cleanup_failed(&bundle, &cfg.id);
                Ok(((), Vec::new()))
            });
            e
        };
        let io = match ProcIo::from_fds(spawned.tty, spawned.stdin, fds) {
            Ok(io) => io,
            Err(e) => return Err(fail(RuntimeError::io("receive stdio of", dir, e))),
        };
        let log = match cfg.log.open(&bundle.log_path(&cfg)) {
            Ok(l) => l,
            Err(e) => return Err(fail(RuntimeError::io("open", bundle.log_path(&cfg), e))),
        };
        let sock = bundle.socket_path();
        let _ = std::fs::remove_file(&sock);
        let listener = match bind_long(&sock) {
            Ok(l) => l,
            Err(e) => return Err(fail(RuntimeError::io("bind", &sock, e))),
        };
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        let sigfd = mask.thread_block().and_then(|_| {
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        });
        let sigfd = match sigfd {
            Ok(s) => s,
            Err(e) => return Err(fail(RuntimeError::io("create", "signalfd", nix_io(e)))),
        };
        let init = InitProcess {
            id: cfg.id.clone(),
            pid,
            io,
            started: start_now,
            stdin_once: cfg.stdin_once,
        };
        let container = OciContainer {
            bundle,
            id: cfg.id,
            driver,
            pid,
            cgroups_path: spawned.cgroups_path,
            sigfd,
        };
        Ok(Supervisor::new(
            container,
            init,
            log,
            Some(listener),
            Limits::SHIM,
        ))
    }

    /// After the supervisor failed (a panic): never leave a container running without it.
    pub(super) fn abandon(&self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
        self.driver.delete_in_helper(&self.id);
    }
}

impl Container for OciContainer {
    fn child_events(&self) -> BorrowedFd<'_> {
        self.sigfd.as_fd()
    }

    fn reap(&mut self) -> Vec<(Pid, WaitStatus)> {
        while let Ok(Some(_)) = self.sigfd.read_signal() {}
        let mut exited = Vec::new();
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return exited,
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        exited.push((pid, status));
                    }
                }
            }
        }
    }

    fn start(&mut self) -> Result<(), RuntimeError> {
        let (driver, id) = (&self.driver, &self.id);
        match driver {
            // A few file reads and one connect to the held init: done here, sparing a fork on
            // the way to the command (the pages it touches are given back with the rest once
            // the shim settles).
            Driver::Embedded(_) => driver.start(id),
            Driver::OciCli(_) => helper::run("start container", || {
                driver.start(id).map(|()| ((), Vec::new()))
            })
            .map(|_| ()),
        }
    }

    fn spawn_exec(&mut self, cfg: &ExecConfig, n: u64) -> Result<(Pid, ProcIo), RuntimeError> {
        let (bundle, id, driver) = (&self.bundle, &self.id, &self.driver);
        let (spawned, fds) = helper::run(&format!("exec {}", cfg.exec_id), || {
            exec_in_helper(bundle, id, driver, cfg, n)
        })?;
        let pid = Pid::from_raw(spawned.pid);
        match ProcIo::from_fds(spawned.tty, spawned.stdin, fds) {
            Ok(io) => Ok((pid, io)),
            Err(e) => {
                let _ = kill(pid, Signal::SIGKILL);
                Err(RuntimeError::io("receive stdio of exec", bundle.dir(), e))
            }
        }
    }

    fn oom_killed(&self) -> bool {
        self.cgroups_path.as_deref().map(oom_kills).unwrap_or(0) > 0
    }

    fn record_exit(&mut self, record: &ExitRecord) {
        if let Err(e) = write_json_atomic(&self.bundle.exit_path(), record) {
            eprintln!("berth-shim: {e}");
        }
        let _ = std::fs::remove_file(self.bundle.socket_path());
    }

    fn clean_up(&mut self) {
        self.driver.remove(&self.id, self.cgroups_path.as_deref());
        let _ = std::fs::remove_dir(self.bundle.runtime_root());
        // Last: a new start of this container waits while the file is there, so that it does
        // not create the cgroups and runtime state this shim is still removing
        // ([`crate::shim::Shim::spawn`]).
        let _ = std::fs::remove_file(self.bundle.shim_pid_path());
    }
}
