//! A fault-injecting HTTP proxy in front of a registry on 127.0.0.1, for the pull fault tests:
//! it streams responses through (so a stall or a slow link can be staged mid-body), and logs
//! every request with the body bytes it passed back. What it does is a [`Plan`], changeable
//! while it runs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the proxy does to blob responses.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Responses for this blob (digest) stop after this many body bytes, and the connection
    /// then stays open and silent until the client gives up (a stalled registry).
    pub stall: Option<(String, usize)>,
    /// Blob bodies go out at this many bytes per second (a slow link).
    pub rate: Option<usize>,
}

/// One request the proxy forwarded.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    /// Body bytes passed back so far.
    pub bytes_sent: usize,
}

pub struct Proxy {
    port: u16,
    log: Arc<Mutex<Vec<Logged>>>,
    plan: Arc<Mutex<Plan>>,
}

impl Proxy {
    /// A proxy to the registry on `127.0.0.1:<upstream>`; its thread ends with the test
    /// process and only ever talks to 127.0.0.1.
    pub fn start(upstream: u16, plan: Plan) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let plan = Arc::new(Mutex::new(plan));
        let (l, p) = (log.clone(), plan.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (l, p) = (l.clone(), p.clone());
                std::thread::spawn(move || {
                    let _ = forward(client, upstream, &l, &p);
                });
            }
        });
        Proxy { port, log, plan }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set_plan(&self, plan: Plan) {
        *self.plan.lock().unwrap() = plan;
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }

    /// The GETs of the blob `digest`.
    pub fn blob_gets(&self, digest: &str) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/blobs/{digest}")))
            .collect()
    }

    /// Body bytes of the blob `digest` passed back so far.
    pub fn blob_bytes(&self, digest: &str) -> usize {
        self.blob_gets(digest).iter().map(|r| r.bytes_sent).sum()
    }
}

fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    Ok(Some(head))
}

fn forward(
    mut client: TcpStream,
    upstream: u16,
    log: &Mutex<Vec<Logged>>,
    plan: &Mutex<Plan>,
) -> std::io::Result<()> {
    if crate::registry::opens_with_tls(&client) {
        return Ok(());
    }
    let Some(head) = read_head(&mut client)? else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut words = text.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let path = words.next().unwrap_or_default().to_string();
    let range = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("range")
                .then(|| v.trim().to_string())
        })
        .filter(|r| !r.is_empty());
    let idx = {
        let mut log = log.lock().unwrap();
        log.push(Logged {
            method: method.clone(),
            path: path.clone(),
            range,
            bytes_sent: 0,
        });
        log.len() - 1
    };
    let plan = plan.lock().unwrap().clone();
    // One request per connection: asked of the registry, and told to the client.
    let mut forwarded: String = text
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(forwarded.as_bytes())?;
    let Some(response_head) = read_head(&mut up)? else {
        return Ok(());
    };
    client.write_all(&response_head)?;
    let blob = path.contains("/blobs/sha256:") && method == "GET";
    let stall_after = plan
        .stall
        .as_ref()
        .filter(|(d, _)| blob && path.ends_with(&format!("/blobs/{d}")))
        .map(|(_, n)| *n);
    let rate = plan.rate.filter(|_| blob);
    let mut sent = 0usize;
    let mut buf = vec![0u8; 16 << 10];
    let started = Instant::now();
    loop {
        let n = up.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let mut n = n;
        let mut stall = false;
        if let Some(after) = stall_after
            && sent + n >= after
        {
            n = after.saturating_sub(sent);
            stall = true;
        }
        client.write_all(&buf[..n])?;
        sent += n;
        log.lock().unwrap()[idx].bytes_sent = sent;
        if stall {
            // Silent, the connection open, until the client hangs up (or long enough).
            client.set_read_timeout(Some(Duration::from_secs(1)))?;
            let until = Instant::now() + Duration::from_secs(300);
            let mut sink = [0u8; 512];
            while Instant::now() < until {
                match client.read(&mut sink) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return Ok(()),
                }
            }
            return Ok(());
        }
        if let Some(rate) = rate {
            // Paced: never ahead of `rate` bytes per second.
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}
