//! The userland port proxy: serves published ports where NAT cannot (127.0.0.1, the host's own
//! connections), one tokio task per port inside the daemon, no process per port. Binding the
//! host port also reserves it, so a taken port fails like Docker's.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio::task::{AbortHandle, JoinSet};

use crate::tasks::Tasks;
use crate::{Error, Proto, Result};

/// How long a UDP flow without traffic in either direction is kept (Docker's proxy: 90 s).
const UDP_IDLE: Duration = Duration::from_secs(90);
/// Copy buffer per direction of a TCP connection.
const TCP_BUF: usize = 64 * 1024;
/// Largest UDP datagram relayed.
const UDP_BUF: usize = 65_535;

/// A running proxy for one published port; dropping it (or [`PortProxy::close`]) stops it.
#[derive(Debug)]
pub struct PortProxy {
    host_port: u16,
    task: AbortHandle,
}

impl PortProxy {
    /// The bound host port (the one picked when 0 was asked).
    pub fn host_port(&self) -> u16 {
        self.host_port
    }

    /// Stops the proxy and frees the port.
    pub fn close(self) {}
}

impl Drop for PortProxy {
    fn drop(&mut self) {
        // The listener and every connection live in the aborted task (and its JoinSet), so
        // they are all dropped with it and the port is free again.
        self.task.abort();
    }
}

/// Binds `host_ip:host_port` (None = all addresses, 0 = pick a free port) and forwards to
/// `target`. TCP: each connection is copied both ways. UDP: per-client flows with an idle
/// timeout. A taken port gives "Bind for 0.0.0.0:8080 failed: port is already allocated".
/// Needs a tokio runtime.
pub async fn publish(
    host_ip: Option<IpAddr>,
    host_port: u16,
    proto: Proto,
    target: SocketAddr,
) -> Result<PortProxy> {
    publish_on(&Tasks::current()?, host_ip, host_port, proto, target).await
}

/// [`publish`] with the proxy's task spawned on `tasks` (the network service's runtime and
/// tracker).
pub async fn publish_on(
    tasks: &Tasks,
    host_ip: Option<IpAddr>,
    host_port: u16,
    proto: Proto,
    target: SocketAddr,
) -> Result<PortProxy> {
    match proto {
        Proto::Tcp => {
            let listener = bind(host_ip, host_port, |a| async move {
                match HOST_BINDER.get() {
                    Some(_) => TcpListener::from_std(from_host(Proto::Tcp, a).await?.into()),
                    None => TcpListener::bind(a).await,
                }
            })
            .await?;
            let port = local_port(listener.local_addr())?;
            let task = tasks.spawn(serve_tcp(listener, target)).abort_handle();
            Ok(PortProxy {
                host_port: port,
                task,
            })
        }
        Proto::Udp => {
            let socket = bind(host_ip, host_port, |a| async move {
                match HOST_BINDER.get() {
                    Some(_) => UdpSocket::from_std(from_host(Proto::Udp, a).await?.into()),
                    None => UdpSocket::bind(a).await,
                }
            })
            .await?;
            let port = local_port(socket.local_addr())?;
            let task = tasks
                .spawn(serve_udp(Arc::new(socket), target))
                .abort_handle();
            Ok(PortProxy {
                host_port: port,
                task,
            })
        }
    }
}

/// Makes a published port's socket somewhere else than in the daemon's own network namespace
/// (a rootless daemon's: its parent process, in the host's, binds it and passes it over): the
/// socket, bound (and listening, for TCP), non-blocking.
pub type HostBinder =
    Box<dyn Fn(Proto, SocketAddr) -> std::io::Result<std::os::fd::OwnedFd> + Send + Sync>;

static HOST_BINDER: std::sync::OnceLock<HostBinder> = std::sync::OnceLock::new();

/// Sets the [`HostBinder`] for the rest of the process (once; later calls are ignored).
pub fn set_host_binder(binder: HostBinder) {
    let _ = HOST_BINDER.set(binder);
}

async fn from_host(proto: Proto, addr: SocketAddr) -> std::io::Result<std::os::fd::OwnedFd> {
    tokio::task::spawn_blocking(move || match HOST_BINDER.get() {
        Some(binder) => binder(proto, addr),
        None => Err(std::io::Error::other("no host binder")),
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Binds the socket; for "all addresses" the IPv6 wildcard (which takes IPv4 too on Linux
/// by default), falling back to 0.0.0.0 on hosts without IPv6.
async fn bind<S, F, Fut>(host_ip: Option<IpAddr>, port: u16, bind_one: F) -> Result<S>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<S>>,
{
    let shown = SocketAddr::new(host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port);
    let result = match host_ip {
        Some(ip) => bind_one(SocketAddr::new(ip, port)).await,
        None => match bind_one(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)).await {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
                ) =>
            {
                bind_one(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)).await
            }
            other => other,
        },
    };
    result.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Error::PortAllocated {
                addr: shown.to_string(),
            }
        } else {
            Error::io(format!("cannot bind {shown}"), e)
        }
    })
}

fn local_port(addr: std::io::Result<SocketAddr>) -> Result<u16> {
    addr.map(|a| a.port())
        .map_err(|e| Error::io("cannot read a proxy socket's address", e))
}

async fn serve_tcp(listener: TcpListener, target: SocketAddr) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    conns.spawn(relay_tcp(client, target));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%target, error = %e, "port proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn relay_tcp(mut client: TcpStream, target: SocketAddr) {
    let _ = client.set_nodelay(true);
    let mut upstream = match TcpStream::connect(target).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%target, error = %e, "port proxy cannot reach the container");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    // 64 KiB buffers: with the default 8 KiB, bulk transfers pay a system call pair per 8 KiB.
    let _ = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, TCP_BUF, TCP_BUF)
        .await;
}

/// One client's UDP flow: a socket connected to the target, and when the client last sent.
struct Flow {
    socket: UdpSocket,
    last_sent: std::sync::Mutex<Instant>,
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Arc<Flow>>>>;

async fn serve_udp(socket: Arc<UdpSocket>, target: SocketAddr) {
    // One connected socket per client address, each with a task relaying replies back.
    let flows: Flows = Arc::default();
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; UDP_BUF];
    loop {
        let (n, client) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(_) => continue,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let existing = flows.lock().await.get(&client).cloned();
        let flow = match existing {
            Some(f) => f,
            None => {
                let local: SocketAddr = if target.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let Ok(up) = UdpSocket::bind(local).await else {
                    continue;
                };
                if up.connect(target).await.is_err() {
                    continue;
                }
                let flow = Arc::new(Flow {
                    socket: up,
                    last_sent: std::sync::Mutex::new(Instant::now()),
                });
                flows.lock().await.insert(client, flow.clone());
                tasks.spawn(relay_udp_replies(
                    flow.clone(),
                    socket.clone(),
                    client,
                    flows.clone(),
                ));
                flow
            }
        };
        *flow.last_sent.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let _ = flow.socket.send(&buf[..n]).await;
    }
}

/// Relays the target's replies to the client until the flow is idle both ways for
/// [`UDP_IDLE`].
async fn relay_udp_replies(
    flow: Arc<Flow>,
    down: Arc<UdpSocket>,
    client: SocketAddr,
    flows: Flows,
) {
    let mut buf = vec![0u8; UDP_BUF];
    loop {
        match tokio::time::timeout(UDP_IDLE, flow.socket.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                if down.send_to(&buf[..n], client).await.is_err() {
                    break;
                }
            }
            Ok(Err(_)) => break,
            Err(_) => {
                let last = *flow.last_sent.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= UDP_IDLE {
                    break;
                }
            }
        }
    }
    flows.lock().await.remove(&client);
}
