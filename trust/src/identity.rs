//! A certificate with its private key: what a server serves with and a
//! node authenticates with.

use std::path::Path;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{names, read_private, write_private, TrustError};

/// A certificate (PEM) and its key (PEM).
#[derive(Clone)]
pub struct Identity {
    /// The certificate.
    pub certificate_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    // Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

impl Identity {
    /// Reads `<stem>.crt` and `<stem>.key` from `dir`, `None` if absent.
    pub fn load(dir: &Path, stem: &str) -> Result<Option<Self>, TrustError> {
        let certificate = read_private(&dir.join(format!("{stem}.crt")))?;
        let key = read_private(&dir.join(format!("{stem}.key")))?;
        Ok(certificate.zip(key).map(|(certificate_pem, key_pem)| Self {
            certificate_pem,
            key_pem,
        }))
    }

    /// Writes `<stem>.key` then `<stem>.crt` (both 0600) into `dir`.
    pub fn save(&self, dir: &Path, stem: &str) -> Result<(), TrustError> {
        write_private(&dir.join(format!("{stem}.key")), self.key_pem.as_bytes())?;
        write_private(
            &dir.join(format!("{stem}.crt")),
            self.certificate_pem.as_bytes(),
        )
    }

    /// The certificate chain, for rustls.
    pub fn chain(&self) -> Result<Vec<CertificateDer<'static>>, TrustError> {
        let chain: Vec<_> = CertificateDer::pem_slice_iter(self.certificate_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| TrustError::cert("the certificate", e))?;
        if chain.is_empty() {
            return Err(TrustError::Certificate(
                "the certificate file holds no certificate".into(),
            ));
        }
        Ok(chain)
    }

    /// The private key, for rustls.
    pub fn key(&self) -> Result<PrivateKeyDer<'static>, TrustError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| TrustError::cert("the private key", e))
    }

    /// Seconds since the Unix epoch at which the certificate expires, and
    /// at which it became valid.
    pub fn validity(&self) -> Result<(i64, i64), TrustError> {
        let chain = self.chain()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&chain[0])
            .map_err(|e| TrustError::cert("the certificate", e))?;
        let validity = parsed.validity();
        Ok((
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        ))
    }

    /// Its (first) certificate's serial, as [`names::serial_of`] reads it.
    pub fn serial(&self) -> Option<String> {
        names::serial_of(self.chain().ok()?.first()?)
    }

    /// Who the certificate names (its first certificate).
    pub fn peer(&self) -> Option<names::Peer> {
        names::peer_of(self.chain().ok()?.first()?)
    }
}

/// A node's private key, made on the node; only a certificate request
/// built from it leaves the machine.
pub struct NodeKey {
    key: KeyPair,
}

impl NodeKey {
    /// A new key (ECDSA P-256).
    pub fn generate() -> Result<Self, TrustError> {
        Ok(Self {
            key: KeyPair::generate().map_err(|e| TrustError::cert("generating a key", e))?,
        })
    }

    /// A certificate request (PEM) for `system:node:<node>`.
    pub fn request(&self, node: &str) -> Result<String, TrustError> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, format!("{}{node}", names::NODE_PREFIX));
        params.distinguished_name = name;
        params
            .serialize_request(&self.key)
            .and_then(|r| r.pem())
            .map_err(|e| TrustError::cert("making the certificate request", e))
    }

    /// The identity made of this key and the certificate the CA returned.
    pub fn with_certificate(&self, certificate_pem: String) -> Identity {
        Identity {
            certificate_pem,
            key_pem: self.key.serialize_pem(),
        }
    }
}
