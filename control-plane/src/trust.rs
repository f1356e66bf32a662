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
            &[b"h2", b"http/1.1"],
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn an_operators_ca_and_serving_certificate_are_used_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ops = dir.path().join("ops");
        let theirs = Authority::load_or_create(&ops).unwrap();
        let serving = theirs.issue_server(&["api.example".into()]).unwrap();
        let brought = Brought {
            ca: Some((ops.join("ca.crt"), ops.join("ca.key"))),
            serving: Some((
                write(dir.path(), "api.crt", &serving.certificate_pem),
                write(dir.path(), "api.key", &serving.key_pem),
            )),
        };
        let pki = dir.path().join("pki");
        let trust = ClusterTrust::load_or_create(&pki, &[], &brought, NODE).unwrap();
        assert_eq!(
            trust.authority.hash(),
            theirs.hash(),
            "the operator's CA issues"
        );
        assert_eq!(trust.serving.certificate_pem, serving.certificate_pem);
        assert!(!pki.join("ca.key").exists(), "no second CA is made");

        // A serving certificate from another CA is refused, naming the flag.
        let stranger = Authority::load_or_create(&dir.path().join("stranger")).unwrap();
        let foreign = stranger.issue_server(&["api.example".into()]).unwrap();
        let brought = Brought {
            serving: Some((
                write(dir.path(), "foreign.crt", &foreign.certificate_pem),
                write(dir.path(), "foreign.key", &foreign.key_pem),
            )),
            ..brought
        };
        let err = ClusterTrust::load_or_create(&pki, &[], &brought, NODE)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("not signed by the cluster CA") && err.contains("--ca"),
            "{err}"
        );
    }

    #[test]
    fn the_generated_serving_certificate_follows_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let first = ClusterTrust::load_or_create(
            dir.path(),
            &names(&["localhost"]),
            &Brought::default(),
            NODE,
        )
        .unwrap();
        let again = ClusterTrust::load_or_create(
            dir.path(),
            &names(&["localhost"]),
            &Brought::default(),
            NODE,
        )
        .unwrap();
        assert_eq!(
            first.serving.certificate_pem, again.serving.certificate_pem,
            "kept across restarts"
        );
        let more = ClusterTrust::load_or_create(
            dir.path(),
            &names(&["localhost", "10.0.0.7"]),
            &Brought::default(),
            NODE,
        )
        .unwrap();
        assert_ne!(
            first.serving.certificate_pem, more.serving.certificate_pem,
            "reissued for a new --tls-san"
        );
        assert_eq!(
            first.authority.hash(),
            more.authority.hash(),
            "by the same CA"
        );
    }

    const NODE: Duration = Duration::from_secs(3600);
}
