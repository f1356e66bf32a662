//! The control plane's side of the cluster's trust: its CA (created in
//! `<data-dir>/pki/` on the first start, or brought by the operator), the
//! API's serving certificate, and the client certificate it reads node
//! ports with.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flotilla_trust::tls::{self, ClientAuth};
use flotilla_trust::{Authority, Identity, TrustError};

/// Certificates the operator brings instead of the generated ones.
#[derive(Debug, Default, Clone)]
pub struct Brought {
    /// The cluster CA certificate and key (PEM files).
    pub ca: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// The API's serving certificate and key (PEM files), signed by the CA.
    pub serving: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

fn read(path: &Path) -> Result<String, TrustError> {
    std::fs::read_to_string(path).map_err(|source| TrustError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The control plane's certificates.
pub struct ClusterTrust {
    /// The CA: issues node certificates.
    pub authority: Authority,
    /// The API's serving certificate.
    pub serving: Identity,
    /// What the control plane presents to node ports.
    pub control_plane: Identity,
    /// How long node certificates last.
    pub node_cert_validity: Duration,
}

impl ClusterTrust {
    /// Loads or creates everything in `pki`; the serving certificate covers
    /// `names` (reissued when it does not, or expires within a month).
    pub fn load_or_create(
        pki: &Path,
        names: &[String],
        brought: &Brought,
        node_cert_validity: Duration,
    ) -> Result<Self, TrustError> {
        let authority = match &brought.ca {
            Some((cert, key)) => Authority::from_pem(&read(cert)?, &read(key)?)?,
            None => Authority::load_or_create(pki)?,
        };
        let serving = match &brought.serving {
            Some((cert, key)) => {
                let identity = Identity {
                    certificate_pem: read(cert)?,
                    key_pem: read(key)?,
                };
                if !authority.still_serves(&identity, &[]) {
                    return Err(TrustError::Certificate(format!(
                        "{}: not signed by the cluster CA, or expires within a month (sign it with the CA given by --ca)",
                        cert.display()
                    )));
                }
                identity
            }
            None => match Identity::load(pki, "server")? {
                Some(identity) if authority.still_serves(&identity, names) => identity,
                _ => {
                    let identity = authority.issue_server(names)?;
                    identity.save(pki, "server")?;
                    identity
                }
            },
        };
        let control_plane = match Identity::load(pki, "control-plane")? {
            Some(identity) if authority.still_serves(&identity, &[]) => identity,
            _ => {
                let identity = authority.issue_control_plane()?;
                identity.save(pki, "control-plane")?;
                identity
            }
        };
        Ok(Self {
            authority,
            serving,
            control_plane,
            node_cert_validity,
        })
    }

    /// The CA certificate clients trust.
    pub fn ca_pem(&self) -> &str {
        self.authority.certificate_pem()
    }

    /// The API listener's TLS: the serving certificate; node certificates
    /// accepted (not required: others come with bearer tokens).
    pub fn api_config(&self) -> Result<Arc<rustls::ServerConfig>, TrustError> {
        Ok(Arc::new(tls::server_config(
            &self.serving,
            ClientAuth::Optional(self.ca_pem()),
            &[b"http/1.1"],
        )?))
    }

    /// How the control plane dials node ports: trusting the CA only, with
    /// its own client certificate.
    pub fn node_client_config(&self) -> Result<Arc<rustls::ClientConfig>, TrustError> {
        Ok(Arc::new(tls::client_config(
            self.ca_pem(),
            Some(&self.control_plane),
            &[b"http/1.1"],
        )?))
    }
}
