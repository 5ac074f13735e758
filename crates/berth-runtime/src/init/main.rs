//! `berth-init` (installed in containers as `/sbin/docker-init`): a minimal pid 1 for
//! `--init`. Usage: `docker-init [--] command [args...]`.
//!
//! It starts the command as its only child, forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT,
//! SIGUSR1, SIGUSR2 and SIGWINCH to it, reaps every zombie that is reparented to it, and exits
//! with the child's exit status (128 + signal when the child was killed by a signal); 127 when
//! the command does not exist, 126 when it cannot be executed.
//!
//! Built by `build.rs` as a standalone, statically linked program: std only, with the handful
//! of libc functions it needs declared here (Linux, glibc, x86_64 / aarch64 signal numbers).

use std::os::raw::c_int;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// glibc's `sigset_t`: 1024 bits.
#[repr(C)]
struct SigSet([u64; 16]);

/// Room for a `siginfo_t` (128 bytes); only `si_signo` (the first int) is read.
#[repr(C)]
struct SigInfo([c_int; 32]);

unsafe extern "C" {
    fn sigemptyset(set: *mut SigSet) -> c_int;
    fn sigaddset(set: *mut SigSet, signo: c_int) -> c_int;
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn sigwaitinfo(set: *const SigSet, info: *mut SigInfo) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn setpgid(pid: c_int, pgid: c_int) -> c_int;
    fn tcsetpgrp(fd: c_int, pgrp: c_int) -> c_int;
    fn getpid() -> c_int;
    fn signal(sig: c_int, handler: usize) -> usize;
}

const SIG_BLOCK: c_int = 0;
const SIG_SETMASK: c_int = 2;
const WNOHANG: c_int = 1;
const SIGHUP: c_int = 1;
const SIGINT: c_int = 2;
const SIGQUIT: c_int = 3;
const SIGUSR1: c_int = 10;
const SIGUSR2: c_int = 12;
const SIGTERM: c_int = 15;
const SIGCHLD: c_int = 17;
const SIGWINCH: c_int = 28;
const SIGTTOU: c_int = 22;
const SIG_DFL: usize = 0;
const SIG_IGN: usize = 1;
const FORWARDED: [c_int; 7] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH];

fn exit_code(status: c_int) -> i32 {
    let sig = status & 0x7f;
    if sig == 0 {
        (status >> 8) & 0xff
    } else {
        128 + sig
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--") {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("berth-init: usage: docker-init [--] command [args...]");
        std::process::exit(1);
    }
    let mut set = SigSet([0; 16]);
    // SAFETY: `set` is a valid, writable sigset_t-sized buffer for the whole block; the signal
    // numbers are valid.
    unsafe {
        sigemptyset(&mut set);
        sigaddset(&mut set, SIGCHLD);
        for s in FORWARDED {
            sigaddset(&mut set, s);
        }
        // Blocked here, received with sigwaitinfo below. std's spawn resets the child's mask.
        sigprocmask(SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls. The child gets a process group of its own, made the terminal's
    // foreground group when stdin is a tty (so ^C reaches it once, not through us as well),
    // and must not inherit the blocked signals (std's spawn does not reliably reset the mask,
    // measured with the static build).
    unsafe {
        cmd.pre_exec(|| {
            setpgid(0, 0);
            signal(SIGTTOU, SIG_IGN);
            tcsetpgrp(0, getpid()); // ENOTTY without a terminal: nothing to do
            signal(SIGTTOU, SIG_DFL);
            let empty = SigSet([0; 16]);
            sigprocmask(SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c.id() as c_int,
        Err(e) => {
            eprintln!("berth-init: exec {}: {e}", args[0]);
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            };
            std::process::exit(code);
        }
    };
    loop {
        let mut info = SigInfo([0; 32]);
        // SAFETY: `set` is an initialised glibc-sized sigset_t and `info` has room for the
        // kernel's 128-byte siginfo_t; both are live locals for the whole call.
        let sig = unsafe { sigwaitinfo(&set, &mut info) };
        if sig < 0 {
            continue; // EINTR
        }
        if sig != SIGCHLD {
            // SAFETY: kill(2) takes no pointers. `child` is still our child's pid: it cannot
            // have been reused, because it is reaped only below, after which we exit.
            unsafe { kill(child, sig) };
            continue;
        }
        loop {
            let mut status: c_int = 0;
            // SAFETY: `status` is a live, writable c_int; waitpid writes only that int.
            let pid = unsafe { waitpid(-1, &mut status, WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                // Reap what is already there, then leave: the kernel kills the rest of the
                // pid namespace when pid 1 exits.
                let mut st: c_int = 0;
                // SAFETY: `st` is a live, writable c_int, as `status` above.
                while unsafe { waitpid(-1, &mut st, WNOHANG) } > 0 {}
                std::process::exit(exit_code(status));
            }
        }
    }
}
