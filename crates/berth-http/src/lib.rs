//! HTTP serving pieces shared by berthd and `berth registry serve`.
//!
//! A handler that refuses a request (a 404, a bad Content-Type, a digest that does not match)
//! answers without reading the body; hyper would then close the connection with the client
//! still writing, and the client would see "broken pipe" or "connection reset" instead of the
//! answer. Both servers wrap each request body in a [`TrackedBody`], which hands itself back
//! when dropped unread, and [`drain`] the rest (bounded) before the answer goes out.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, Incoming, SizeHint};

/// Where a [`TrackedBody`] dropped unread puts what is left of itself.
pub type UnreadSlot = Arc<Mutex<Option<Incoming>>>;

/// A request body that hands itself back (into its [`UnreadSlot`]) when dropped unread.
pub struct TrackedBody {
    inner: Option<Incoming>,
    unread: UnreadSlot,
}

impl TrackedBody {
    pub fn new(inner: Incoming) -> (TrackedBody, UnreadSlot) {
        let unread = UnreadSlot::default();
        let body = TrackedBody {
            inner: Some(inner),
            unread: unread.clone(),
        };
        (body, unread)
    }
}

impl Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && !inner.is_end_stream()
            && let Ok(mut slot) = self.unread.lock()
        {
            *slot = Some(inner);
        }
    }
}

/// Reads and discards what a handler left of a request body (if anything), up to `limit`
/// bytes, waiting at most `idle` for each piece; past either the connection closes after the
/// answer as it would have anyway.
pub async fn drain(unread: &UnreadSlot, limit: u64, idle: Duration) {
    use http_body_util::BodyExt as _;
    let rest = unread.lock().map(|mut slot| slot.take()).unwrap_or(None);
    let Some(mut body) = rest else {
        return;
    };
    let mut read = 0u64;
    while read <= limit {
        match tokio::time::timeout(idle, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
    tracing::debug!(read, "stopped draining an unread request body");
}
