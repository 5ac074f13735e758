//! Incremental decoding of streamed responses: raw byte chunks and newline-delimited JSON.

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use futures_util::stream;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// The data chunks of a response body, as they arrive.
pub fn bytes_stream(body: Incoming) -> impl Stream<Item = Result<Bytes>> + Send {
    stream::unfold(Some(body), |state| async move {
        let mut body = state?;
        loop {
            match body.frame().await {
                None => return None,
                Some(Err(e)) => {
                    return Some((Err(Error::Io(std::io::Error::other(e))), None));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if data.is_empty() {
                            continue;
                        }
                        return Some((Ok(data), Some(body)));
                    }
                }
            }
        }
    })
}

/// Newline-delimited JSON objects (Docker also concatenates objects without newlines in some
/// streams; both are handled by decoding value by value).
pub fn json_stream<T: DeserializeOwned + Send + 'static>(
    body: Incoming,
    what: &'static str,
) -> impl Stream<Item = Result<T>> + Send {
    let chunks = Box::pin(bytes_stream(body));
    stream::unfold(
        (chunks, BytesMut::new(), false),
        move |(mut chunks, mut buffer, mut ended)| async move {
            use futures_util::StreamExt;
            loop {
                // Decode one complete value from the front of the buffer, if there is one.
                let text_start = buffer
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .unwrap_or(buffer.len());
                let _ = buffer.split_to(text_start);
                if !buffer.is_empty() {
                    let mut values = serde_json::Deserializer::from_slice(&buffer)
                        .into_iter::<serde_json::Value>();
                    match values.next() {
                        Some(Ok(value)) => {
                            let used = values.byte_offset();
                            let _ = buffer.split_to(used);
                            let item = crate::decode_value::<T>(value, what);
                            return Some((item, (chunks, buffer, ended)));
                        }
                        Some(Err(e)) if e.is_eof() && !ended => {}
                        Some(Err(e)) => {
                            buffer.clear();
                            return Some((
                                Err(Error::Decode {
                                    what: what.to_string(),
                                    source: e,
                                }),
                                (chunks, buffer, true),
                            ));
                        }
                        None => {}
                    }
                }
                if ended {
                    return None;
                }
                match chunks.next().await {
                    Some(Ok(data)) => buffer.extend_from_slice(&data),
                    Some(Err(e)) => return Some((Err(e), (chunks, buffer, true))),
                    None => ended = true,
                }
            }
        },
    )
}
