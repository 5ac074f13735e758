//! One HTTP/1.1 exchange over a fresh connection (unix socket or tcp). A connection per request
//! keeps the client simple; the daemon is local and connecting costs microseconds.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::{Error, Host, Result};

/// A request body: empty, bytes, or a stream (file or stdin upload).
pub type RequestBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// What a request sends.
pub enum Body {
    Empty,
    Json(Vec<u8>),
    /// A streamed body with its content type (`application/x-tar`).
    Stream {
        content_type: &'static str,
        stream: Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
    },
}

impl Body {
    fn into_parts(self) -> (Option<&'static str>, RequestBody) {
        match self {
            Body::Empty => (
                None,
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            ),
            Body::Json(bytes) => (
                Some("application/json"),
                Full::new(Bytes::from(bytes))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            ),
            Body::Stream {
                content_type,
                stream,
            } => (
                Some(content_type),
                BodyExt::boxed_unsync(StreamBody::new(stream.map(|chunk| chunk.map(Frame::data)))),
            ),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

async fn connect(host: &Host) -> Result<Box<dyn Io>> {
    let connect_error = |source| Error::Connect {
        host: host.to_string(),
        source,
    };
    Ok(match host {
        Host::Unix(path) => Box::new(UnixStream::connect(path).await.map_err(connect_error)?),
        Host::Tcp(addr) => Box::new(TcpStream::connect(addr).await.map_err(connect_error)?),
    })
}

/// Sends one request and returns the response head with its still-streaming body.
pub async fn send(
    host: &Host,
    method: Method,
    path_and_query: &str,
    body: Body,
) -> Result<Response<Incoming>> {
    send_with_headers(host, method, path_and_query, body, &[]).await
}

/// [`send`] with extra request headers (`X-Registry-Auth`).
pub async fn send_with_headers(
    host: &Host,
    method: Method,
    path_and_query: &str,
    body: Body,
    headers: &[(&str, &str)],
) -> Result<Response<Incoming>> {
    let stream = connect(host).await?;
    let http_error = |e: hyper::Error| Error::Http {
        host: host.to_string(),
        message: e.to_string(),
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_error)?;
    tokio::spawn(async move {
        // The connection ends with the exchange; its error, if any, surfaces through the body.
        let _ = connection.await;
    });
    let (content_type, body) = body.into_parts();
    let mut request = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(http::header::HOST, "api.moby.localhost")
        .header(
            http::header::USER_AGENT,
            concat!("Berth-Client/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(content_type) = content_type {
        request = request.header(http::header::CONTENT_TYPE, content_type);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body).map_err(|e| Error::Http {
        host: host.to_string(),
        message: e.to_string(),
    })?;
    sender.send_request(request).await.map_err(http_error)
}
