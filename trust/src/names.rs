//! The names Flotilla's certificates carry, and how a peer's certificate
//! is read back into who it is.
//!
//! A node's certificate is for `system:node:<name>` (its common name, as
//! a kubelet's) and the DNS name `<name>.node.flotilla`: whoever dials a
//! node verifies that name, whatever address the node reported, so a node
//! that points its address at another machine gets a failed handshake,
//! not traffic.

use rustls::pki_types::CertificateDer;

/// Common-name prefix of node certificates.
pub const NODE_PREFIX: &str = "system:node:";
/// Common name of the control plane's client certificate (it reads logs
/// from the nodes).
pub const CONTROL_PLANE: &str = "system:control-plane";
/// The name a node's serving certificate is verified against.
pub fn node_server_name(node: &str) -> String {
    format!("{node}.node.flotilla")
}

/// Who presented a client certificate the CA signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A node, by name.
    Node(String),
    /// The control plane.
    ControlPlane,
}

/// A verified client certificate: who it names, and its serial number
/// (what a revocation names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// Who.
    pub peer: Peer,
    /// [`serial_of`] the certificate.
    pub serial: String,
}

/// Who a (verified) client certificate names and its serial, if it is one
/// of Flotilla's.
pub fn presented(certificate: &CertificateDer<'_>) -> Option<Presented> {
    Some(Presented {
        peer: peer_of(certificate)?,
        serial: serial_of(certificate)?,
    })
}

/// A certificate's serial number as lowercase hex, leading zero bytes
/// dropped (DER adds one before a high bit), so a serial reads the same
/// from the certificate wherever it is read.
pub fn serial_of(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let raw = parsed.tbs_certificate.raw_serial();
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    let hex: String = raw[start..].iter().map(|b| format!("{b:02x}")).collect();
    Some(if hex.is_empty() { "0".into() } else { hex })
}

/// Who a (verified) client certificate names, if it is one of Flotilla's.
pub fn peer_of(certificate: &CertificateDer<'_>) -> Option<Peer> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let common_name = parsed
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if common_name == CONTROL_PLANE {
        return Some(Peer::ControlPlane);
    }
    let node = common_name.strip_prefix(NODE_PREFIX)?;
    (!node.is_empty()).then(|| Peer::Node(node.to_string()))
}
