//! Startup, listeners and shutdown. Order matters: take the data-root lock, write the pidfile,
//! open the stores, and only then bind the sockets — so a socket that answers `/_ping` means a
//! daemon that is ready. On SIGTERM/SIGINT: stop accepting, let in-flight requests finish for a
//! few seconds (long streams such as `/events` end at once), remove the sockets and the pidfile.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use berth_http::TrackedBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::{Config, Host};
use crate::lock::{DataRootLock, LockError};
use crate::state::{Daemon, DaemonError};

/// How long a client has to send a request's head once the connection can take one: a
/// half-sent request (slowloris) or a connection left idle between requests is closed then,
/// so neither holds one of the `--max-connections` slots for good. Long answers (event and log
/// streams, attach) are not affected: no head is awaited while a response is going out.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("cannot write pidfile {path}: {source}")]
    Pidfile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {host}: {source}")]
    Listen {
        host: String,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Userns(String),
}

/// A bound API listener. A tcp one may speak TLS: its connections are handshaken by the
/// connection's own task (a slow client must not hold up the accept loop).
pub enum Listener {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener, Option<tokio_rustls::TlsAcceptor>),
}

impl Listener {
    /// Binds a host. A unix socket's parent directories are created, a stale socket file is
    /// removed (the caller holds the data-root lock, so it is not another daemon's) and the
    /// socket is made `0660`.
    pub async fn bind(
        host: &Host,
        tls: Option<&Arc<rustls::ServerConfig>>,
    ) -> Result<Listener, ServerError> {
        let err = |source| ServerError::Listen {
            host: host.to_string(),
            source,
        };
        match host {
            Host::Unix(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(err)?;
                }
                match std::fs::remove_file(path) {
                    Ok(()) => tracing::info!(path = %path.display(), "removed stale socket"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(err(e)),
                }
                let listener = UnixListener::bind(path).map_err(err)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                    .map_err(err)?;
                Ok(Listener::Unix(listener, path.clone()))
            }
            Host::Tcp(addr) => Ok(Listener::Tcp(
                TcpListener::bind(addr).await.map_err(err)?,
                tls.map(|config| tokio_rustls::TlsAcceptor::from(config.clone())),
            )),
        }
    }

    /// The socket file to remove at shutdown, if any.
    fn socket_path(&self) -> Option<&Path> {
        match self {
            Listener::Unix(_, path) => Some(path),
            Listener::Tcp(..) => None,
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(mut config: Config) -> Result<(), ServerError> {
    // First: a bad certificate or key stops the start before anything is touched.
    let tls = match &config.tls.server {
        Some(server) => Some(crate::tls::server_config(server)?),
        None => None,
    };
    // Then the remap user and its ranges (nothing is created before they are known good),
    // and dockerd's remapped data root, which everything below lives in.
    if let Some(spec) = config.userns_remap.clone() {
        let files = crate::userns::Files::default();
        if let Some(map) =
            crate::userns::setup_remapped_root(&spec, &files).map_err(ServerError::Userns)?
        {
            config.data_root = crate::userns::setup_daemon_root(&config.data_root, &map)
                .map_err(ServerError::Userns)?;
            config.remap = Some(map);
        }
    }
    let _lock = DataRootLock::acquire(&config.data_root)?;
    // Before the pidfile, which may be in it. It stays mounted at exit: shims outlive us.
    match berth_runtime::rootfs::ensure_tmpfs(&config.exec_root) {
        Ok(true) => {
            tracing::info!(dir = %config.exec_root.display(), "mounted a tmpfs on the exec root")
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "exec root stays on its filesystem"),
    }
    write_pidfile(&config.pidfile)?;
    let result = run_locked(config.clone(), tls).await;
    remove_quietly(&config.pidfile);
    result
}

async fn run_locked(
    config: Config,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<(), ServerError> {
    let daemon = Arc::new(Daemon::open(config.clone()).await?);
    // Made once, when missing and there is room (see `disk_reserve`).
    let root = config.data_root.clone();
    let _ = tokio::task::spawn_blocking(move || crate::disk_reserve::ensure(&root)).await;
    let mut listeners = Vec::new();
    for host in &config.hosts {
        listeners.push(Listener::bind(host, tls.as_ref()).await?);
        let secured = match (host, &config.tls.server) {
            (Host::Unix(_), _) | (_, None) => "",
            (_, Some(s)) if s.client_ca.is_some() => " (TLS, client certificates verified)",
            (_, Some(_)) => " (TLS, clients not verified)",
        };
        tracing::info!(%host, "API listening{secured}");
    }
    let sockets: Vec<PathBuf> = listeners
        .iter()
        .filter_map(|l| l.socket_path().map(Path::to_path_buf))
        .collect();
    let shutdown = daemon.shutdown.clone();
    let containers = daemon.ctrs.clone();
    let networks = daemon.networks.clone();
    let swarm = daemon.swarm.clone();
    crate::swarm_events::forward(&daemon).await;
    crate::overlay::spawn(&daemon);
    let signals = wait_for_signal();
    tracing::info!(
        max_connections = config.max_connections,
        header_read_timeout_secs = HEADER_READ_TIMEOUT.as_secs(),
        "API connection limits"
    );
    let server = serve(
        crate::router::app(daemon),
        listeners,
        shutdown.clone(),
        config.max_connections,
    );
    tokio::pin!(server);
    tokio::select! {
        signal = signals => {
            signal?;
            shutdown.cancel();
        }
        () = &mut server => {}
    }
    // New clients get "cannot connect" at once instead of waiting on a socket nobody accepts.
    for socket in &sockets {
        remove_quietly(socket);
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
        tracing::warn!("in-flight requests did not finish in time; exiting anyway");
    }
    // The swarm's loops stop first: no task is started or stopped during the shutdown, and
    // task containers keep running, as other containers do.
    swarm.shutdown().await;
    // Except a rootless daemon's: its namespaces end with it, so the next one could not
    // adopt them.
    if crate::rootless::is_child() {
        crate::rootless::stop_containers(&containers).await;
    }
    // Exits being recorded and auto-removals under way finish; containers keep running.
    // Before the network's: those tasks release endpoints.
    containers.shutdown(SHUTDOWN_GRACE).await;
    // After the requests: none can start networking any more. Running containers keep theirs.
    networks.shutdown().await;
    tracing::info!("daemon shut down");
    Ok(())
}

async fn wait_for_signal() -> Result<(), ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ServerError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Signals)?;
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
        _ = int.recv() => tracing::info!("received SIGINT, shutting down"),
    }
    Ok(())
}

/// Serves `app` on every listener until `shutdown` is cancelled, then waits for the open
/// connections to finish their in-flight requests.
pub async fn serve(
    app: Router,
    listeners: Vec<Listener>,
    shutdown: CancellationToken,
    max_connections: usize,
) {
    let tracker = TaskTracker::new();
    for listener in listeners {
        tracker.spawn(accept_loop(
            listener,
            app.clone(),
            shutdown.clone(),
            tracker.clone(),
            max_connections,
        ));
    }
    tracker.close();
    tracker.wait().await;
}

async fn accept_loop(
    listener: Listener,
    app: Router,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    max_connections: usize,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut warned = false;
    loop {
        if slots.available_permits() == 0 && !warned {
            warned = true;
            tracing::warn!(
                max_connections,
                "all API connection slots are taken by requests in progress or idle connections; new clients wait (see --max-connections)"
            );
        }
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok(Conn::Unix(stream)) => {
                let slot = Slot::new(permit);
                tracker.spawn(serve_connection(
                    stream,
                    app.clone(),
                    shutdown.clone(),
                    slot,
                ));
            }
            Ok(Conn::Tcp(stream, None)) => {
                let _ = stream.set_nodelay(true);
                let slot = Slot::new(permit);
                tracker.spawn(serve_connection(
                    stream,
                    app.clone(),
                    shutdown.clone(),
                    slot,
                ));
            }
            Ok(Conn::Tcp(stream, Some(acceptor))) => {
                let _ = stream.set_nodelay(true);
                let slot = Slot::new(permit);
                let (app, shutdown) = (app.clone(), shutdown.clone());
                tracker.spawn(async move {
                    if let Some(stream) = handshake(acceptor, stream).await {
                        serve_connection(stream, app, shutdown, slot).await;
                    }
                });
            }
            Err(e) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream, Option<tokio_rustls::TlsAcceptor>),
}

async fn accept(listener: &Listener) -> std::io::Result<Conn> {
    match listener {
        Listener::Unix(l, _) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
        Listener::Tcp(l, tls) => l.accept().await.map(|(s, _)| Conn::Tcp(s, tls.clone())),
    }
}

/// The TLS handshake of a new connection, bounded as a request head is (a client that never
/// finishes it gives its slot back). A client refused here (no certificate, one from another
/// CA, an expired one) is logged with its address, as dockerd logs "TLS handshake error".
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let peer = stream.peer_addr().ok();
    let handshake = async {
        // A client speaking plain HTTP to the TLS port (no `--tls`) is told so, in the words
        // of dockerd's (Go's) answer, rather than seeing its connection dropped.
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 1 && first[0].is_ascii_alphabetic() {
            use tokio::io::AsyncWriteExt;
            let mut stream = stream;
            let body = "Client sent an HTTP request to an HTTPS server.\n";
            let answer = format!(
                "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).await?;
            stream.shutdown().await?;
            return Err(std::io::Error::other("plain HTTP on the TLS port"));
        }
        acceptor.accept(stream).await
    };
    match tokio::time::timeout(HEADER_READ_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::info!(peer = ?peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(peer = ?peer, "TLS handshake timed out");
            None
        }
    }
}

/// A connection's place among the `--max-connections`. A connection whose answer is a stream
/// (events, logs, attach, wait, progress) gives its place back when the stream starts: such
/// answers last as long as the client wants, and must not lock short requests out.
#[derive(Clone)]
struct Slot(Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>);

impl Slot {
    fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Slot {
        Slot(Arc::new(std::sync::Mutex::new(Some(permit))))
    }

    fn release(&self) {
        if let Ok(mut permit) = self.0.lock() {
            permit.take();
        }
    }
}

async fn serve_connection<IO>(io: IO, app: Router, shutdown: CancellationToken, slot: Slot)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let app = app.clone();
        let slot = slot.clone();
        async move {
            let (parts, incoming) = req.into_parts();
            let (body, unread) = TrackedBody::new(incoming);
            let response = app
                .oneshot(hyper::Request::from_parts(parts, Body::new(body)))
                .await;
            berth_http::drain(&unread, DRAIN_LIMIT, DRAIN_IDLE).await;
            if let Ok(response) = &response {
                use hyper::body::Body as _;
                let streaming = response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS
                    || response.body().size_hint().exact().is_none();
                if streaming {
                    slot.release();
                }
            }
            response
        }
    });
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .title_case_headers(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// How much of a request body a handler left unread is read and discarded before its answer
/// goes out (see [`berth_http::TrackedBody`]); past this the connection is closed after the answer.
pub const DRAIN_LIMIT: u64 = 256 << 20;

/// How long draining waits for the next piece of an unread body.
const DRAIN_IDLE: Duration = Duration::from_secs(30);

fn write_pidfile(path: &Path) -> Result<(), ServerError> {
    let err = |source| ServerError::Pidfile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    std::fs::write(path, format!("{}\n", std::process::id())).map_err(err)
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove");
    }
}
