//! The quota controller: each ResourceQuota's `status` shows the caps it
//! enforces (`hard`) beside what its namespace uses (`used`), recomputed
//! from the store (level-triggered: nothing is carried between passes) and
//! written only when it changed.

use flotilla_spec::quota::ResourceQuota;

use crate::store::{Store, StoreError};

/// One pass over every quota.
pub fn pass(store: &dyn Store) -> Result<(), StoreError> {
    let by_namespace = crate::store::decoded_by_namespace::<ResourceQuota>(store, "ResourceQuota")?;
    for (namespace, quotas) in by_namespace {
        let decoded: Vec<ResourceQuota> = quotas.iter().map(|(_, q)| q.clone()).collect();
        let usage = crate::quota::namespace_usage(store, &namespace, &decoded)?;
        for (mut object, quota) in quotas {
            let status = quota.spec.status(&usage);
            if quota.status.as_ref() == Some(&status) {
                continue;
            }
            let expected = crate::store::revision_of(&object);
            object["status"] =
                serde_json::to_value(&status).map_err(|e| StoreError::Backend(e.to_string()))?;
            let name = &quota.metadata.name;
            match store.update("ResourceQuota", &namespace, name, object, expected) {
                // Changed or deleted meanwhile: the next pass sees it.
                Ok(_) | Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn a_quotas_status_shows_its_namespaces_usage_and_follows_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let workload = |name: &str, replicas: u32| {
            serde_json::json!({
                "apiVersion": "flotilla.dev/v1", "kind": "Workload",
                "metadata": {"name": name, "namespace": "team-a"},
                "spec": {"module": {"source": "m.wasm"}, "replicas": replicas,
                         "resources": {"limits": {"memory": "16Mi"}}}
            })
        };
        store
            .create("Workload", "team-a", "a", workload("a", 2))
            .unwrap();
        store
            .create("Workload", "team-b", "b", workload("b", 5))
            .unwrap();
        store
            .create(
                "ResourceQuota",
                "team-a",
                "compute",
                serde_json::json!({"apiVersion": "flotilla.dev/v1", "kind": "ResourceQuota",
                    "metadata": {"name": "compute", "namespace": "team-a"},
                    "spec": {"hard": {"requests.memory": "1Gi", "count/workloads": "4"}}}),
            )
            .unwrap();
        pass(&store).unwrap();
        let status = |store: &SqliteStore| {
            store
                .get("ResourceQuota", "team-a", "compute")
                .unwrap()
                .unwrap()["status"]
                .clone()
        };
        assert_eq!(
            status(&store),
            serde_json::json!({"hard": {"requests.memory": "1Gi", "count/workloads": "4"},
                               "used": {"requests.memory": "32Mi", "count/workloads": "1"}})
        );
        let revision = store.revision().unwrap();
        pass(&store).unwrap();
        assert_eq!(
            store.revision().unwrap(),
            revision,
            "an unchanged status is not written"
        );
        store
            .create("Workload", "team-a", "c", workload("c", 1))
            .unwrap();
        pass(&store).unwrap();
        assert_eq!(status(&store)["used"]["requests.memory"], "48Mi");
        assert_eq!(status(&store)["used"]["count/workloads"], "2");
    }
}
