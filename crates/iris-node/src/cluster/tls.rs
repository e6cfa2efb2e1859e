//! TLS between nodes (`[cluster.tls]`): every link is TLS 1.3, and both ends present a
//! certificate of the cluster's CA. A node dialling `n2` checks that the certificate it gets
//! names `n2` (a DNS subject alternative name), so a node cannot be impersonated by another
//! holder of a cluster certificate; the cookie is checked inside the TLS session as well.
//!
//! iris accepts the connections itself rather than through ractor_cluster's listener: that one
//! awaits each TLS handshake inside its accept loop, with no time limit, so one client that
//! connects and stays silent would stop every later node from connecting. Here each handshake
//! runs on its own task, bounded by [`HANDSHAKE_TIMEOUT`], and only a finished one is handed to
//! the node server. (The node server's own listener is then moved to a loopback port, and it
//! too requires TLS.)

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use iris_api::{ApiCode, ApiError};
use iris_core::config::cluster::{ClusterTls, NodeName};
use ractor::ActorRef;
use ractor_cluster::{IncomingEncryptionMode, NetworkStream, NodeServerMessage};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a connecting node may take over its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// This node's TLS identity and trust, ready to accept and to dial.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the certificate, key and CA of `[cluster.tls]`.
    pub fn load(tls: &ClusterTls) -> Result<Tls, ApiError> {
        let certs = certificates(&tls.cert, "cert")?;
        let key = PrivateKeyDer::from_pem_file(&tls.key)
            .map_err(|e| unreadable(&tls.key, "key", &e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in certificates(&tls.ca, "ca")? {
            roots
                .add(ca)
                .map_err(|e| unreadable(&tls.ca, "ca", &e.to_string()))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let invalid = |what: &str, e: rustls::Error| {
            ApiError::new(
                iris_core::ErrorCode::ConfigError,
                format!("[cluster.tls]: {what}: {e}; check that cert, key and ca belong together"),
            )
        };
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| {
            ApiError::new(
                iris_core::ErrorCode::ConfigError,
                format!("[cluster.tls] ca: cannot verify peers with it: {e}"),
            )
        })?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| invalid("the TLS versions", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| invalid("this node's certificate and key", e))?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| invalid("the TLS versions", e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| invalid("this node's certificate and key", e))?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// The mode the node server's own listener uses: TLS too, so it is no way around ours.
    pub fn incoming(&self) -> IncomingEncryptionMode {
        IncomingEncryptionMode::Tls(self.acceptor.clone())
    }

    /// Accepts nodes on `listener` until the task is aborted: each handshake on a task of its
    /// own, bounded by [`HANDSHAKE_TIMEOUT`]; a finished one goes to `server`.
    pub async fn accept(self, listener: TcpListener, server: ActorRef<NodeServerMessage>) {
        let mut handshakes = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                Some(_) = handshakes.join_next(), if !handshakes.is_empty() => continue,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "could not accept a node's connection");
                    // Out of descriptors, say: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, server) = (self.acceptor.clone(), server.clone());
            handshakes.spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&acceptor, stream)).await
                {
                    Ok(Ok(opened)) => {
                        let _ = server.cast(NodeServerMessage::ConnectionOpened {
                            stream: Box::new(opened),
                            is_server: true,
                        });
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%peer, %error, "refused a node's connection: its TLS handshake failed");
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "refused a node's connection: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
                    }
                }
            });
        }
    }

    /// Dials node `name` at `address` and hands the TLS session to `server`. The peer's
    /// certificate must name `name`.
    pub async fn dial(
        &self,
        server: &ActorRef<NodeServerMessage>,
        name: &NodeName,
        address: SocketAddr,
    ) -> Result<(), String> {
        let domain = ServerName::try_from(name.to_string())
            .map_err(|e| format!("node name {name} is not usable as a TLS server name: {e}"))?;
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (peer_addr, local_addr) = (
            stream.peer_addr().map_err(|e| e.to_string())?,
            stream.local_addr().map_err(|e| e.to_string())?,
        );
        let stream = self
            .connector
            .connect(domain, stream)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        server
            .cast(NodeServerMessage::ConnectionOpened {
                stream: Box::new(NetworkStream::TlsClient {
                    peer_addr,
                    local_addr,
                    stream,
                }),
                is_server: false,
            })
            .map_err(|e| e.to_string())
    }
}

async fn handshake(acceptor: &TlsAcceptor, stream: TcpStream) -> std::io::Result<NetworkStream> {
    let _ = stream.set_nodelay(true);
    let (peer_addr, local_addr) = (stream.peer_addr()?, stream.local_addr()?);
    let stream = acceptor.accept(stream).await?;
    Ok(NetworkStream::TlsServer {
        peer_addr,
        local_addr,
        stream,
    })
}

/// The certificates of a PEM file (at least one).
fn certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, ApiError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(path, key, &e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(path, key, &e.to_string()))?;
    if certs.is_empty() {
        return Err(unreadable(path, key, "it holds no PEM certificate"));
    }
    Ok(certs)
}

fn unreadable(path: &Path, key: &str, why: &str) -> ApiError {
    ApiError::new(
        ApiCode::from(iris_core::ErrorCode::ConfigError),
        format!(
            "[cluster.tls] {key} = {}: cannot use it: {why}; give a PEM file this node can read",
            path.display()
        ),
    )
}
