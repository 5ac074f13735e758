//! An attached session: local stdin/stdout/stderr joined to a hijacked connection (attach,
//! exec start, run), with raw terminal mode, size tracking, detach keys and signal proxying.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;

use anyhow::Result;
use berth_client::{Client, Demuxer, Hijacked, StreamKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::output::StatusError;

/// docker's default detach sequence: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// Parses a detach-keys spec (`ctrl-p,ctrl-q`, `a,ctrl-@`) into bytes, as docker's
/// `term.ToBytes`.
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for key in spec.split(',') {
        let key = key.trim();
        if let Some(rest) = key.strip_prefix("ctrl-") {
            let mut chars = rest.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return Err(format!("Unknown character: '{key}'"));
            };
            let byte = match c.to_ascii_lowercase() {
                c @ 'a'..='z' => c as u8 - b'a' + 1,
                '@' => 0,
                '[' => 27,
                '\\' => 28,
                ']' => 29,
                '^' => 30,
                '_' => 31,
                _ => return Err(format!("Unknown character: '{key}'")),
            };
            out.push(byte);
        } else {
            let mut chars = key.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii() => out.push(c as u8),
                _ => return Err(format!("Unknown character: '{key}'")),
            }
        }
    }
    Ok(out)
}

/// Watches stdin for the detach sequence. Bytes that start the sequence are held back until
/// it either completes (detach) or breaks (they are passed on with the byte that broke it).
#[derive(Debug, Clone)]
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

/// What a chunk of stdin turns into.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Forward these bytes.
    Forward(Vec<u8>),
    /// The sequence was typed: forward the bytes before it, then detach.
    Detach(Vec<u8>),
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> Self {
        DetachScanner { keys, matched: 0 }
    }

    pub fn scan(&mut self, input: &[u8]) -> Scan {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.is_empty() {
                out.push(b);
                continue;
            }
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return Scan::Detach(out);
                }
                continue;
            }
            // The held prefix was not the sequence after all.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return Scan::Detach(out);
                }
            } else {
                out.push(b);
            }
        }
        Scan::Forward(out)
    }
}

/// The local terminal in raw mode; restored when dropped (every exit path, panics included)
/// and before the process ends on SIGTERM, SIGHUP or SIGQUIT.
pub struct RawTerminal {
    saved: rustix::termios::Termios,
    signals: Option<tokio::task::JoinHandle<()>>,
}

fn restore(saved: &rustix::termios::Termios) {
    let _ = rustix::termios::tcsetattr(
        std::io::stdin().as_fd(),
        rustix::termios::OptionalActions::Now,
        saved,
    );
}

impl RawTerminal {
    /// Puts stdin's terminal into raw mode (inside a tokio runtime).
    pub fn enable() -> std::io::Result<RawTerminal> {
        use tokio::signal::unix::{SignalKind, signal};
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        // Handlers first, so that a signal between the two steps still restores.
        let mut streams = Vec::new();
        for (kind, number) in [
            (SignalKind::terminate(), 15),
            (SignalKind::hangup(), 1),
            (SignalKind::quit(), 3),
        ] {
            streams.push((signal(kind)?, number));
        }
        let restore_to = saved.clone();
        let signals = tokio::spawn(async move {
            let waits = streams.iter_mut().map(|(stream, number)| {
                let number = *number;
                Box::pin(async move {
                    stream.recv().await;
                    number
                })
            });
            let (number, _, _) = futures_util::future::select_all(waits).await;
            restore(&restore_to);
            std::process::exit(128 + number);
        });
        rustix::termios::tcsetattr(stdin.as_fd(), rustix::termios::OptionalActions::Now, &raw)?;
        Ok(RawTerminal {
            saved,
            signals: Some(signals),
        })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        restore(&self.saved);
        if let Some(task) = self.signals.take() {
            task.abort();
        }
    }
}

/// The terminal size `(height, width)` of stdout (or stdin), if either is a terminal.
pub fn terminal_size() -> Option<(u16, u16)> {
    let size = rustix::termios::tcgetwinsize(std::io::stdout().as_fd())
        .or_else(|_| rustix::termios::tcgetwinsize(std::io::stdin().as_fd()))
        .ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}

/// What a resize applies to.
#[derive(Debug, Clone)]
pub enum ResizeTarget {
    Container(String),
    Exec(String),
}

impl ResizeTarget {
    pub async fn resize(
        &self,
        client: &Client,
        height: u16,
        width: u16,
    ) -> berth_client::Result<()> {
        match self {
            ResizeTarget::Container(id) => client.container_resize(id, height, width).await,
            ResizeTarget::Exec(id) => client.exec_resize(id, height, width).await,
        }
    }
}

/// Sends the current size, retrying briefly as docker does (the process may not be up yet),
/// then follows SIGWINCH until the task is aborted.
pub fn monitor_size(client: Client, target: ResizeTarget) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Some((h, w)) = terminal_size() {
            for attempt in 0..5 {
                if target.resize(&client, h, w).await.is_ok() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
            }
        }
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some((h, w)) = terminal_size() {
                let _ = target.resize(&client, h, w).await;
            }
        }
    })
}

/// Forwards the signals a user sends to the CLI to the container (`--sig-proxy`), until
/// aborted.
pub fn proxy_signals(client: Client, container: String) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let kinds = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::quit(), "SIGQUIT"),
            (SignalKind::user_defined1(), "SIGUSR1"),
            (SignalKind::user_defined2(), "SIGUSR2"),
        ];
        let (tx, mut rx) = mpsc::unbounded_channel();
        for (kind, name) in kinds {
            let Ok(mut stream) = signal(kind) else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(name).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        while let Some(name) = rx.recv().await {
            let _ = client.container_kill(&container, Some(name)).await;
        }
    })
}

/// How the session should treat the streams.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Copy local stdin into the connection.
    pub stdin: bool,
    /// The stream is raw (TTY), not multiplexed.
    pub tty: bool,
    /// The detach sequence; empty disables detaching.
    pub detach_keys: Vec<u8>,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The output stream ended.
    Ended,
    /// The user typed the detach sequence.
    Detached,
}

/// Local stdin read on its own thread: a blocking read must not hold up the runtime's
/// shutdown, and an interactive terminal is best read with plain blocking reads.
fn stdin_channel() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

fn write_out(kind: StreamKind, bytes: &[u8]) -> std::io::Result<()> {
    match kind {
        StreamKind::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(bytes)?;
            err.flush()
        }
        _ => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()
        }
    }
}

/// An interactive session with a container or an exec: follows the local terminal's size when
/// there is a tty, forwards signals to `proxy_signals_to` when given, runs the session, then
/// stops those helpers and restores the local terminal (`raw`), on every path.
pub async fn interact(
    client: &Client,
    target: ResizeTarget,
    hijacked: Hijacked,
    options: SessionOptions,
    proxy_signals_to: Option<String>,
    raw: Option<RawTerminal>,
) -> Result<SessionEnd> {
    let resize = (options.tty && std::io::stdout().is_terminal())
        .then(|| monitor_size(client.clone(), target));
    let signals = proxy_signals_to.map(|container| proxy_signals(client.clone(), container));
    let end = run_session(hijacked, options).await;
    drop(raw);
    for task in [resize, signals].into_iter().flatten() {
        task.abort();
    }
    end
}

/// Joins local stdio and the hijacked connection until the output ends or the user detaches.
/// When stdin ends, the connection's write side is shut down and output keeps flowing.
pub async fn run_session(hijacked: Hijacked, options: SessionOptions) -> Result<SessionEnd> {
    let tty = options.tty;
    let (reader, mut writer) = hijacked.into_split();
    let output = tokio::spawn(async move {
        if tty {
            let mut reader = reader;
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                write_out(StreamKind::Stdout, &buf[..n])?;
            }
        } else {
            let mut demux = Demuxer::new(reader);
            while let Some((kind, payload)) = demux.next_frame().await? {
                if kind == StreamKind::SystemError {
                    write_out(StreamKind::Stderr, &payload)?;
                } else {
                    write_out(kind, &payload)?;
                }
            }
            Ok(())
        }
    });
    let (detach_tx, mut detach_rx) = mpsc::channel::<()>(1);
    let input = options.stdin.then(|| {
        // As Docker: only a terminal's input is scanned for the detach sequence; without one
        // every byte is the process's data.
        let keys = if tty {
            options.detach_keys.clone()
        } else {
            Vec::new()
        };
        tokio::spawn(async move {
            let mut stdin = stdin_channel();
            let mut scanner = DetachScanner::new(keys);
            while let Some(chunk) = stdin.recv().await {
                match scanner.scan(&chunk) {
                    Scan::Forward(bytes) => {
                        if writer.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Scan::Detach(bytes) => {
                        let _ = writer.write_all(&bytes).await;
                        let _ = detach_tx.send(()).await;
                        return;
                    }
                }
                let _ = writer.flush().await;
            }
            // stdin ended: half-close, keep reading output.
            let _ = writer.shutdown().await;
        })
    });
    let mut output = output;
    let end = tokio::select! {
        result = &mut output => {
            match result {
                Ok(Ok(())) => SessionEnd::Ended,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => SessionEnd::Ended,
                Ok(Err(e)) => {
                    if let Some(input) = &input {
                        input.abort();
                    }
                    return Err(StatusError::error(1, format!("error reading the container's output: {e}")));
                }
                Err(e) => return Err(anyhow::anyhow!("output task failed: {e}")),
            }
        }
        Some(()) = detach_rx.recv() => {
            output.abort();
            SessionEnd::Detached
        }
    };
    if let Some(input) = input {
        input.abort();
    }
    Ok(end)
}

/// Is stdin a terminal (for `-t` with `-i`)?
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_detach_keys_like_docker() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(
            parse_detach_keys("a,ctrl-@,ctrl-[").unwrap(),
            vec![b'a', 0, 27]
        );
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("ab").is_err());
    }

    #[test]
    fn scanner_detaches_on_the_sequence_and_passes_everything_else() {
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.scan(b"ls\n"), Scan::Forward(b"ls\n".to_vec()));
        // A sequence split across reads.
        assert_eq!(s.scan(&[b'x', 16]), Scan::Forward(b"x".to_vec()));
        assert_eq!(s.scan(&[17, b'y']), Scan::Detach(vec![]));
        // A held prefix that breaks is passed on with the breaking byte.
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.scan(&[16]), Scan::Forward(vec![]));
        assert_eq!(s.scan(b"a"), Scan::Forward(vec![16, b'a']));
        // ctrl-p ctrl-p ctrl-q: the first ctrl-p goes through, the next two detach.
        assert_eq!(s.scan(&[16, 16, 17]), Scan::Detach(vec![16]));
        // No keys: nothing is held.
        let mut s = DetachScanner::new(vec![]);
        assert_eq!(s.scan(&[16, 17]), Scan::Forward(vec![16, 17]));
    }
}
