//! The node's own credentials: joining with a join token, keeping the
//! certificate the CA issued (0600 in `<data-dir>/pki/`), and renewing it
//! before it expires.
//!
//! Joining: fetch the server's CA without trusting it, compare its sha256
//! with the one the join token pins (refusing on a mismatch: the server
//! could not be verified), and only then, over TLS verified against that
//! CA, send the token's secret with a certificate request built from a key
//! made here. The key never leaves the node; the token is never used again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_client::{Client, ClientError, Credentials};
use flotilla_trust::names::Peer;
use flotilla_trust::tls::{self, ClientAuth};
use flotilla_trust::{Identity, JoinToken, NodeKey, TrustError};
use serde_json::json;

/// Why a node could not get or keep its credentials.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// No credentials yet, and no token to join with.
    #[error("node {node} has no credentials in {dir} yet: give the join token with --token-file FILE (or FLOTILLA_TOKEN) to join once")]
    NoToken {
        /// The node.
        node: String,
        /// Where credentials would be.
        dir: PathBuf,
    },
    /// The server's CA is not the one the token pins.
    #[error("the server's identity could not be verified: its CA has sha256 {found}, the join token expects {expected} — the token is from another cluster, or something between this node and the server intercepts the connection; nothing was sent")]
    CaMismatch {
        /// What the token pins.
        expected: String,
        /// What the server presented.
        found: String,
    },
    /// The server could not be reached.
    #[error("{0}")]
    Unreachable(ClientError),
    /// The server refused.
    #[error("the server refused the join: {0}")]
    Refused(ClientError),
    /// Keys, certificates or files.
    #[error(transparent)]
    Trust(#[from] TrustError),
}

impl JoinError {
    /// Whether retrying later may succeed (the server was not reachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, JoinError::Unreachable(_))
    }
}

/// The node's CA, certificate and key, and the TLS configurations made of
/// them (swapped together when the certificate is renewed).
pub struct NodeCredentials {
    node: String,
    dir: PathBuf,
    ca_pem: String,
    current: RwLock<Current>,
}

struct Current {
    identity: Identity,
    node_port: Arc<rustls::ServerConfig>,
    peers: Arc<rustls::ClientConfig>,
}

fn configs(ca_pem: &str, identity: Identity) -> Result<Current, TrustError> {
    Ok(Current {
        // Only certificates the CA issued (nodes, the control plane) get in.
        node_port: Arc::new(tls::server_config(
            &identity,
            ClientAuth::Required(ca_pem),
            &[b"h2", b"http/1.1"],
        )?),
        peers: Arc::new(tls::client_config(ca_pem, Some(&identity), &[b"h2"])?),
        identity,
    })
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl NodeCredentials {
    /// The credentials in `data_dir/pki` if they are this node's, for the
    /// CA `token` pins (if given) and not expired; else joins `server` with
    /// `token`.
    pub async fn obtain(
        server: &str,
        token: Option<&str>,
        node: &str,
        data_dir: &Path,
    ) -> Result<Arc<Self>, JoinError> {
        let dir = data_dir.join("pki");
        let token = token
            .filter(|t| !t.trim().is_empty())
            .map(str::parse::<JoinToken>)
            .transpose()?;
        if let Some(kept) = Self::load(node, &dir, token.as_ref())? {
            return Ok(kept);
        }
        let token = token.ok_or_else(|| JoinError::NoToken {
            node: node.into(),
            dir: dir.clone(),
        })?;
        let ca_pem = flotilla_client::fetch_ca(server)
            .await
            .map_err(JoinError::Unreachable)?;
        let found = ca_hash_of(&ca_pem)?;
        if found != token.ca_hash {
            return Err(JoinError::CaMismatch {
                expected: token.ca_hash,
                found,
            });
        }
        let client = Client::new(
            server,
            Credentials {
                ca_pem: ca_pem.clone(),
                token: Some(token.secret.clone()),
                identity: None,
            },
        )
        .map_err(JoinError::Refused)?;
        let key = NodeKey::generate()?;
        let identity = request_certificate(&client, node, &key).await?;
        flotilla_trust::write_private(&dir.join("ca.crt"), ca_pem.as_bytes())?;
        identity.save(&dir, "node")?;
        tracing::info!(
            "node {node} joined: its certificate is in {}",
            dir.display()
        );
        Ok(Arc::new(Self {
            node: node.into(),
            current: RwLock::new(configs(&ca_pem, identity)?),
            ca_pem,
            dir,
        }))
    }

    /// The credentials in `data_dir/pki`, else a certificate `sign` makes
    /// from a new key's request: for an agent in the control plane's own
    /// process (`flotilla up`), which holds the CA and needs no join (so a
    /// data folder from before certificates keeps its node).
    pub fn issue_locally(
        node: &str,
        data_dir: &Path,
        ca_pem: &str,
        sign: impl FnOnce(&str) -> Result<String, TrustError>,
    ) -> Result<Arc<Self>, JoinError> {
        let dir = data_dir.join("pki");
        let pinned = JoinToken {
            ca_hash: ca_hash_of(ca_pem)?,
            secret: String::new(),
        };
        if let Some(kept) = Self::load(node, &dir, Some(&pinned))? {
            return Ok(kept);
        }
        let key = NodeKey::generate()?;
        let identity = key.with_certificate(sign(&key.request(node)?)?);
        flotilla_trust::write_private(&dir.join("ca.crt"), ca_pem.as_bytes())?;
        identity.save(&dir, "node")?;
        Ok(Arc::new(Self {
            node: node.into(),
            current: RwLock::new(configs(ca_pem, identity)?),
            ca_pem: ca_pem.to_string(),
            dir,
        }))
    }

    fn load(
        node: &str,
        dir: &Path,
        token: Option<&JoinToken>,
    ) -> Result<Option<Arc<Self>>, JoinError> {
        let Some(ca_pem) = flotilla_trust::read_private(&dir.join("ca.crt"))? else {
            return Ok(None);
        };
        let Some(identity) = Identity::load(dir, "node")? else {
            return Ok(None);
        };
        // A token for another CA means the cluster was remade: join it.
        if token.is_some_and(|t| ca_hash_of(&ca_pem).ok().as_deref() != Some(t.ca_hash.as_str())) {
            return Ok(None);
        }
        if identity.peer() != Some(Peer::Node(node.into())) {
            tracing::warn!(
                "the certificate in {} is not node {node}'s: joining again",
                dir.display()
            );
            return Ok(None);
        }
        let (_, not_after) = identity.validity()?;
        if not_after <= now_secs() {
            tracing::warn!("node {node}'s certificate has expired: joining again");
            return Ok(None);
        }
        Ok(Some(Arc::new(Self {
            node: node.into(),
            current: RwLock::new(configs(&ca_pem, identity)?),
            ca_pem,
            dir: dir.to_path_buf(),
        })))
    }

    fn current(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    /// How the agent's API client authenticates.
    pub fn client_credentials(&self) -> Credentials {
        Credentials {
            ca_pem: self.ca_pem.clone(),
            token: None,
            identity: Some(self.current().identity.clone()),
        }
    }

    /// The node port's TLS (client certificates required).
    pub fn node_port_config(&self) -> Arc<rustls::ServerConfig> {
        self.current().node_port.clone()
    }

    /// How this node dials other nodes' ports.
    pub fn peer_config(&self) -> Arc<rustls::ClientConfig> {
        self.current().peers.clone()
    }

    /// When the certificate should be renewed: two thirds into its life.
    fn renew_at(&self) -> i64 {
        match self.current().identity.validity() {
            Ok((not_before, not_after)) => not_before + (not_after - not_before) * 2 / 3,
            Err(_) => now_secs(),
        }
    }

    /// Renews the certificate two thirds into its life, forever; `client`
    /// switches to the new one (and so do the node port and peer dials).
    pub async fn renew_forever(self: Arc<Self>, client: Client) {
        loop {
            // At least a few seconds apart, whatever certificates the server
            // issues; at most an hour, so a changed clock is noticed.
            let wait = (self.renew_at() - now_secs()).clamp(5, 3600) as u64;
            tokio::time::sleep(Duration::from_secs(wait)).await;
            if self.renew_at() > now_secs() {
                continue;
            }
            match self.renew(&client).await {
                Ok(()) => tracing::info!("node {}: certificate renewed", self.node),
                Err(e) => {
                    tracing::warn!("node {}: cannot renew the certificate yet: {e}", self.node);
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            }
        }
    }

    async fn renew(&self, client: &Client) -> Result<(), JoinError> {
        let key = NodeKey::generate()?;
        let identity = request_certificate(client, &self.node, &key).await?;
        identity.save(&self.dir, "node")?;
        let renewed = configs(&self.ca_pem, identity.clone())?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = renewed;
        client.set_identity(&identity).map_err(JoinError::Refused)
    }
}

/// Asks the server to sign a certificate for `node`'s new `key`.
async fn request_certificate(
    client: &Client,
    node: &str,
    key: &NodeKey,
) -> Result<Identity, JoinError> {
    let body = json!({"node": node, "csr": key.request(node)?});
    let answer = client
        .create("/certificates/node", &body)
        .await
        .map_err(|e| match e {
            ClientError::Unreachable { .. } => JoinError::Unreachable(e),
            other => JoinError::Refused(other),
        })?;
    let certificate = answer["certificate"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let identity = key.with_certificate(certificate);
    if identity.peer() != Some(Peer::Node(node.into())) {
        return Err(TrustError::Certificate(format!(
            "the server returned a certificate that is not node {node}'s"
        ))
        .into());
    }
    Ok(identity)
}

/// The hash of a CA file holding exactly one certificate (a bundle could
/// pair the pinned CA with one of an attacker's: refused).
fn ca_hash_of(ca_pem: &str) -> Result<String, TrustError> {
    flotilla_trust::single_certificate(ca_pem)
        .map(|der| flotilla_trust::ca_hash(&der))
        .map_err(|e| TrustError::Certificate(format!("the server's CA: {e}; nothing was sent")))
}
