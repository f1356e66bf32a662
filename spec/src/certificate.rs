//! `NodeCertificate`: a record of one certificate the cluster CA issued to
//! a node, named by its serial number (lowercase hex), kept until the
//! certificate expires. Revoking a node (`flotilla node revoke NAME`, or
//! deleting its Node) marks every record of it `revoked`: from then on the
//! API and every other node refuse a certificate with that serial, though
//! it is still within its validity. The records are the revocation list:
//! nodes watch them (Kubernetes has no revocation for kubelet
//! certificates; this is what its short-lived certificates stand in for).

use serde::{Deserialize, Serialize};

use crate::meta::Resource;

/// A NodeCertificate resource.
pub type NodeCertificate = Resource<NodeCertificateSpec, ()>;

/// What was issued, and whether it was revoked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeCertificateSpec {
    /// The node it names.
    pub node: String,
    /// When it stops being valid by itself (RFC 3339).
    pub not_after: String,
    /// Whether it was revoked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    /// When (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revoked_at: String,
}

/// Whether `text` has the shape of a serial as records are named: 1 to 40
/// lowercase hex digits (X.509 serials are at most 20 bytes).
pub fn is_serial(text: &str) -> bool {
    (1..=40).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn serials_are_lowercase_hex() {
        assert!(super::is_serial("0a1b2c"));
        assert!(!super::is_serial("0A1B"));
        assert!(!super::is_serial(""));
        assert!(!super::is_serial(&"a".repeat(41)));
        assert!(!super::is_serial("../x"));
    }
}
