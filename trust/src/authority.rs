//! The cluster CA: created on a server's first start (or brought by the
//! operator), it issues every certificate of the fleet.

use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::{names, read_private, write_private, Identity, TrustError};

/// How long a node's certificate is good for; agents renew it once two
/// thirds of that have passed.
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long the server's own certificates are good for; reissued at start
/// when less than a month is left or the names changed.
const SERVER_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The cluster CA, with its key.
pub struct Authority {
    certificate_pem: String,
    certificate_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn params(common_name: &str, validity: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "flotilla");
    params.distinguished_name = name;
    // Slack for clocks a little behind the server's: an hour, or a tenth
    // of a short validity (so renewal at two thirds stays after issue).
    let now = OffsetDateTime::now_utc();
    let slack = (validity / 10).min(Duration::from_secs(3600));
    params.not_before = now - slack;
    params.not_after = now + validity;
    params.serial_number = Some(rand::random::<[u8; 16]>().to_vec().into());
    params
}

impl Authority {
    /// Reads the CA from `pki/ca.crt` and `pki/ca.key`, or creates it there
    /// (the key 0600, the folder 0700).
    pub fn load_or_create(pki: &Path) -> Result<Self, TrustError> {
        let (cert_path, key_path) = (pki.join("ca.crt"), pki.join("ca.key"));
        if let (Some(cert), Some(key)) = (read_private(&cert_path)?, read_private(&key_path)?) {
            return Self::from_pem(&cert, &key).map_err(|e| {
                TrustError::Certificate(format!(
                    "{}: {e} (restore the CA from a backup; deleting pki/ makes a new CA, and every node must then join again)",
                    pki.display()
                ))
            });
        }
        let key = KeyPair::generate().map_err(|e| TrustError::cert("generating the CA key", e))?;
        let mut ca = params("flotilla-ca", CA_VALIDITY);
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let certificate = ca
            .self_signed(&key)
            .map_err(|e| TrustError::cert("making the CA certificate", e))?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        write_private(&cert_path, certificate.pem().as_bytes())?;
        Self::from_pem(&certificate.pem(), &key.serialize_pem())
    }

    /// A CA from its certificate and key (PEM), e.g. brought by the operator.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<Self, TrustError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| TrustError::cert("the CA key", e))?;
        // One certificate: it is what joining agents pin, and all they trust.
        let certificate_der = crate::single_certificate(certificate_pem)?;
        let issuer = Issuer::from_ca_cert_der(&certificate_der, key)
            .map_err(|e| TrustError::cert("the CA certificate", e))?;
        Ok(Self {
            certificate_pem: certificate_pem.to_string(),
            certificate_der,
            issuer,
        })
    }

    /// The CA certificate (PEM): what clients trust.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The sha256 of the CA certificate, as join tokens pin it.
    pub fn hash(&self) -> String {
        crate::token::ca_hash(&self.certificate_der)
    }

    fn sign(&self, params: &CertificateParams, key: &KeyPair) -> Result<Identity, TrustError> {
        let certificate = params
            .signed_by(key, &self.issuer)
            .map_err(|e| TrustError::cert("signing a certificate", e))?;
        Ok(Identity {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A serving certificate for the API, for `names` (DNS names or IP
    /// addresses).
    pub fn issue_server(&self, names: &[String]) -> Result<Identity, TrustError> {
        let mut params = params("flotilla-server", SERVER_CERT_VALIDITY);
        params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().map_err(|e| TrustError::cert("generating a key", e))?;
        self.sign(&params, &key)
    }

    /// The control plane's client certificate (it reads logs from nodes).
    pub fn issue_control_plane(&self) -> Result<Identity, TrustError> {
        let mut params = params(names::CONTROL_PLANE, SERVER_CERT_VALIDITY);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().map_err(|e| TrustError::cert("generating a key", e))?;
        self.sign(&params, &key)
    }

    /// Signs a node's certificate request: whatever names the request asks
    /// for, the certificate is for `system:node:<node>` and
    /// `<node>.node.flotilla`, as client and server, for `validity`. Only
    /// the request's public key is used (its signature is checked).
    pub fn sign_node(
        &self,
        node: &str,
        request_pem: &str,
        validity: Duration,
    ) -> Result<String, TrustError> {
        let mut request = CertificateSigningRequestParams::from_pem(request_pem).map_err(|e| {
            TrustError::cert(
                "the certificate request is not a valid PEM CSR signed by its key",
                e,
            )
        })?;
        let mut params = params(&format!("{}{node}", names::NODE_PREFIX), validity);
        params.subject_alt_names = vec![san(&names::node_server_name(node))?];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        request.params = params;
        let certificate = request
            .signed_by(&self.issuer)
            .map_err(|e| TrustError::cert("signing the node certificate", e))?;
        Ok(certificate.pem())
    }

    /// Whether `identity` was issued by this CA for all of `names` and is
    /// good for at least another month (else the server reissues it).
    pub fn still_serves(&self, identity: &Identity, names: &[String]) -> bool {
        let Ok(der) = CertificateDer::from_pem_slice(identity.certificate_pem.as_bytes()) else {
            return false;
        };
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(&der) else {
            return false;
        };
        let Ok((_, ca)) = x509_parser::parse_x509_certificate(&self.certificate_der) else {
            return false;
        };
        let signed_here = parsed.verify_signature(Some(ca.public_key())).is_ok();
        let month = 30 * 24 * 3600;
        let fresh = parsed.validity().not_after.timestamp()
            > OffsetDateTime::now_utc().unix_timestamp() + month;
        let sans: Vec<String> = parsed
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(san_text)
                    .collect()
            })
            .unwrap_or_default();
        let covers = names.iter().all(|n| sans.contains(n));
        signed_here && fresh && covers
    }
}

/// A DNS or IP SAN as text (`localhost`, `10.0.0.1`).
fn san_text(name: &x509_parser::extensions::GeneralName<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    match name {
        GeneralName::DNSName(dns) => Some(dns.to_string()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes)
                .ok()
                .map(|b| std::net::IpAddr::from(b).to_string()),
            16 => <[u8; 16]>::try_from(*bytes)
                .ok()
                .map(|b| std::net::IpAddr::from(b).to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// A SAN: an IP address if it parses as one, else a DNS name.
fn san(name: &str) -> Result<SanType, TrustError> {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => Ok(SanType::DnsName(name.try_into().map_err(|e| {
            TrustError::cert(&format!("{name:?} is not a DNS name or an IP address"), e)
        })?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeKey;

    fn flotilla_serial_shape(serial: &str) -> bool {
        (1..=40).contains(&serial.len())
            && serial
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn a_node_certificate_names_the_node_whatever_the_request_asked() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::load_or_create(&dir.path().join("pki")).unwrap();
        let key = NodeKey::generate().unwrap();
        let pem = ca
            .sign_node("a", &key.request("b").unwrap(), NODE_CERT_VALIDITY)
            .unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(names::peer_of(&der), Some(names::Peer::Node("a".into())));
        // Each certificate has its own serial, read the same way from DER.
        let serial = names::serial_of(&der).unwrap();
        assert!(flotilla_serial_shape(&serial), "{serial}");
        let other = ca
            .sign_node("a", &key.request("a").unwrap(), NODE_CERT_VALIDITY)
            .unwrap();
        let other = CertificateDer::from_pem_slice(other.as_bytes()).unwrap();
        assert_ne!(names::serial_of(&other), Some(serial));
        let again = Authority::load_or_create(&dir.path().join("pki")).unwrap();
        assert_eq!(ca.hash(), again.hash(), "the CA is kept, not remade");
        let mode = std::fs::metadata(dir.path().join("pki/ca.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_server_certificate_is_reissued_when_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::load_or_create(dir.path()).unwrap();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let identity = ca.issue_server(&names).unwrap();
        assert!(ca.still_serves(&identity, &names));
        assert!(!ca.still_serves(&identity, &["10.0.0.1".to_string()]));
        let other = Authority::load_or_create(&dir.path().join("other")).unwrap();
        assert!(
            !other.still_serves(&identity, &names),
            "signed by another CA"
        );
    }

    #[test]
    fn a_forged_request_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::load_or_create(dir.path()).unwrap();
        let err = ca.sign_node(
            "a",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            NODE_CERT_VALIDITY,
        );
        assert!(err.is_err());
    }
}
