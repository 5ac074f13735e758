//! A context tar streamed as a request body: written by a blocking thread (the tar writer is
//! synchronous) into a bounded channel the request reads, so a big context is never held
//! whole. Used by `berth build` and `compose build`.

use std::io::Write;

use berth_client::UploadStream;
use bytes::Bytes;

/// A `Write` that hands full buffers to the request body, so the tar is produced by a
/// blocking thread while the request streams it (no whole-context buffering).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

const CHUNK: usize = 256 * 1024;

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.sent
            .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the daemon stopped reading the context",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Runs `produce` on a blocking thread, streaming what it writes (gzipped with
/// `--compress`); its error ends the stream.
pub fn tar_stream(
    compress: bool,
    produce: impl FnOnce(&mut dyn Write) -> std::io::Result<()> + Send + 'static,
) -> (UploadStream, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut w = ChannelWriter {
        tx: tx.clone(),
        buf: Vec::with_capacity(CHUNK),
        sent: sent.clone(),
    };
    tokio::task::spawn_blocking(move || {
        let result = if compress {
            let mut gz = flate2::write::GzEncoder::new(&mut w, flate2::Compression::fast());
            produce(&mut gz).and_then(|_| gz.finish()).map(|_| ())
        } else {
            produce(&mut w)
        };
        if let Err(e) = result.and_then(|_| w.flush()) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    (Box::pin(tokio_stream_from(rx)), sent)
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
