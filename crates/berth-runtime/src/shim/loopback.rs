//! Brings `lo` up in a container's new network namespace. The runtime creates the namespace
//! but leaves its loopback down (Docker's network layer is what brings it up), and a container
//! whose `localhost` does not answer breaks ordinary programs.

use std::fs::File;
use std::os::fd::AsRawFd;

use nix::sched::{CloneFlags, setns};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Does the spec give the container a network namespace of its own (not the host's, not
/// another container's)? Only then is its loopback ours to bring up.
pub fn has_private_network(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|linux| linux.namespaces().as_ref())
        .is_some_and(|namespaces| {
            namespaces
                .iter()
                .any(|ns| ns.typ() == LinuxNamespaceType::Network && ns.path().is_none())
        })
}

/// Sets `lo` up inside the network namespace of process `pid`. The work happens in a forked
/// child that joins the namespace, so the shim itself never changes namespace. The shim is
/// single-threaded, which is what makes the fork safe.
pub fn bring_up(pid: Pid) -> std::io::Result<()> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))?;
    // SAFETY: the shim is single-threaded; the child only makes raw syscalls and `_exit`s.
    match unsafe { fork() }.map_err(std::io::Error::from)? {
        ForkResult::Child => {
            let ok = setns(&ns, CloneFlags::CLONE_NEWNET).is_ok() && set_loopback_up().is_ok();
            // SAFETY: `_exit` skips the parent's atexit handlers and buffered I/O, as a forked
            // child must.
            unsafe { nix::libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => match waitpid(child, None).map_err(std::io::Error::from)? {
            WaitStatus::Exited(_, 0) => Ok(()),
            status => Err(std::io::Error::other(format!(
                "bringing up lo in the network namespace of pid {pid} failed ({status:?})"
            ))),
        },
    }
}

/// `SIOCGIFFLAGS` / `SIOCSIFFLAGS` on `lo` in the current network namespace.
fn set_loopback_up() -> std::io::Result<()> {
    use nix::libc;
    // SAFETY: a plain socket(2) call; the result is checked before use and closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: both ioctls read and write one `ifreq`, which outlives the calls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
