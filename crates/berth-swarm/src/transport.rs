//! The cluster transport: mutual TLS (rustls) on the swarm listen address, carrying
//! length-prefixed JSON request/answer frames over long-lived connections.
//!
//! Why not gRPC or HTTP: every call is one request and one answer between two berthd, so a
//! frame (4-byte big-endian length, then JSON) on a kept-alive TLS connection is all the
//! protocol needed; no codegen (tonic needs protoc), no HTTP layer to configure, and Raft's
//! heartbeats reuse one connection per peer instead of a handshake each.
//!
//! Who calls is decided by the peer's certificate, checked on every call: node certificates
//! come from the cluster CA (`pki`), name the node ID and its role both in the subject (CN, OU,
//! O = cluster, as swarmkit) and as DNS names; the server verifies the chain during the
//! handshake and the role and node ID with webpki's name check. Only `GetCa` and `Join` work
//! without a certificate (a joining node has none yet).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::BoxFuture;

pub const MANAGER_ROLE: &str = "swarm-manager";
pub const WORKER_ROLE: &str = "swarm-worker";
/// Frames above this are refused (a snapshot of thousands of tasks is a few MiB).
const MAX_FRAME: usize = 256 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A call from one node to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// The cluster's root CA certificate (PEM); no client certificate needed.
    GetCa,
    /// A node certificate for the holder of a join token; no client certificate needed.
    Join(crate::join::JoinRequest),
    /// A worker's (or manager's agent's) session: status reports in, assignments out.
    Sync(crate::dispatcher::SyncRequest),
    /// Raft between managers (openraft's messages).
    Raft(crate::raft_network::RaftCall),
    /// A write a follower forwards to the leader.
    Forward(crate::store::Command),
    /// A change of the managers (a manager joining or leaving), for the leader.
    Membership(crate::raft_network::MembershipCall),
    /// A manager asks the node running a task for its container's log lines (a stream:
    /// see [`Request::is_stream`]).
    TaskLogs(Box<crate::logs::LogsCall>),
    /// A new certificate for the calling node (renewal, root rotation).
    Renew(crate::rotation::RenewRequest),
    /// A node's plain container joins or leaves an attachable network (the manager's
    /// allocator gives the address: see `attach.rs`).
    Attachment(crate::attach::AttachmentCall),
    /// A manager without a leader asks the leader for its own node object (a demotion it
    /// missed while cut off: `manager/demoted.rs`).
    OwnNode(String),
}

impl Request {
    /// Calls answered by a stream of frames rather than one answer: each frame is
    /// `Some(answer)`, the last `None`; the connection then closes.
    pub fn is_stream(&self) -> bool {
        matches!(self, Request::TaskLogs(_))
    }
}

/// An error as the remote node answered it; `kind` lets the caller react (e.g. `not_leader`).
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub kind: String,
    pub message: String,
}

impl RemoteError {
    pub fn new(kind: &str, message: impl Into<String>) -> RemoteError {
        RemoteError {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Remote(RemoteError),
    #[error("{addr}: {error}")]
    Io { addr: String, error: String },
}

/// What a node answers a call with.
pub type Answer = Result<Value, RemoteError>;

/// The peer of a call, as its certificate proved it.
pub struct Peer {
    cert: Option<CertificateDer<'static>>,
}

impl Peer {
    /// Checks that the peer's certificate names `node_id` and (when given) `role`.
    pub fn authorize(&self, node_id: &str, role: Option<&str>) -> Result<(), RemoteError> {
        let denied = || {
            RemoteError::new(
                "permission_denied",
                format!(
                    "Permission denied: unauthorized peer role: {}",
                    role.unwrap_or("node")
                ),
            )
        };
        let cert = self.cert.as_ref().ok_or_else(denied)?;
        let ee = webpki::EndEntityCert::try_from(cert).map_err(|_| denied())?;
        let names = std::iter::once(node_id).chain(role);
        for name in names {
            let name = ServerName::try_from(name.to_string()).map_err(|_| denied())?;
            ee.verify_is_valid_for_subject_name(&name)
                .map_err(|_| denied())?;
        }
        Ok(())
    }

    /// Whether the peer holds a manager certificate (its node ID is not checked).
    pub fn is_manager(&self) -> bool {
        let Some(cert) = self.cert.as_ref() else {
            return false;
        };
        webpki::EndEntityCert::try_from(cert).is_ok_and(|ee| {
            ServerName::try_from(MANAGER_ROLE)
                .is_ok_and(|n| ee.verify_is_valid_for_subject_name(&n).is_ok())
        })
    }
}

/// Answers calls on a manager.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, peer: Peer, req: Request) -> BoxFuture<'_, Answer>;
    /// Answers a streaming call ([`Request::is_stream`]) with answers sent to `tx`, until
    /// the end of the stream or until `tx` is closed (the caller went).
    fn stream(
        &self,
        _peer: Peer,
        _req: Request,
        tx: tokio::sync::mpsc::Sender<Answer>,
    ) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = tx
                .send(Err(RemoteError::new(
                    "unsupported",
                    "this node takes no such call",
                )))
                .await;
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    Ok(roots)
}

fn chain_and_key(
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    Ok((certs, key))
}

/// The server side: the node's certificate; clients may present one of the CA's.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca_pem)?),
        provider(),
    )
    .allow_unauthenticated()
    .build()?;
    let (certs, key) = chain_and_key(cert_pem, key_pem)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// The client side: servers must hold a manager certificate of the CA; `identity` is this
/// node's own (none while joining).
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?);
    let config = match identity {
        Some((cert, key)) => {
            let (certs, key) = chain_and_key(cert, key)?;
            builder.with_client_auth_cert(certs, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Trusts any server: only to fetch the CA a joining node then checks against its token's
/// digest (swarmkit's `GetRemoteCA` does the same).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client that trusts any server, for [`Request::GetCa`] only.
pub fn insecure_client_config() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider())))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    value: &impl Serialize,
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value)?;
    w.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    w.write_all(&bytes).await?;
    w.flush().await
}

async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(r: &mut R) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes refused"
        )));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(serde_json::from_slice(&buf)?)
}

/// Accepts connections until `stop`; each connection answers its calls one after another.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handler: Arc<dyn Handler>,
    stop: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "swarm listener accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, handler, stop) = (acceptor.clone(), handler.clone(), stop.clone());
        tokio::spawn(async move {
            let Ok(Ok(mut tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned());
            loop {
                let req: Request = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = read_frame(&mut tls) => match r {
                        Ok(req) => req,
                        Err(_) => return,
                    },
                };
                let peer = Peer { cert: cert.clone() };
                if req.is_stream() {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = serve_stream(handler.as_ref(), peer, req, &mut tls) => {}
                    }
                    return;
                }
                let answer = handler.handle(peer, req).await;
                if write_frame(&mut tls, &answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// One streaming call: the handler's answers as `Some` frames, then `None`. A write that
/// fails (the caller went) drops the receiver, which ends the handler's stream.
async fn serve_stream<S: AsyncWrite + Unpin>(
    handler: &dyn Handler,
    peer: Peer,
    req: Request,
    conn: &mut S,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Answer>(16);
    let produce = handler.stream(peer, req, tx);
    let forward = async move {
        while let Some(answer) = rx.recv().await {
            if write_frame(conn, &Some(answer)).await.is_err() {
                return None;
            }
        }
        Some(conn)
    };
    let (_, conn) = tokio::join!(produce, forward);
    if let Some(conn) = conn {
        let _ = write_frame(conn, &None::<Answer>).await;
    }
}

/// Opens a connection of its own to `addr` (whose certificate must name `server_name`: a
/// node ID or a role), makes the streaming call `req` and hands back the answers as they
/// come; dropping the receiver closes the connection, which ends the remote's stream.
pub async fn open_stream(
    config: Arc<rustls::ClientConfig>,
    addr: &str,
    server_name: &str,
    req: &Request,
) -> Result<tokio::sync::mpsc::Receiver<Answer>, CallError> {
    let io = |e: String| CallError::Io {
        addr: addr.to_string(),
        error: e,
    };
    let mut conn = connect_to(&config, addr, server_name, CONNECT_TIMEOUT).await?;
    write_frame(&mut conn, req)
        .await
        .map_err(|e| io(e.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Answer>(16);
    let addr = addr.to_string();
    tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                _ = tx.closed() => return,
                f = read_frame::<_, Option<Answer>>(&mut conn) => f,
            };
            match frame {
                Ok(Some(answer)) => {
                    if tx.send(answer).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx
                        .send(Err(RemoteError::new(
                            "io",
                            format!("{addr}: stream broken: {e}"),
                        )))
                        .await;
                    return;
                }
            }
        }
    });
    Ok(rx)
}

type Conn = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect_to(
    config: &Arc<rustls::ClientConfig>,
    addr: &str,
    server_name: &str,
    within: Duration,
) -> Result<Conn, CallError> {
    let io = |e: String| CallError::Io {
        addr: addr.to_string(),
        error: e,
    };
    let within = within.min(CONNECT_TIMEOUT);
    let tcp = tokio::time::timeout(within, TcpStream::connect(addr))
        .await
        .map_err(|_| io("connection timed out".into()))?
        .map_err(|e| io(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| io(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    tokio::time::timeout(within, connector.connect(name, tcp))
        .await
        .map_err(|_| io("TLS handshake timed out".into()))?
        .map_err(|e| io(e.to_string()))
}

/// Calls other nodes, keeping one connection per address (calls to one address queue).
pub struct Client {
    config: Arc<rustls::ClientConfig>,
    conns: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Conn>>>>>,
}

impl Client {
    pub fn new(config: Arc<rustls::ClientConfig>) -> Client {
        Client {
            config,
            conns: Default::default(),
        }
    }

    async fn connect(&self, addr: &str, within: Duration) -> Result<Conn, CallError> {
        connect_to(&self.config, addr, MANAGER_ROLE, within).await
    }

    /// The TLS configuration its calls use (this node's identity).
    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// One call, answered within `timeout`; a kept connection that turns out dead is
    /// replaced once.
    pub async fn call(
        &self,
        addr: &str,
        req: &Request,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let slot = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr.to_string())
            .or_default()
            .clone();
        let mut guard = tokio::time::timeout(timeout, slot.lock())
            .await
            .map_err(|_| CallError::Io {
                addr: addr.into(),
                error: "busy".into(),
            })?;
        for attempt in 0..2 {
            let reused = guard.is_some();
            let mut conn = match guard.take() {
                Some(c) => c,
                None => self.connect(addr, timeout).await?,
            };
            let exchange = async {
                write_frame(&mut conn, req).await?;
                read_frame::<_, Answer>(&mut conn).await
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(Ok(answer)) => {
                    *guard = Some(conn);
                    return answer.map_err(CallError::Remote);
                }
                Ok(Err(e)) if reused && attempt == 0 => {
                    tracing::debug!(addr, error = %e, "kept connection dead; reconnecting");
                }
                Ok(Err(e)) => {
                    return Err(CallError::Io {
                        addr: addr.into(),
                        error: e.to_string(),
                    });
                }
                Err(_) => {
                    return Err(CallError::Io {
                        addr: addr.into(),
                        error: "no answer in time".into(),
                    });
                }
            }
        }
        Err(CallError::Io {
            addr: addr.into(),
            error: "connection lost".into(),
        })
    }

    /// Forgets kept connections (after this node's certificate changed).
    pub fn reset(&self) {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// A typed call: the answer decoded as `T`.
pub async fn call_as<T: DeserializeOwned>(
    client: &Client,
    addr: &str,
    req: &Request,
    timeout: Duration,
) -> Result<T, CallError> {
    let v = client.call(addr, req, timeout).await?;
    serde_json::from_value(v).map_err(|e| CallError::Io {
        addr: addr.into(),
        error: format!("bad answer: {e}"),
    })
}
