//! The Config and Secret values a workload's template reads, as a digest:
//! instances carry the digest they were made with, so a change of those
//! values makes them outdated and rolls out like a template change (what
//! Kubernetes users get by hashing a ConfigMap into a pod annotation, done
//! here by the controller).

use std::collections::BTreeMap;

use flotilla_spec::config::values_of;
use flotilla_spec::workload::Workload;

use crate::store::{Store, StoreError};

/// The values of a Config or Secret by key, or `None` if it does not
/// exist (or does not decode).
fn object_values(
    store: &dyn Store,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, StoreError> {
    Ok(store
        .get(kind, namespace, name)?
        .and_then(|o| values_of(kind, o)))
}

/// Adds one value read (or its absence) to `hasher`, every field length-
/// prefixed so that no two inputs hash alike.
fn add(hasher: &mut Vec<u8>, fields: [&str; 3], value: Option<Vec<u8>>) {
    for field in fields {
        hasher.extend((field.len() as u64).to_be_bytes());
        hasher.extend(field.as_bytes());
    }
    match value {
        Some(bytes) => {
            hasher.push(1);
            hasher.extend((bytes.len() as u64).to_be_bytes());
            hasher.extend(&bytes);
        }
        None => hasher.push(0),
    }
}

/// The digest of the values `workload` reads (each referenced key's value,
/// or its absence); empty when it reads none.
pub fn digest(store: &dyn Store, workload: &Workload) -> Result<String, StoreError> {
    if workload.spec.reload == flotilla_spec::workload::Reload::Live {
        // Its replicas read the values again while they serve.
        return Ok(String::new());
    }
    let namespace = &workload.metadata.namespace;
    // What is read, in order; digested with the store's key.
    let mut hasher = Vec::new();
    let reads = workload.spec.value_reads();
    for read in &reads {
        let (kind, name) = (read.kind, read.name);
        let values = object_values(store, kind, namespace, name)?;
        let keys: Vec<&str> = match &read.keys {
            Some(keys) => keys.clone(),
            None => values.iter().flatten().map(|(k, _)| k.as_str()).collect(),
        };
        for key in keys {
            let value = values.as_ref().and_then(|v| v.get(key)).cloned();
            add(&mut hasher, [kind, name, key], value);
        }
        if values.is_none() {
            add(&mut hasher, [kind, name, ""], None);
        }
    }
    let any = !reads.is_empty();
    Ok(if any {
        hex::encode(store.keyed_digest(&hasher)?)[..16].to_string()
    } else {
        String::new()
    })
}
