//! The certificates the CA issued to nodes, and their revocation
//! ([`flotilla_spec::certificate`]).
//!
//! Every certificate the API signs is recorded as a `NodeCertificate`
//! named by its serial, before it is handed out (a certificate that could
//! not be recorded could not be revoked, so none is issued then).
//! Revoking a node marks each of its records; the API refuses a revoked
//! serial on every request ([`is_revoked`], one read by key), and nodes
//! watch the records and refuse it at their node ports. Records are
//! deleted once their certificate has expired ([`collect_expired`]): an
//! expired certificate is refused by every TLS handshake anyway, which
//! keeps the list as short as the certificates' life.

use std::time::SystemTime;

use flotilla_spec::certificate::{NodeCertificate, NodeCertificateSpec};
use flotilla_spec::meta::{now_rfc3339, parse_rfc3339, rfc3339, ObjectMeta, API_VERSION};
use serde_json::Value;

use crate::store::{Store, StoreError};

/// Records a certificate issued to `node` (PEM).
pub fn record(store: &dyn Store, node: &str, certificate_pem: &str) -> Result<(), StoreError> {
    let identity = flotilla_trust::Identity {
        certificate_pem: certificate_pem.to_string(),
        key_pem: String::new(),
    };
    let unreadable =
        |what: &str| StoreError::Backend(format!("the certificate just issued to {node}: {what}"));
    let serial = identity.serial().ok_or_else(|| unreadable("no serial"))?;
    let (_, not_after) = identity
        .validity()
        .map_err(|e| unreadable(&e.to_string()))?;
    let not_after =
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(not_after.max(0) as u64);
    let record = NodeCertificate {
        api_version: API_VERSION.into(),
        kind: "NodeCertificate".into(),
        metadata: ObjectMeta {
            name: serial.clone(),
            creation_timestamp: Some(now_rfc3339()),
            ..ObjectMeta::default()
        },
        spec: NodeCertificateSpec {
            node: node.to_string(),
            not_after: rfc3339(not_after),
            ..NodeCertificateSpec::default()
        },
        status: None,
    };
    let value = serde_json::to_value(&record).map_err(|e| StoreError::Backend(e.to_string()))?;
    store
        .create("NodeCertificate", "", &serial, value)
        .map(drop)
}

/// Whether the certificate with `serial` was revoked.
pub fn is_revoked(store: &dyn Store, serial: &str) -> Result<bool, StoreError> {
    Ok(store
        .get("NodeCertificate", "", serial)?
        .is_some_and(|record| record["spec"]["revoked"] == true))
}

/// Revokes every recorded certificate of `node`; how many were not
/// revoked already.
pub fn revoke_node(store: &dyn Store, node: &str) -> Result<usize, StoreError> {
    let mut revoked = 0;
    for mut record in store.list("NodeCertificate", None)?.items {
        if record["spec"]["node"] != node || record["spec"]["revoked"] == true {
            continue;
        }
        let Some(serial) = record["metadata"]["name"].as_str().map(str::to_string) else {
            continue;
        };
        let expected = crate::store::revision_of(&record);
        record["spec"]["revoked"] = Value::Bool(true);
        record["spec"]["revokedAt"] = Value::String(now_rfc3339());
        match store.update("NodeCertificate", "", &serial, record, expected) {
            Ok(_) => revoked += 1,
            // Collected (expired) meanwhile: nothing left to revoke.
            Err(StoreError::NotFound { .. }) => {}
            // Changed meanwhile (revoked by another request): read again.
            Err(StoreError::Conflict { .. }) => {
                if !is_revoked(store, &serial)? {
                    return Err(StoreError::Backend(format!(
                        "the record of certificate {serial} changed while it was revoked: try again"
                    )));
                }
            }
            Err(e) => return Err(e),
        }
    }
    if revoked > 0 {
        tracing::warn!("revoked {revoked} certificate(s) of node {node}");
    }
    Ok(revoked)
}

/// Deletes the records of certificates past their `notAfter`; how many.
pub fn collect_expired(store: &dyn Store) -> Result<usize, StoreError> {
    let now = SystemTime::now();
    let mut deleted = 0;
    for record in store.list("NodeCertificate", None)?.items {
        let expired = record["spec"]["notAfter"]
            .as_str()
            .and_then(parse_rfc3339)
            .is_some_and(|at| at <= now);
        let Some(serial) = record["metadata"]["name"].as_str().filter(|_| expired) else {
            continue;
        };
        match store.delete("NodeCertificate", "", serial) {
            Ok(_) => deleted += 1,
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn issue(ca: &flotilla_trust::Authority, node: &str, validity: std::time::Duration) -> String {
        let key = flotilla_trust::NodeKey::generate().unwrap();
        ca.sign_node(node, &key.request(node).unwrap(), validity)
            .unwrap()
    }

    fn serial(pem: &str) -> String {
        flotilla_trust::Identity {
            certificate_pem: pem.into(),
            key_pem: String::new(),
        }
        .serial()
        .unwrap()
    }

    #[test]
    fn a_revoked_nodes_certificates_are_refused_and_others_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let ca = flotilla_trust::Authority::load_or_create(&dir.path().join("pki")).unwrap();
        let day = std::time::Duration::from_secs(86400);
        let (a1, a2, b) = (
            issue(&ca, "a", day),
            issue(&ca, "a", day),
            issue(&ca, "b", day),
        );
        for (node, pem) in [("a", &a1), ("a", &a2), ("b", &b)] {
            record(&store, node, pem).unwrap();
        }
        assert!(!is_revoked(&store, &serial(&a1)).unwrap());
        assert_eq!(revoke_node(&store, "a").unwrap(), 2);
        assert_eq!(revoke_node(&store, "a").unwrap(), 0, "revoked once");
        assert!(is_revoked(&store, &serial(&a1)).unwrap());
        assert!(is_revoked(&store, &serial(&a2)).unwrap());
        assert!(!is_revoked(&store, &serial(&b)).unwrap());
        // A certificate issued to the name afterwards (a new machine
        // joining as "a") is not.
        let a3 = issue(&ca, "a", day);
        record(&store, "a", &a3).unwrap();
        assert!(!is_revoked(&store, &serial(&a3)).unwrap());
        // Unknown serials (issued before records were kept) are not.
        assert!(!is_revoked(&store, "abc").unwrap());
    }

    #[test]
    fn records_of_expired_certificates_are_collected() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let ca = flotilla_trust::Authority::load_or_create(&dir.path().join("pki")).unwrap();
        let live = issue(&ca, "a", std::time::Duration::from_secs(86400));
        record(&store, "a", &live).unwrap();
        let mut old = store
            .get("NodeCertificate", "", &serial(&live))
            .unwrap()
            .unwrap();
        old["metadata"]["name"] = "0bad".into();
        old["spec"]["notAfter"] = "2020-01-01T00:00:00Z".into();
        store.create("NodeCertificate", "", "0bad", old).unwrap();
        assert_eq!(collect_expired(&store).unwrap(), 1);
        assert!(store.get("NodeCertificate", "", "0bad").unwrap().is_none());
        assert!(store
            .get("NodeCertificate", "", &serial(&live))
            .unwrap()
            .is_some());
    }
}
