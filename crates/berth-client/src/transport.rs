//! One HTTP/1.1 exchange over a fresh connection (unix socket, tcp, TLS or ssh; see
//! [`crate::connect`]). A connection per request keeps the client simple; a local daemon's
//! costs microseconds.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;

use crate::connect::Endpoint;
use crate::{Error, Result};

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

/// Sends one request and returns the response head with its still-streaming body.
pub async fn send(
    endpoint: &Endpoint,
    method: Method,
    path_and_query: &str,
    body: Body,
) -> Result<Response<Incoming>> {
    send_with_headers(endpoint, method, path_and_query, body, &[]).await
}

/// [`send`] with extra request headers (`X-Registry-Auth`).
pub async fn send_with_headers(
    endpoint: &Endpoint,
    method: Method,
    path_and_query: &str,
    body: Body,
    headers: &[(&str, &str)],
) -> Result<Response<Incoming>> {
    let host = &endpoint.host;
    let stream = endpoint.connect().await?;
    let http_error = |e: hyper::Error| Error::Http {
        host: host.to_string(),
        message: error_chain(&e),
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

/// An error with its causes: hyper's own text ("connection error") says nothing of why, its
/// source does ("received fatal alert: CertificateRequired").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
