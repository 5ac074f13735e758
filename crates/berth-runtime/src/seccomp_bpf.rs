//! Seccomp filters compiled once by the daemon, loaded by each container process as raw BPF.
//!
//! Turning Docker's default profile into BPF with libseccomp costs 8–11 ms of CPU. libcontainer
//! does that inside every container's init, where it was a fifth of `run --rm`'s wall time. So
//! the daemon compiles each distinct filter once ([`compile`], cached by the filter's content),
//! writes the program into the bundle (`seccomp.bpf`, [`CompiledFilter::to_bytes`]), and the
//! shim hands it to the container's process, which installs it with one `seccomp(2)` call right
//! before `execve` ([`CompiledFilter::load`]). The BPF is exactly what libseccomp would have
//! loaded: the same library, profile and kernel produce it.
//!
//! Loading a filter needs `no_new_privs` or `CAP_SYS_ADMIN`. Docker's containers have neither
//! at exec time (runc loads the filter before dropping capabilities). The process therefore
//! keeps `CAP_SYS_ADMIN` in its effective and permitted sets until it execs, but never in its
//! bounding, inheritable or ambient sets ([`keep_sys_admin_until_exec`]): `execve` recomputes
//! the permitted set from those, so the command never holds it.

use std::collections::VecDeque;
use std::io::{Read, Seek};
use std::sync::{Arc, Mutex};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, Process,
};

use crate::error::{Result, RuntimeError};

/// `EPERM`, the errno of `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` when the profile names none.
const EPERM: u32 = 1;
/// Distinct filters kept compiled (one per capability set and profile in use, in practice few).
const CACHE_SIZE: usize = 16;

/// A BPF program for `seccomp(SECCOMP_SET_MODE_FILTER)` and the flags to load it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledFilter {
    /// `SECCOMP_FILTER_FLAG_*` bits from the profile's `flags`.
    pub flags: u32,
    /// The program, `struct sock_filter` entries (8 bytes each) in host byte order.
    pub program: Vec<u8>,
}

static CACHE: Mutex<VecDeque<(String, Arc<CompiledFilter>)>> = Mutex::new(VecDeque::new());

/// Compile `seccomp` to BPF, or return the program compiled earlier for an identical filter.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Arc<CompiledFilter>> {
    let key = serde_json::to_string(seccomp)
        .map_err(|e| RuntimeError::InvalidConfig(format!("seccomp profile: {e}")))?;
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, f)) = cache.iter().find(|(k, _)| *k == key) {
        return Ok(f.clone());
    }
    let compiled = Arc::new(compile_uncached(seccomp)?);
    if cache.len() == CACHE_SIZE {
        cache.pop_front();
    }
    cache.push_back((key, compiled.clone()));
    Ok(compiled)
}

fn invalid(what: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::InvalidConfig(format!("seccomp profile: {what}"))
}

fn action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction> {
    let errno = errno.unwrap_or(EPERM);
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(i32::try_from(errno).map_err(|_| invalid("errnoRet out of range"))?)
        }
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(u16::try_from(errno).map_err(|_| invalid("errnoRet out of range"))?)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        // A notify filter needs a listener process to answer it; Docker has none either.
        LinuxSeccompAction::ScmpActNotify => {
            return Err(invalid("SCMP_ACT_NOTIFY is not supported"));
        }
    })
}

fn compare_op(op: LinuxSeccompOperator, value: u64) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // For a masked comparison the spec's `value` is the mask and `valueTwo` the datum.
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value),
    }
}

fn compile_uncached(seccomp: &LinuxSeccomp) -> Result<CompiledFilter> {
    let default = action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let mut ctx =
        ScmpFilterContext::new(default).map_err(|e| invalid(format!("new filter: {e}")))?;
    for arch in seccomp.architectures().iter().flatten() {
        let arch: ScmpArch = arch
            .to_string()
            .parse()
            .map_err(|e| invalid(format!("architecture {arch}: {e}")))?;
        // The native architecture is in every new filter already.
        if !ctx.is_arch_present(arch).unwrap_or(false) {
            ctx.add_arch(arch)
                .map_err(|e| invalid(format!("add architecture {arch:?}: {e}")))?;
        }
    }
    let mut flags = 0u32;
    for flag in seccomp.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 32,
        };
    }
    for rule in seccomp.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        // libseccomp refuses rules whose action is the default one; they change nothing.
        if act == default {
            continue;
        }
        let args: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| {
                let datum = match a.op() {
                    LinuxSeccompOperator::ScmpCmpMaskedEq => a.value_two().unwrap_or(0),
                    _ => a.value(),
                };
                ScmpArgCompare::new(a.index() as u32, compare_op(a.op(), a.value()), datum)
            })
            .collect();
        // Conditions on distinct arguments must all hold (one rule). Several conditions on the
        // same argument can never all hold, so each is a rule of its own (any of them matches),
        // which is how Docker's profiles use them (e.g. `personality` values).
        let mut indices: Vec<u32> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| a.index() as u32)
            .collect();
        indices.sort_unstable();
        let repeated = indices.windows(2).any(|w| w[0] == w[1]);
        for name in rule.names() {
            // Profiles list syscalls of newer kernels and other architectures: skip unknown names.
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let result = if args.is_empty() {
                ctx.add_rule(act, syscall).map(|_| ())
            } else if repeated {
                args.iter()
                    .try_for_each(|a| ctx.add_rule_conditional(act, syscall, &[*a]).map(|_| ()))
            } else {
                ctx.add_rule_conditional(act, syscall, &args).map(|_| ())
            };
            result.map_err(|e| invalid(format!("rule for {name}: {e}")))?;
        }
    }
    let mut out = tempfile_in_memory()?;
    ctx.export_bpf(&out)
        .map_err(|e| invalid(format!("export BPF: {e}")))?;
    let mut program = Vec::new();
    out.rewind()
        .and_then(|_| out.read_to_end(&mut program))
        .map_err(|e| RuntimeError::io("read back", "seccomp BPF", e))?;
    if program.is_empty() || program.len() % 8 != 0 {
        return Err(invalid(format!(
            "libseccomp exported {} bytes of BPF",
            program.len()
        )));
    }
    Ok(CompiledFilter { flags, program })
}

/// An anonymous in-memory file for libseccomp to export into (it writes to a file descriptor).
fn tempfile_in_memory() -> Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create(
        c"berth-seccomp",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(|e| RuntimeError::io("create", "memfd for seccomp BPF", e.into()))?;
    Ok(std::fs::File::from(fd))
}

impl CompiledFilter {
    /// The bundle file's contents: the flags (4 bytes, little endian), then the program.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.program.len());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.program);
        out
    }

    /// Parse [`CompiledFilter::to_bytes`] output.
    pub fn from_bytes(bytes: &[u8]) -> Option<CompiledFilter> {
        let (flags, program) = bytes.split_first_chunk::<4>()?;
        (!program.is_empty() && program.len() % 8 == 0 && program.len() / 8 <= u16::MAX as usize)
            .then(|| CompiledFilter {
                flags: u32::from_le_bytes(*flags),
                program: program.to_vec(),
            })
    }

    /// Install the filter on the calling thread. Needs `no_new_privs` or `CAP_SYS_ADMIN`.
    pub fn load(&self) -> std::io::Result<()> {
        use nix::libc;
        let filter: Vec<libc::sock_filter> = self
            .program
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        let prog = libc::sock_fprog {
            len: u16::try_from(filter.len()).map_err(|_| std::io::Error::other("BPF too long"))?,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `filter`, which outlives the call; the kernel copies it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// Let a process that will load a seccomp filter before `execve` hold `CAP_SYS_ADMIN` until
/// then (see the module docs). Nothing changes when it sets `no_new_privs` (then the kernel
/// needs no capability) or already has the capability.
pub fn keep_sys_admin_until_exec(process: &mut Process) {
    if process.no_new_privileges() == Some(true) {
        return;
    }
    let mut caps: LinuxCapabilities = process.capabilities().clone().unwrap_or_default();
    let mut effective = caps.effective().clone().unwrap_or_default();
    if effective.contains(&Capability::SysAdmin) {
        return;
    }
    effective.insert(Capability::SysAdmin);
    let mut permitted = caps.permitted().clone().unwrap_or_default();
    permitted.insert(Capability::SysAdmin);
    caps.set_effective(Some(effective));
    caps.set_permitted(Some(permitted));
    process.set_capabilities(Some(caps));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::{DEFAULT_PROFILE, SeccompContext, resolve};

    fn default_filter() -> LinuxSeccomp {
        let caps: Vec<String> = ["CAP_CHOWN", "CAP_KILL"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ctx = SeccompContext {
            caps: &caps,
            arch: crate::seccomp::host_arch(),
            kernel: (6, 1),
        };
        resolve(DEFAULT_PROFILE, &ctx).unwrap()
    }

    #[test]
    fn compiles_the_default_profile_once() {
        let f = default_filter();
        let a = compile(&f).unwrap();
        let b = compile(&f).unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "the second compile comes from the cache"
        );
        assert!(
            a.program.len() > 8 * 100,
            "a real program: {} bytes",
            a.program.len()
        );
        assert_eq!(
            CompiledFilter::from_bytes(&a.to_bytes()).as_ref(),
            Some(&*a)
        );
    }

    #[test]
    fn rejects_notify_and_truncated_files() {
        let mut f = default_filter();
        f.set_default_action(LinuxSeccompAction::ScmpActNotify);
        assert!(compile(&f).is_err());
        assert!(CompiledFilter::from_bytes(&[0, 0, 0, 0, 1, 2, 3]).is_none());
        assert!(CompiledFilter::from_bytes(&[0, 0]).is_none());
    }

    #[test]
    fn sys_admin_is_kept_only_in_effective_and_permitted() {
        let mut p = Process::default();
        p.set_no_new_privileges(None);
        let mut caps = LinuxCapabilities::default();
        let set: std::collections::HashSet<Capability> = [Capability::Chown].into_iter().collect();
        caps.set_bounding(Some(set.clone()));
        caps.set_effective(Some(set.clone()));
        caps.set_permitted(Some(set.clone()));
        caps.set_inheritable(None);
        caps.set_ambient(None);
        p.set_capabilities(Some(caps));
        keep_sys_admin_until_exec(&mut p);
        let c = p.capabilities().as_ref().unwrap();
        assert!(
            c.effective()
                .as_ref()
                .unwrap()
                .contains(&Capability::SysAdmin)
        );
        assert!(
            c.permitted()
                .as_ref()
                .unwrap()
                .contains(&Capability::SysAdmin)
        );
        assert!(
            !c.bounding()
                .as_ref()
                .unwrap()
                .contains(&Capability::SysAdmin)
        );
        assert!(c.ambient().is_none() && c.inheritable().is_none());

        let mut nnp = Process::default();
        nnp.set_no_new_privileges(Some(true));
        let before = nnp.capabilities().clone();
        keep_sys_admin_until_exec(&mut nnp);
        assert_eq!(
            nnp.capabilities(),
            &before,
            "no_new_privs needs no capability"
        );
    }
}
