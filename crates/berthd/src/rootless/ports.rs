//! Published ports of a rootless daemon, as rootlesskit's builtin port driver does it: the
//! daemon lives in a network namespace of its own that the host cannot reach, so its parent
//! (still in the host's) binds each published port there and passes the socket over a unix
//! socket pair (`SCM_RIGHTS`); the daemon's userland proxy accepts on it and connects to the
//! container from inside. Ports below `net.ipv4.ip_unprivileged_port_start` fail as they
//! would for any process of the user.
//!
//! One request at a time: `tcp <addr>\n` or `udp <addr>\n`; the answer is 4 bytes, 0 and the
//! socket, or an errno without one.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use berth_network::Proto;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// The child side: every published port's socket comes from the parent.
pub fn install_client(fd: OwnedFd) {
    let stream = Mutex::new(UnixStream::from(fd));
    berth_network::proxy::set_host_binder(Box::new(move |proto, addr| {
        let mut stream = stream.lock().unwrap_or_else(|e| e.into_inner());
        request(&mut stream, proto, addr)
    }));
}

fn request(stream: &mut UnixStream, proto: Proto, addr: SocketAddr) -> std::io::Result<OwnedFd> {
    let kind = match proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    };
    stream.write_all(format!("{kind} {addr}\n").as_bytes())?;
    let mut answer = [0u8; 4];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut answer)];
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut fd = None;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: the kernel just installed this descriptor in this process for this
                // message; it is owned once, here.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                fd.get_or_insert(owned);
            }
        }
    }
    if msg.bytes != 4 {
        return Err(std::io::Error::other(
            "the rootless parent closed the ports channel",
        ));
    }
    let errno = i32::from_le_bytes(answer);
    if errno == libc::EACCES && addr.port() != 0 && addr.port() < 1024 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "a rootless daemon cannot bind port {} (below net.ipv4.ip_unprivileged_port_start): use a port from 1024, or lower that sysctl as root",
                addr.port()
            ),
        ));
    }
    if errno != 0 {
        return Err(std::io::Error::from_raw_os_error(errno));
    }
    let fd = fd.ok_or_else(|| std::io::Error::other("the rootless parent sent no socket"))?;
    // The proxy hands it to tokio, which wants it non-blocking.
    let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )?;
    Ok(fd)
}

/// The parent side: answers the child's requests until it closes its end.
pub fn serve(mut stream: UnixStream) {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        line.clear();
        loop {
            match stream.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => line.push(byte[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let result = bind(&text);
        let (errno, fd) = match &result {
            Ok(fd) => (0i32, Some(fd.as_raw_fd())),
            Err(e) => (e.raw_os_error().unwrap_or(libc::EINVAL), None),
        };
        let answer = errno.to_le_bytes();
        let iov = [IoSlice::new(&answer)];
        let fds: Vec<i32> = fd.into_iter().collect();
        let cmsgs: Vec<ControlMessage> = if fds.is_empty() {
            Vec::new()
        } else {
            vec![ControlMessage::ScmRights(&fds)]
        };
        if sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None).is_err() {
            return;
        }
        // Our copy closes here: the child's is the port's only holder.
        drop(result);
    }
}

fn bind(request: &str) -> std::io::Result<OwnedFd> {
    let invalid = || std::io::Error::from_raw_os_error(libc::EINVAL);
    let (kind, addr) = request.split_once(' ').ok_or_else(invalid)?;
    let addr: SocketAddr = addr.parse().map_err(|_| invalid())?;
    match kind {
        "tcp" => Ok(std::net::TcpListener::bind(addr)?.into()),
        "udp" => Ok(std::net::UdpSocket::bind(addr)?.into()),
        _ => Err(invalid()),
    }
}
