//! Execs: extra processes in the running container. Their table in the shim ([`ExecTable`]:
//! state, exit, waiters, forgetting finished ones) and their start, which runs in a
//! [`helper`] process (the OCI process, runc's pre-checks, the runtime's `exec`).

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Instant;

use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::driver::{Driver, Spawned, embedded_seccomp, error_chain, mount_destinations};
use super::state::Limits;
use super::stdio::ProcIo;
use crate::bundle::{Bundle, write_json_atomic};
use crate::error::RuntimeError;
use crate::seccomp_bpf::keep_sys_admin_until_exec;
use crate::shim::lookup::{check_cwd, check_executable};
use crate::shim::nsexec;
use crate::shim::{ExecConfig, ExecState};

/// An extra process started with `exec_start`.
pub(super) struct Exec {
    /// Its serial number in this shim: what stream clients name it by.
    pub(super) key: u64,
    /// The daemon's id.
    pub(super) id: String,
    pub(super) pid: Pid,
    pub(super) io: ProcIo,
    pub(super) exit: Option<(i32, Instant)>,
    /// Exited and drained: clients got EOF, waiters their answer.
    pub(super) done: bool,
    pub(super) waiters: Vec<UnixStream>,
}

impl Exec {
    pub(super) fn new(key: u64, id: String, pid: Pid, io: ProcIo) -> Exec {
        Exec {
            key,
            id,
            pid,
            io,
            exit: None,
            done: false,
            waiters: Vec::new(),
        }
    }

    pub(super) fn state(&self) -> ExecState {
        ExecState {
            exec_id: self.id.clone(),
            pid: self.pid.as_raw(),
            running: !self.done,
            exit_code: if self.done {
                self.exit.map(|(c, _)| c)
            } else {
                None
            },
        }
    }
}

/// The shim's execs, oldest first.
#[derive(Default)]
pub(super) struct ExecTable {
    execs: Vec<Exec>,
    /// The last serial number given out.
    seq: u64,
}

impl ExecTable {
    /// A serial number for the next exec (also names its files in the runtime's state).
    pub(super) fn next_key(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub(super) fn push(&mut self, exec: Exec) {
        self.execs.push(exec);
    }

    pub(super) fn get(&self, key: u64) -> Option<&Exec> {
        self.execs.iter().find(|e| e.key == key)
    }

    pub(super) fn get_mut(&mut self, key: u64) -> Option<&mut Exec> {
        self.execs.iter_mut().find(|e| e.key == key)
    }

    /// The exec the daemon calls `exec_id`.
    pub(super) fn find_mut(&mut self, exec_id: &str) -> Option<&mut Exec> {
        self.execs.iter_mut().find(|e| e.id == exec_id)
    }

    pub(super) fn contains(&self, exec_id: &str) -> bool {
        self.execs.iter().any(|e| e.id == exec_id)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Exec> {
        self.execs.iter()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Exec> {
        self.execs.iter_mut()
    }

    pub(super) fn keys(&self) -> Vec<u64> {
        self.execs.iter().map(|e| e.key).collect()
    }

    /// No exec runs or is still being drained.
    pub(super) fn all_done(&self) -> bool {
        self.execs.iter().all(|e| e.done)
    }

    /// An exec exited and its output is still being drained.
    pub(super) fn any_draining(&self) -> bool {
        self.execs.iter().any(|e| e.exit.is_some() && !e.done)
    }

    /// Records the exit of the exec whose process is `pid`; false when it is none of them.
    pub(super) fn exited(&mut self, pid: Pid, code: i32) -> bool {
        match self
            .execs
            .iter_mut()
            .find(|e| e.pid == pid && e.exit.is_none())
        {
            Some(e) => {
                e.exit = Some((code, Instant::now()));
                true
            }
            None => false,
        }
    }

    /// Drops finished execs that are old, or beyond the newest `finished_execs_kept`, unless
    /// someone still streams from one (`streamed`) or waits for it.
    pub(super) fn forget_old(&mut self, limits: &Limits, streamed: impl Fn(u64) -> bool) {
        let finished = self.execs.iter().filter(|e| e.done).count();
        let mut excess = finished.saturating_sub(limits.finished_execs_kept);
        self.execs.retain(|e| {
            let old = e
                .exit
                .is_some_and(|(_, at)| at.elapsed() >= limits.forget_exec_after);
            let forget = e.done && (old || excess > 0) && !streamed(e.key) && e.waiters.is_empty();
            if forget {
                excess = excess.saturating_sub(1);
            }
            !forget
        });
    }
}

/// The exec's OCI process: the container's, with the exec's command, environment,
/// directory, user, terminal and capabilities.
fn exec_process(
    base: Option<&oci_spec::runtime::Process>,
    cfg: &ExecConfig,
) -> Result<oci_spec::runtime::Process, RuntimeError> {
    let mut p = base.cloned().unwrap_or_default();
    if cfg.args.is_empty() {
        return Err(RuntimeError::InvalidConfig("exec: no command given".into()));
    }
    p.set_args(Some(cfg.args.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &cfg.env {
        let key = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if !cfg.cwd.is_empty() {
        p.set_cwd(PathBuf::from(&cfg.cwd));
    }
    p.set_terminal(Some(cfg.tty));
    p.set_console_size(None);
    if let Some(u) = &cfg.user {
        let mut user = oci_spec::runtime::User::default();
        user.set_uid(u.uid);
        user.set_gid(u.gid);
        user.set_additional_gids(
            (!u.additional_gids.is_empty()).then(|| u.additional_gids.clone()),
        );
        p.set_user(user);
    }
    if cfg.privileged || !cfg.cap_add.is_empty() {
        let mut set = if cfg.privileged {
            let all = crate::spec::capability_set(true, &[], &[])?;
            let all = crate::spec::within_bounding(all, crate::spec::own_bounding_set());
            crate::spec::to_oci_caps(&all)?
        } else {
            p.capabilities()
                .as_ref()
                .and_then(|c| c.bounding().clone())
                .unwrap_or_default()
        };
        set.extend(crate::spec::to_oci_caps(&cfg.cap_add)?);
        let mut caps = oci_spec::runtime::LinuxCapabilities::default();
        caps.set_bounding(Some(set.clone()));
        caps.set_effective(Some(set.clone()));
        caps.set_permitted(Some(set));
        caps.set_inheritable(None);
        caps.set_ambient(None);
        p.set_capabilities(Some(caps));
    }
    // libcontainer treats a present `false` like `true`.
    if p.no_new_privileges() != Some(true) {
        p.set_no_new_privileges(None);
    }
    Ok(p)
}

/// Start an exec's process; runs in a [`helper`] process, which the exec's process outlives
/// (it is then the shim's child).
pub(super) fn exec_in_helper(
    bundle: &Bundle,
    id: &str,
    driver: &Driver,
    cfg: &ExecConfig,
    n: u64,
) -> Result<(Spawned, Vec<OwnedFd>), RuntimeError> {
    let spec = Spec::load(bundle.config_path()).map_err(|e| RuntimeError::Create {
        id: id.to_string(),
        message: format!(
            "load {}: {}",
            bundle.config_path().display(),
            error_chain(&e)
        ),
    })?;
    let mut process = exec_process(spec.process().as_ref(), cfg)?;
    let seccomp = match driver {
        Driver::Embedded(_) => embedded_seccomp(bundle, &spec)?,
        Driver::OciCli(_) => None,
    };
    if seccomp.is_some() {
        keep_sys_admin_until_exec(&mut process);
    }
    let rootfs = spec
        .root()
        .as_ref()
        .map(|r| bundle.dir().join(r.path()))
        .unwrap_or_default();
    // runc's checks, before any process exists, in its words: the directory first, then
    // the command (looked up relative to it).
    check_cwd(&rootfs, process.cwd(), &mount_destinations(&spec))?;
    check_executable(
        &rootfs,
        &cfg.args[0],
        process.env().as_deref().unwrap_or_default(),
        process.cwd(),
        &mount_destinations(&spec),
    )?;
    let process_path = driver.state_dir(bundle).join(format!("exec-{n}.json"));
    write_json_atomic(&process_path, &process)?;
    let console_path = bundle.dir().join(format!("exec-{n}.sock"));
    let result = match driver {
        Driver::Embedded(_) => nsexec::spawn(bundle, &spec, &process, cfg, &console_path, seccomp),
        Driver::OciCli(cli) => cli.exec(
            &cfg.exec_id,
            cfg.tty,
            cfg.stdin,
            &process_path,
            &console_path,
        ),
    };
    let _ = std::fs::remove_file(&process_path);
    let _ = std::fs::remove_file(&console_path);
    let (pid, io) = result?;
    let (tty, stdin, fds) = io.into_fds();
    let spawned = Spawned {
        pid: pid.as_raw(),
        tty,
        stdin,
        cgroups_path: None,
    };
    Ok((spawned, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn exec(t: &mut ExecTable, finished: bool) -> u64 {
        let key = t.next_key();
        let pid = Pid::from_raw(4_200_100 + key as i32);
        let mut e = Exec::new(key, format!("e{key}"), pid, ProcIo::default());
        if finished {
            e.exit = Some((0, Instant::now()));
            e.done = true;
        }
        t.push(e);
        key
    }

    fn kept(n: usize) -> Limits {
        Limits {
            finished_execs_kept: n,
            ..Limits::SHIM
        }
    }

    #[test]
    fn finished_execs_beyond_the_bound_are_forgotten_oldest_first() {
        let mut t = ExecTable::default();
        for _ in 0..5 {
            exec(&mut t, true);
        }
        let running = exec(&mut t, false);
        t.forget_old(&kept(2), |_| false);
        assert_eq!(t.keys(), [4, 5, running]);
        assert!(t.get(1).is_none() && t.get(4).is_some());
        t.forget_old(&kept(2), |_| false);
        assert_eq!(t.keys(), [4, 5, running], "within the bound nothing goes");
    }

    #[test]
    fn streamed_or_awaited_execs_are_kept() {
        let mut t = ExecTable::default();
        let streamed = exec(&mut t, true);
        let awaited = exec(&mut t, true);
        exec(&mut t, true);
        let (_ours, theirs) = UnixStream::pair().unwrap();
        t.get_mut(awaited).unwrap().waiters.push(theirs);
        t.forget_old(&kept(0), |key| key == streamed);
        assert_eq!(t.keys(), [streamed, awaited]);
    }

    #[test]
    fn finished_execs_are_forgotten_once_old() {
        let mut t = ExecTable::default();
        exec(&mut t, true);
        let running = exec(&mut t, false);
        let limits = Limits {
            forget_exec_after: Duration::ZERO,
            ..Limits::SHIM
        };
        t.forget_old(&limits, |_| false);
        assert_eq!(t.keys(), [running]);
    }

    #[test]
    fn an_exit_is_recorded_once_for_the_exec_with_that_pid() {
        let mut t = ExecTable::default();
        let key = exec(&mut t, false);
        let pid = t.get(key).unwrap().pid;
        assert!(!t.exited(Pid::from_raw(1), 0));
        assert!(t.exited(pid, 3));
        assert!(!t.exited(pid, 4), "a recorded exit stays");
        assert_eq!(t.get(key).unwrap().exit.map(|(c, _)| c), Some(3));
        assert!(t.any_draining() && !t.all_done());
    }
}
