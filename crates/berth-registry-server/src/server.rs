//! The listener: one accept loop with a bounded number of connections, each connection on a
//! shared `TaskTracker`, TLS when configured, and a graceful stop on cancellation (the shape
//! of berthd's `server.rs`). Background tasks: upload expiry and scheduled GC.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::config::TlsConfig;
use crate::registry::Registry;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 4096;
/// How long in-flight requests get to finish after a stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often abandoned uploads are looked for.
const EXPIRY_EVERY: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
}

pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .fallback(crate::http::handle)
        .with_state(registry)
}

fn tls_acceptor(tls: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| ServeError::Tls(format!("certificate {}: {e}", tls.cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| ServeError::Tls(format!("key {}: {e}", tls.key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ServeError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| ServeError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Binds `addr`; returns the listener and the address it got (for `:0`).
pub async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    Ok((listener, local))
}

/// Serves until `shutdown` is cancelled, then lets in-flight requests finish.
pub async fn serve(
    registry: Arc<Registry>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let tls = registry.config.tls.as_ref().map(tls_acceptor).transpose()?;
    let app = router(registry.clone());
    let tracker = TaskTracker::new();
    tracker.spawn(background(registry.clone(), shutdown.clone()));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, shutdown, tls) = (app.clone(), shutdown.clone(), tls.clone());
        tracker.spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(stream, app, shutdown).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => serve_connection(s, app, shutdown).await,
                    Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
                },
            }
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish in time; exiting anyway");
    }
    Ok(())
}

async fn serve_connection<IO>(io: IO, app: Router, shutdown: CancellationToken)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let app = app.clone();
        async move {
            let (parts, body) = req.into_parts();
            // What a refused request left unread is drained so the client sees the answer:
            // at most 64 MiB, and 10 s in all (a client trickling its body gets no more).
            let (body, unread) = berth_http::TrackedBody::new(body);
            let response = app
                .oneshot(hyper::Request::from_parts(parts, Body::new(body)))
                .await;
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                berth_http::drain(&unread, 64 << 20, Duration::from_secs(10)),
            )
            .await;
            response
        }
    });
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(60))
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Expires abandoned uploads, and runs the scheduled GC, until shutdown.
async fn background(registry: Arc<Registry>, shutdown: CancellationToken) {
    let max_age = Duration::from_secs(registry.config.upload_max_age_secs);
    let expiry_every = EXPIRY_EVERY.min(max_age.max(Duration::from_secs(1)));
    let gc_every = registry.config.gc.interval_secs.map(Duration::from_secs);
    let mut next_expiry = tokio::time::Instant::now() + expiry_every;
    let mut next_gc = gc_every.map(|d| tokio::time::Instant::now() + d);
    loop {
        let wake = next_gc.map_or(next_expiry, |g| g.min(next_expiry));
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(wake) => {}
        }
        let now = tokio::time::Instant::now();
        if now >= next_expiry {
            next_expiry = now + expiry_every;
            let r = registry.clone();
            let result = crate::http::blocking(move || r.uploads.expire(&r.store, max_age)).await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "expiring uploads failed");
            }
        }
        if let (Some(at), Some(every)) = (next_gc, gc_every)
            && now >= at
        {
            next_gc = Some(now + every);
            let r = registry.clone();
            match crate::http::blocking(move || crate::gc::collect(&r.store, &r.config.gc)).await {
                Ok(report) => tracing::info!(?report, "garbage collection done"),
                Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
            }
        }
    }
}
