//! The embedded DNS server inside a container netns: local names, forwarding to an upstream
//! (a tiny one the test runs itself), TCP, SERVFAIL without upstreams.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_network::dns::{self, Resolver};
use berth_network::netns;
use common::*;
use simple_dns::rdata::{A, RData};
use simple_dns::{
    CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE, ResourceRecord, TYPE,
};

struct Names;

impl Resolver for Names {
    fn lookup(&self, name: &str) -> Vec<IpAddr> {
        match name {
            "db" | "db.alias" => vec!["10.75.1.3".parse().unwrap()],
            _ => vec![],
        }
    }
    fn reverse(&self, ip: IpAddr) -> Option<String> {
        (ip == "10.75.1.3".parse::<IpAddr>().unwrap()).then(|| "db".to_string())
    }
}

/// An upstream resolver on the fake host's loopback: every A query gets 198.51.100.7, except
/// "nx.test", which does not exist.
struct Upstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Upstream {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let q = Packet::parse(&buf[..n]).unwrap();
                let mut r = Packet::new_reply(q.id());
                r.questions = q.questions.clone();
                let name = q.questions[0].qname.to_string();
                if name.trim_end_matches('.') == "nx.test" {
                    *r.rcode_mut() = RCODE::NameError;
                } else {
                    r.answers.push(ResourceRecord::new(
                        q.questions[0].qname.clone(),
                        CLASS::IN,
                        60,
                        RData::A(A::from(
                            "198.51.100.7".parse::<std::net::Ipv4Addr>().unwrap(),
                        )),
                    ));
                }
                sock.send_to(&r.build_bytes_vec().unwrap(), from).unwrap();
            }
        });
        Upstream {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn query_bytes(name: &str, qtype: TYPE) -> Vec<u8> {
    let mut q = Packet::new_query(0x4242);
    q.set_flags(PacketFlag::RECURSION_DESIRED);
    q.questions.push(Question::new(
        Name::new(name).unwrap(),
        QTYPE::TYPE(qtype),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    q.build_bytes_vec().unwrap()
}

/// (rcode, addresses or PTR names) of a reply.
fn decode(reply: &[u8]) -> (RCODE, Vec<String>) {
    let p = Packet::parse(reply).unwrap();
    assert_eq!(p.id(), 0x4242);
    let answers = p
        .answers
        .iter()
        .map(|rr| match &rr.rdata {
            RData::A(a) => std::net::Ipv4Addr::from(a.address).to_string(),
            RData::AAAA(a) => std::net::Ipv6Addr::from(a.address).to_string(),
            RData::PTR(p) => p.0.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    (p.rcode(), answers)
}

async fn ask_udp(ns: &Path, name: &str, qtype: TYPE) -> (RCODE, Vec<String>) {
    let q = query_bytes(name, qtype);
    let reply = netns::run_in_async(ns, move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.send_to(&q, "127.0.0.11:53").unwrap();
        let mut buf = [0u8; 1500];
        let n = s.recv(&mut buf).unwrap();
        buf[..n].to_vec()
    })
    .await
    .unwrap();
    decode(&reply)
}

async fn ask_tcp(ns: &Path, name: &str, qtype: TYPE) -> (RCODE, Vec<String>) {
    let q = query_bytes(name, qtype);
    let reply = netns::run_in_async(ns, move || {
        let mut s = TcpStream::connect("127.0.0.11:53").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
        s.write_all(&q).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).unwrap();
        buf
    })
    .await
    .unwrap();
    decode(&reply)
}

#[test]
fn answers_known_names_and_forwards_the_rest() {
    require_root!();
    in_fake_host(|scratch, _host| async move {
        let c = Ns::new(&scratch, "c");
        let up = Upstream::start();
        let server = dns::serve(&c.path, Arc::new(Names), vec![up.addr]).unwrap();

        assert_eq!(
            ask_udp(&c.path, "db", TYPE::A).await,
            (RCODE::NoError, vec!["10.75.1.3".into()])
        );
        assert_eq!(
            ask_udp(&c.path, "DB.alias.", TYPE::A).await,
            (RCODE::NoError, vec!["10.75.1.3".into()])
        );
        // Known name, no IPv6 address: NOERROR, empty.
        assert_eq!(
            ask_udp(&c.path, "db", TYPE::AAAA).await,
            (RCODE::NoError, vec![])
        );
        assert_eq!(
            ask_udp(&c.path, "3.1.75.10.in-addr.arpa", TYPE::PTR).await,
            (RCODE::NoError, vec!["db".into()])
        );
        // Forwarded to the upstream, from the host netns (the upstream is on the host's lo).
        assert_eq!(
            ask_udp(&c.path, "example.test", TYPE::A).await,
            (RCODE::NoError, vec!["198.51.100.7".into()])
        );
        assert_eq!(
            ask_udp(&c.path, "nx.test", TYPE::A).await,
            (RCODE::NameError, vec![])
        );
        // TCP: local names; a forwarded TCP query goes to the upstream over TCP, which this one
        // refuses: SERVFAIL.
        assert_eq!(
            ask_tcp(&c.path, "db", TYPE::A).await,
            (RCODE::NoError, vec!["10.75.1.3".into()])
        );
        assert_eq!(
            ask_tcp(&c.path, "example.test", TYPE::A).await.0,
            RCODE::ServerFailure
        );

        // Stopped: the address is free again inside the netns.
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let again = dns::serve(&c.path, Arc::new(Names), vec![]).unwrap();
        assert_eq!(
            ask_udp(&c.path, "example.test", TYPE::A).await,
            (RCODE::ServerFailure, vec![])
        );
        drop(again);
    });
}
