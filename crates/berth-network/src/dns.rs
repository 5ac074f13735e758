//! The embedded DNS server of user-defined networks: 127.0.0.11:53 (UDP and TCP) inside a
//! container's netns, answering names the [`Resolver`] knows and forwarding the rest to the
//! host's resolvers from the host netns.
//!
//! The listening sockets are made by a thread inside the container's netns (sockets stay in
//! the netns they were created in) and then served by tasks of the daemon's runtime, whose
//! threads are in the host netns: so forwarded queries leave from the host, and a host
//! resolver on 127.0.0.53 works as an upstream.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use simple_dns::rdata::{A, AAAA, PTR, RData};
use simple_dns::{CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, RCODE, ResourceRecord, TYPE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{AbortHandle, JoinSet};

use crate::tasks::Tasks;
use crate::{Error, Result, netns};

/// Where the server listens inside the container (Docker's address).
pub const LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);
/// TTL of the answers for container names (Docker's).
const TTL: u32 = 600;
/// How long one upstream gets to answer before the next is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP client that sends nothing for this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Names within a container's networks.
pub trait Resolver: Send + Sync + 'static {
    /// Addresses for `name` (A and AAAA); empty = unknown here, forward it.
    fn lookup(&self, name: &str) -> Vec<IpAddr>;
    /// The name for a PTR query, if known.
    fn reverse(&self, ip: IpAddr) -> Option<String> {
        let _ = ip;
        None
    }
}

/// A running DNS server; dropping it stops it and closes its sockets.
#[derive(Debug)]
pub struct DnsServer {
    tasks: Vec<AbortHandle>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Binds 127.0.0.11:53 UDP and TCP inside the netns at `netns` (sockets made by a thread in
/// that netns; they stay in it) and serves them with tokio tasks of the current runtime.
/// Unknown names are forwarded to `upstreams` from the host netns; with none, SERVFAIL.
pub fn serve(
    netns: &Path,
    resolver: Arc<dyn Resolver>,
    upstreams: Vec<SocketAddr>,
) -> Result<DnsServer> {
    let tasks = Tasks::current()
        .map_err(|_| Error::Invalid("the DNS server needs a tokio runtime".into()))?;
    serve_on(&tasks, netns, resolver, upstreams)
}

/// [`serve`] with the server's tasks spawned on `tasks` (the network service's runtime and
/// tracker).
pub fn serve_on(
    tasks: &Tasks,
    netns: &Path,
    resolver: Arc<dyn Resolver>,
    upstreams: Vec<SocketAddr>,
) -> Result<DnsServer> {
    let where_ = netns.display().to_string();
    let (udp, tcp) = netns::run_in(netns, move || -> std::io::Result<_> {
        let udp = std::net::UdpSocket::bind(LISTEN)?;
        udp.set_nonblocking(true)?;
        let tcp = std::net::TcpListener::bind(LISTEN)?;
        tcp.set_nonblocking(true)?;
        Ok((udp, tcp))
    })?
    .map_err(|e| Error::io(format!("cannot bind {LISTEN} in netns {where_}"), e))?;
    let _guard = tasks.runtime().enter();
    let udp = UdpSocket::from_std(udp).map_err(|e| Error::io("cannot register DNS socket", e))?;
    let tcp =
        TcpListener::from_std(tcp).map_err(|e| Error::io("cannot register DNS listener", e))?;
    let shared = Arc::new(Shared {
        resolver,
        upstreams,
    });
    let tasks = vec![
        tasks
            .spawn(serve_udp(Arc::new(udp), shared.clone()))
            .abort_handle(),
        tasks.spawn(serve_tcp(tcp, shared)).abort_handle(),
    ];
    Ok(DnsServer { tasks })
}

struct Shared {
    resolver: Arc<dyn Resolver>,
    upstreams: Vec<SocketAddr>,
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut inflight = JoinSet::new();
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, client)) = r else { continue };
                let query = buf[..n].to_vec();
                let (socket, shared) = (socket.clone(), shared.clone());
                inflight.spawn(async move {
                    if let Some(reply) = answer(&query, &shared, Transport::Udp).await {
                        let _ = socket.send_to(&reply, client).await;
                    }
                });
            }
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((stream, _)) = r else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                conns.spawn(serve_tcp_client(stream, shared.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_tcp_client(mut stream: TcpStream, shared: Arc<Shared>) {
    loop {
        let Ok(Ok(query)) = tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await else {
            return;
        };
        let Some(reply) = answer(&query, &shared, Transport::Tcp).await else {
            return;
        };
        if write_framed(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// The reply to one query: from the resolver when it knows the name, else from an upstream,
/// else SERVFAIL. None for garbage that cannot even be answered with an error.
async fn answer(query: &[u8], shared: &Shared, transport: Transport) -> Option<Vec<u8>> {
    let packet = Packet::parse(query).ok()?;
    if let Some(local) = answer_locally(&packet, shared.resolver.as_ref()) {
        return Some(local);
    }
    for upstream in &shared.upstreams {
        let got =
            tokio::time::timeout(UPSTREAM_TIMEOUT, forward(query, *upstream, transport)).await;
        match got {
            Ok(Ok(reply)) if reply.len() >= 2 && reply[..2] == query[..2] => return Some(reply),
            Ok(Ok(_)) => tracing::debug!(%upstream, "DNS upstream sent a mismatched reply"),
            Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "DNS upstream failed"),
            Err(_) => tracing::debug!(%upstream, "DNS upstream timed out"),
        }
    }
    reply_with(&packet, RCODE::ServerFailure, Vec::new())
}

/// The resolver's answer, if the question is about a name (or address) it knows.
fn answer_locally(query: &Packet<'_>, resolver: &dyn Resolver) -> Option<Vec<u8>> {
    let q = query.questions.first()?;
    if !matches!(q.qclass, QCLASS::CLASS(CLASS::IN) | QCLASS::ANY) {
        return None;
    }
    let name = q
        .qname
        .to_string()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let qname = q.qname.clone();
    match q.qtype {
        QTYPE::TYPE(TYPE::PTR) => {
            let ip = parse_reverse(&name)?;
            let target = resolver.reverse(ip)?;
            let target = Name::new(&target).ok()?.into_owned();
            let rr = ResourceRecord::new(qname, CLASS::IN, TTL, RData::PTR(PTR(target)));
            reply_with(query, RCODE::NoError, vec![rr])
        }
        qtype => {
            let addrs = resolver.lookup(&name);
            if addrs.is_empty() {
                return None;
            }
            // A known name without addresses of the asked type: NOERROR and no answer, as
            // Docker does (no NXDOMAIN, which would make clients stop asking for the other type).
            let answers = addrs
                .into_iter()
                .filter_map(|ip| {
                    let rdata = match (qtype, ip) {
                        (QTYPE::TYPE(TYPE::A) | QTYPE::ANY, IpAddr::V4(v4)) => {
                            RData::A(A::from(v4))
                        }
                        (QTYPE::TYPE(TYPE::AAAA) | QTYPE::ANY, IpAddr::V6(v6)) => {
                            RData::AAAA(AAAA::from(v6))
                        }
                        _ => return None,
                    };
                    Some(ResourceRecord::new(qname.clone(), CLASS::IN, TTL, rdata))
                })
                .collect();
            reply_with(query, RCODE::NoError, answers)
        }
    }
}

fn reply_with(
    query: &Packet<'_>,
    rcode: RCODE,
    answers: Vec<ResourceRecord<'_>>,
) -> Option<Vec<u8>> {
    let mut reply = Packet::new_reply(query.id());
    if query.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    reply.set_flags(PacketFlag::RECURSION_AVAILABLE);
    *reply.rcode_mut() = rcode;
    reply.questions = query.questions.clone();
    reply.answers = answers;
    reply.build_bytes_vec_compressed().ok()
}

/// "4.3.2.1.in-addr.arpa" or the nibble form under "ip6.arpa" to the address.
fn parse_reverse(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<u8> = rest
            .split('.')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(IpAddr::V4(Ipv4Addr::new(
            octets[0], octets[1], octets[2], octets[3],
        )));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|p| u8::from_str_radix(p, 16).ok().filter(|_| p.len() == 1))
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut v: u128 = 0;
    for n in nibbles.iter().rev() {
        v = (v << 4) | u128::from(*n);
    }
    Some(IpAddr::V6(Ipv6Addr::from(v)))
}

async fn forward(
    query: &[u8],
    upstream: SocketAddr,
    transport: Transport,
) -> std::io::Result<Vec<u8>> {
    match transport {
        Transport::Udp => {
            let local: SocketAddr = if upstream.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = UdpSocket::bind(local).await?;
            sock.connect(upstream).await?;
            sock.send(query).await?;
            let mut buf = vec![0u8; 65_535];
            let n = sock.recv(&mut buf).await?;
            buf.truncate(n);
            Ok(buf)
        }
        Transport::Tcp => {
            let mut stream = TcpStream::connect(upstream).await?;
            write_framed(&mut stream, query).await?;
            read_framed(&mut stream).await
        }
    }
}

/// DNS over TCP: each message is preceded by its length as two big-endian bytes.
async fn read_framed(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_framed(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "DNS message too long")
    })?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    stream.write_all(&out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_parse() {
        assert_eq!(
            parse_reverse("4.3.2.10.in-addr.arpa"),
            Some("10.2.3.4".parse().unwrap())
        );
        let v6: Ipv6Addr = "fd00::1".parse().unwrap();
        let mut name = String::new();
        for b in v6.octets().iter().rev() {
            name.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
        }
        name.push_str("ip6.arpa");
        assert_eq!(parse_reverse(&name), Some(IpAddr::V6(v6)));
        assert_eq!(parse_reverse("example.com"), None);
        assert_eq!(parse_reverse("1.2.3.in-addr.arpa"), None);
    }
}
