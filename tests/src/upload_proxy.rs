//! A proxy in front of a registry for push tests, forwarding request bodies too (the pull
//! tests' `FaultProxy` forwards heads only). Faults, each used once:
//! - `cut_upload_after`: the first blob upload request (PATCH or PUT) whose body is bigger
//!   than this is cut after this many body bytes: the registry gets a truncated body and the
//!   client a dropped connection, as when a network fails mid-layer;
//! - `lose_answer_of_patch_over`: the first PATCH bigger than this gets to the registry, but
//!   its answer is dropped with the connection;
//! - `fail_heads`: the first N HEADs of blobs answer 503, as an overloaded registry (or one
//!   that timed out) does.
//!
//! Every request is recorded (method, path, body bytes forwarded).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What a [`UploadProxy`] saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body_bytes: usize,
    pub cut: bool,
    /// The status line of the registry's answer (empty when there was none).
    pub answer: String,
}

#[derive(Default)]
pub struct Faults {
    pub cut_upload_after: Option<usize>,
    /// The first PATCH bigger than this reaches the registry whole, but its answer is lost
    /// (the connection drops before the client reads it).
    pub lose_answer_of_patch_over: Option<usize>,
    pub fail_heads: usize,
}

pub struct UploadProxy {
    port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

struct Shared {
    registry_port: u16,
    faults: Faults,
    cut_done: AtomicBool,
    answer_lost: AtomicBool,
    heads_failed: AtomicUsize,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl UploadProxy {
    pub fn start(registry_port: u16, faults: Faults) -> UploadProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            registry_port,
            faults,
            cut_done: AtomicBool::new(false),
            answer_lost: AtomicBool::new(false),
            heads_failed: AtomicUsize::new(0),
            seen: seen.clone(),
        });
        // The thread ends with the test process; it only ever talks to 127.0.0.1.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(client, &shared);
                });
            }
        });
        UploadProxy { port, seen }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
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

/// Serves the requests of one client connection (keep-alive: one upstream connection per
/// request, closed after its answer).
fn serve(mut client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    if crate::registry::opens_with_tls(&client) {
        return Ok(());
    }
    while let Some(head) = read_head(&mut client)? {
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut words = text.split_whitespace();
        let method = words.next().unwrap_or_default().to_string();
        let path = words.next().unwrap_or_default().to_string();
        let length: usize = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        client.read_exact(&mut body)?;

        if method == "HEAD"
            && path.contains("/blobs/sha256:")
            && shared.heads_failed.fetch_add(1, Ordering::SeqCst) < shared.faults.fail_heads
        {
            shared.seen.lock().unwrap().push(Seen {
                method,
                path,
                body_bytes: 0,
                cut: true,
                answer: "HTTP/1.1 503 Service Unavailable".into(),
            });
            client.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
        let cut = matches!(method.as_str(), "PATCH" | "PUT")
            && path.contains("/blobs/uploads/")
            && shared
                .faults
                .cut_upload_after
                .is_some_and(|after| length > after)
            && !shared.cut_done.swap(true, Ordering::SeqCst);
        let forwarded: String = text
            .trim_end()
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
            + "Connection: close\r\n\r\n";
        let mut upstream = TcpStream::connect(("127.0.0.1", shared.registry_port))?;
        upstream.write_all(forwarded.as_bytes())?;
        if cut {
            let after = shared.faults.cut_upload_after.unwrap_or(0);
            upstream.write_all(&body[..after])?;
            shared.seen.lock().unwrap().push(Seen {
                method,
                path,
                body_bytes: after,
                cut: true,
                answer: String::new(),
            });
            // Both sides see the connection drop mid-body.
            let _ = upstream.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        upstream.write_all(&body)?;
        let mut response = Vec::new();
        upstream.read_to_end(&mut response)?;
        if method == "PATCH"
            && shared
                .faults
                .lose_answer_of_patch_over
                .is_some_and(|over| length > over)
            && !shared.answer_lost.swap(true, Ordering::SeqCst)
        {
            shared.seen.lock().unwrap().push(Seen {
                method,
                path,
                body_bytes: length,
                cut: true,
                answer: "(lost)".into(),
            });
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        shared.seen.lock().unwrap().push(Seen {
            method,
            path,
            body_bytes: length,
            cut: false,
            answer: String::from_utf8_lossy(&response)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        });
        client.write_all(&response)?;
    }
    Ok(())
}
