//! Dialling other nodes' ports: one HTTP/2 connection per peer over mutual
//! TLS, reused by every forwarded request. The peer must present the
//! certificate the CA issued to the node it is said to be
//! (`<name>.node.flotilla`), whatever address it reported; this node
//! presents its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;

use crate::credentials::NodeCredentials;

/// Longest wait to connect to a peer and finish the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One open connection: the address it was made to, and its sender.
type Connection = (String, SendRequest<Full<Bytes>>);

/// Why a forwarded request got no answer.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// What went wrong.
    pub message: String,
    /// Whether the request may have reached the node: only then is it unsafe
    /// to send a non-idempotent request (a POST) elsewhere.
    pub maybe_sent: bool,
}

impl SendError {
    fn unsent(message: String) -> Self {
        Self {
            message,
            maybe_sent: false,
        }
    }
}

/// Open connections to other nodes, by node name.
pub struct Peers {
    credentials: Arc<NodeCredentials>,
    connections: Mutex<HashMap<String, Connection>>,
    /// The agent's own runtime: connections are made and driven there even
    /// when a daemon's guest (on the niced guest threads) asks first, since
    /// forwarded http requests share them.
    runtime: Option<tokio::runtime::Handle>,
}

impl Peers {
    /// No connections yet.
    pub fn new(credentials: Arc<NodeCredentials>) -> Self {
        Self {
            credentials,
            connections: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    fn cached(&self, node: &str, address: &str) -> Option<SendRequest<Full<Bytes>>> {
        let connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        connections
            .get(node)
            .filter(|(a, sender)| a == address && !sender.is_closed())
            .map(|(_, sender)| sender.clone())
    }

    async fn connect(&self, node: &str, address: &str) -> Result<SendRequest<Full<Bytes>>, String> {
        let name = ServerName::try_from(flotilla_trust::names::node_server_name(node))
            .map_err(|e| e.to_string())?;
        let config = self.credentials.peer_config();
        let (peer, to) = (node.to_string(), address.to_string());
        let said = peer.clone();
        let connect = async move {
            let tcp = tokio::net::TcpStream::connect(&to)
                .await
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e} (is it node {said}?)"))?;
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())
        };
        let connect = async move {
            let (sender, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| format!("no answer within {CONNECT_TIMEOUT:?}"))??;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("connection to node {peer}: {e}");
                }
            });
            Ok::<_, String>(sender)
        };
        let sender = match &self.runtime {
            Some(runtime) => runtime
                .spawn(connect)
                .await
                .map_err(|e| format!("connecting: {e}"))??,
            None => connect.await?,
        };
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_string(), (address.to_string(), sender.clone()));
        Ok(sender)
    }

    /// Sends `request` to `node`'s port at `address`.
    pub async fn send(
        &self,
        node: &str,
        address: &str,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, SendError> {
        let mut sender = match self.cached(node, address) {
            Some(sender) => sender,
            None => self
                .connect(node, address)
                .await
                .map_err(SendError::unsent)?,
        };
        sender
            .ready()
            .await
            .map_err(|e| SendError::unsent(format!("connection to node {node}: {e}")))?;
        sender.try_send_request(request).await.map_err(|mut e| {
            // hyper hands the request back when it was never written.
            let maybe_sent = e.take_message().is_none();
            SendError {
                message: e.into_error().to_string(),
                maybe_sent,
            }
        })
    }
}
