//! Stall detection by throughput, not by a fixed timeout: a blob stream that delivers fewer
//! than `min_speed` bytes per second, measured over windows of `window`, fails with
//! `TimedOut` (the download then resumes or gives up). A slow but steady download of a big
//! layer is never cut, however long it takes.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::time::Instant;

/// What counts as stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallPolicy {
    /// Bytes per second below which a download is stalled.
    pub min_speed: u64,
    /// The window the speed is measured over (and how long a registry may take to start
    /// answering).
    pub window: Duration,
}

impl Default for StallPolicy {
    fn default() -> Self {
        StallPolicy {
            min_speed: 1024,
            window: Duration::from_secs(30),
        }
    }
}

impl StallPolicy {
    pub(crate) fn error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "download stalled: less than {} bytes/s for {} s",
                self.min_speed,
                self.window.as_secs_f64()
            ),
        )
    }
}

struct State {
    inner: BoxStream<'static, io::Result<Bytes>>,
    policy: StallPolicy,
    window_start: Instant,
    in_window: u64,
    failed: bool,
}

/// Wraps `inner` so that it fails when it stalls.
pub(crate) fn watch(
    inner: BoxStream<'static, io::Result<Bytes>>,
    policy: StallPolicy,
) -> BoxStream<'static, io::Result<Bytes>> {
    let state = State {
        inner,
        policy,
        window_start: Instant::now(),
        in_window: 0,
        failed: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        if s.failed {
            return None;
        }
        let needed = (s.policy.min_speed as f64 * s.policy.window.as_secs_f64()) as u64;
        loop {
            let deadline = s.window_start + s.policy.window;
            match tokio::time::timeout_at(deadline, s.inner.next()).await {
                Ok(Some(Ok(chunk))) => {
                    s.in_window += chunk.len() as u64;
                    if Instant::now() >= deadline {
                        if s.in_window < needed {
                            s.failed = true;
                            return Some((Err(s.policy.error()), s));
                        }
                        s.window_start = Instant::now();
                        s.in_window = 0;
                    }
                    return Some((Ok(chunk), s));
                }
                Ok(Some(Err(e))) => {
                    s.failed = true;
                    return Some((Err(e), s));
                }
                Ok(None) => return None,
                Err(_) => {
                    if s.in_window < needed {
                        s.failed = true;
                        return Some((Err(s.policy.error()), s));
                    }
                    // Enough came in this window; measure the next one.
                    s.window_start = Instant::now();
                    s.in_window = 0;
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(ms: u64, chunk: &'static [u8], n: usize) -> BoxStream<'static, io::Result<Bytes>> {
        futures_util::stream::iter(0..n)
            .then(move |_| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Bytes::from_static(chunk))
            })
            .boxed()
    }

    #[tokio::test]
    async fn a_silent_stream_stalls_and_a_steady_one_does_not() {
        let policy = StallPolicy {
            min_speed: 100,
            window: Duration::from_millis(300),
        };
        // 30 bytes every 100 ms: above 100 bytes/s, for longer than any window.
        let all: Vec<_> = watch(every(100, &[0u8; 30], 10), policy).collect().await;
        assert_eq!(all.len(), 10);
        assert!(all.iter().all(|r| r.is_ok()));

        // One chunk, then nothing.
        let silent = futures_util::stream::iter([Ok(Bytes::from_static(b"x"))])
            .chain(futures_util::stream::pending())
            .boxed();
        let all: Vec<_> = watch(silent, policy).collect().await;
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].as_ref().unwrap_err().kind(), io::ErrorKind::TimedOut);

        // A trickle: 1 byte every 100 ms is below 100 bytes/s.
        let all: Vec<_> = watch(every(100, b"x", 100), policy).collect().await;
        assert!(all.len() < 20, "{}", all.len());
        assert!(all.last().unwrap().is_err());
    }
}
