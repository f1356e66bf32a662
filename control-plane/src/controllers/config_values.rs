//! The Config and Secret values a workload's template reads, as a digest:
//! instances carry the digest they were made with, so a change of those
//! values makes them outdated and rolls out like a template change (what
//! Kubernetes users get by hashing a ConfigMap into a pod annotation, done
//! here by the controller).

use flotilla_spec::workload::Workload;
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError};

/// The digest of the values `workload` reads (each referenced key's value,
/// or its absence); empty when it reads none.
pub fn digest(store: &dyn Store, workload: &Workload) -> Result<String, StoreError> {
    let namespace = &workload.metadata.namespace;
    let mut hasher = Sha256::new();
    let mut any = false;
    for var in &workload.spec.env {
        let Some((kind, reference)) = var.value_from.as_ref().and_then(|s| s.reference()) else {
            continue;
        };
        any = true;
        let object = store.get(kind, namespace, &reference.name)?;
        let value = object.and_then(|o| {
            if kind == "Secret" {
                let secret: flotilla_spec::config::Secret = serde_json::from_value(o).ok()?;
                secret.value(&reference.key)
            } else {
                let config: flotilla_spec::config::Config = serde_json::from_value(o).ok()?;
                config.value(&reference.key)
            }
        });
        // Length-prefixed fields: no two inputs hash alike.
        for field in [
            kind.as_bytes(),
            reference.name.as_bytes(),
            reference.key.as_bytes(),
        ] {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field);
        }
        match value {
            Some(bytes) => {
                hasher.update([1]);
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(&bytes);
            }
            None => hasher.update([0]),
        }
    }
    Ok(if any {
        hex::encode(hasher.finalize())[..16].to_string()
    } else {
        String::new()
    })
}
