//! Hijacked connections for attach and exec start: the request asks for `Upgrade: tcp`; the
//! daemon answers `101 Switching Protocols` (or, as old Docker daemons do, `200 OK`) and the
//! connection then carries the container's raw streams both ways.
//!
//! The exchange is written by hand on the socket rather than through hyper so that both
//! answers work and the caller gets the socket's own halves: shutting down the write half
//! half-closes the connection (stdin ended) while output keeps arriving on the read half.

use std::io::Cursor;
use std::pin::Pin;

use berth_api::stream::{FrameDecoder, StreamKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::connect::Endpoint;
use crate::{Error, Result};

/// The longest response head accepted before the stream starts.
const MAX_HEAD: usize = 64 * 1024;

pub(crate) struct HijackOptions<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    /// A JSON body (exec start), or none.
    pub body: Option<&'a [u8]>,
    /// The `Upgrade` protocol (`tcp` for attach and exec, `h2c` for a build session).
    pub upgrade: &'a str,
    /// More request headers.
    pub headers: &'a [(&'a str, &'a str)],
}

/// The read side of a hijacked connection (bytes that arrived with the response head first).
pub type HijackReader = Pin<Box<dyn AsyncRead + Send>>;
/// The write side; `shutdown()` half-closes the connection.
pub type HijackWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// A hijacked connection.
pub struct Hijacked {
    pub reader: HijackReader,
    pub writer: HijackWriter,
    /// The daemon answered `101 Switching Protocols` (not the legacy `200`).
    pub upgraded: bool,
    /// The response's `Content-Type` (`application/vnd.docker.multiplexed-stream` or
    /// `application/vnd.docker.raw-stream`), if sent.
    pub content_type: Option<String>,
}

impl Hijacked {
    /// Splits into the two halves.
    pub fn into_split(self) -> (HijackReader, HijackWriter) {
        (self.reader, self.writer)
    }
}

/// A raw connection to the daemon as two halves (`system dial-stdio`): shutting the writer
/// down half-closes it, whatever carries it.
pub(crate) async fn dial(endpoint: &Endpoint) -> Result<(HijackReader, HijackWriter)> {
    let (r, w) = tokio::io::split(endpoint.connect().await?);
    Ok((Box::pin(r), Box::pin(w)))
}

pub(crate) async fn hijack(endpoint: &Endpoint, options: HijackOptions<'_>) -> Result<Hijacked> {
    let host = &endpoint.host;
    let (mut reader, mut writer) = dial(endpoint).await?;
    let body = options.body.unwrap_or_default();
    let content_type = if options.body.is_some() {
        "application/json"
    } else {
        "text/plain"
    };
    let extra: String = options
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "{} {} HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: Berth-Client/{}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: Upgrade\r\n\
         Upgrade: {}\r\n\r\n",
        options.method,
        options.path_and_query,
        env!("CARGO_PKG_VERSION"),
        body.len(),
        options.upgrade
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    writer.write_all(&request).await?;
    writer.flush().await?;

    let http_error = |message: String| Error::Http {
        host: host.to_string(),
        message,
    };
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buffer.len() > MAX_HEAD {
            return Err(http_error("response head too long".to_string()));
        }
        let mut chunk = [0u8; 4096];
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Err(http_error(
                "the daemon closed the connection before answering".to_string(),
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = ResponseHead::parse(&buffer[..head_end])
        .ok_or_else(|| http_error("malformed response head".to_string()))?;
    let rest = buffer.split_off(head_end);
    if head.status == 101 || head.status == 200 {
        let content_type = head.header("content-type").map(str::to_string);
        return Ok(Hijacked {
            reader: Box::pin(Cursor::new(rest).chain(reader)),
            writer,
            upgraded: head.status == 101,
            content_type,
        });
    }
    // An error: read its body and decode Docker's `{"message": ...}`.
    let mut body = rest;
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    match head
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(len) => {
            while body.len() < len {
                let mut chunk = [0u8; 4096];
                let n = reader.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
        }
        None => {
            // Until the daemon closes (chunked bodies end with a 0-length chunk).
            loop {
                if chunked && body.windows(5).any(|w| w == b"0\r\n\r\n") {
                    break;
                }
                let mut chunk = [0u8; 4096];
                let n = reader.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            if chunked {
                body = dechunk(&body);
            }
        }
    }
    let status =
        http::StatusCode::from_u16(head.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    Err(Error::Api(crate::api_error(status, &body)))
}

struct ResponseHead {
    status: u16,
    headers: Vec<(String, String)>,
}

impl ResponseHead {
    fn parse(bytes: &[u8]) -> Option<ResponseHead> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next()?;
        let mut parts = status_line.splitn(3, ' ');
        if !parts.next()?.starts_with("HTTP/1.") {
            return None;
        }
        let status = parts.next()?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some(ResponseHead { status, headers })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = i + 2;
        let end = (start + size).min(body.len());
        out.extend_from_slice(&body[start..end]);
        body = &body[(end + 2).min(body.len())..];
    }
    out
}

/// Reads multiplexed frames off a hijacked (or any) reader.
pub struct Demuxer<R> {
    reader: R,
    decoder: FrameDecoder,
}

impl<R: AsyncRead + Unpin> Demuxer<R> {
    pub fn new(reader: R) -> Self {
        Demuxer {
            reader,
            decoder: FrameDecoder::new(),
        }
    }

    /// The next frame; `None` at the end of the stream. Bytes of an incomplete final frame are
    /// dropped, as Docker's `stdcopy` does.
    pub async fn next_frame(&mut self) -> std::io::Result<Option<(StreamKind, Vec<u8>)>> {
        loop {
            if let Some(frame) = self
                .decoder
                .next_frame()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
            {
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 32 * 1024];
            let n = self.reader.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.decoder.push(&chunk[..n]);
        }
    }
}
