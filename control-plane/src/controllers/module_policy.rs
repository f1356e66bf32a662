//! ModulePolicies, as the controllers see them: an automatic rollback
//! writes an old template without passing admission, so it must not bring
//! back a module that today's policies would refuse (one uploaded, from a
//! registry no longer allowed, or one whose signature admission would have
//! to check again: the controllers never talk to registries).

use flotilla_oci::ModuleRef;
use flotilla_spec::policy::ModulePolicy;
use flotilla_spec::workload::ModuleSource;

use crate::store::{Store, StoreError};

/// Why today's policies in `namespace` do not let the controllers put
/// `module` back by themselves; `None` when they do.
pub fn rollback_refusal(
    store: &dyn Store,
    namespace: &str,
    module: &ModuleSource,
) -> Result<Option<String>, StoreError> {
    for stored in store.list("ModulePolicy", None)?.items {
        let name = stored["metadata"]["name"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        let Ok(policy) = serde_json::from_value::<ModulePolicy>(stored) else {
            return Ok(Some(format!(
                "ModulePolicy {name} cannot be read by this server"
            )));
        };
        let policy = policy.spec;
        if !policy.applies_to(namespace) {
            continue;
        }
        let reference = module
            .source
            .as_deref()
            .filter(|s| ModuleRef::is_oci(s))
            .and_then(|s| ModuleRef::parse(s).ok());
        let Some(reference) = reference else {
            if policy.require.is_some() || !policy.registries.is_empty() {
                return Ok(Some(format!(
                    "ModulePolicy {name} wants modules from a registry, and the old template's module was uploaded"
                )));
            }
            continue;
        };
        if !policy.allows(reference.named_registry(), reference.repository()) {
            return Ok(Some(format!(
                "ModulePolicy {name} does not allow {reference} any more"
            )));
        }
        if policy.require.is_some() {
            return Ok(Some(format!(
                "ModulePolicy {name} wants modules signed, and only admission checks signatures"
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use serde_json::json;

    fn policy(store: &SqliteStore, spec: serde_json::Value) {
        let object = json!({"apiVersion": "flotilla.dev/v1", "kind": "ModulePolicy",
            "metadata": {"name": "p"}, "spec": spec});
        store.create("ModulePolicy", "", "p", object).unwrap();
    }

    fn module(source: &str) -> ModuleSource {
        ModuleSource {
            source: Some(source.into()),
            sha256: Some("ab".repeat(32)),
            resolved: None,
        }
    }

    #[test]
    fn only_what_admission_would_let_through_without_a_registry_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let uploaded = module("file:app.wasm");
        let pulled = module("oci://127.0.0.1:5000/apps/web:1");
        assert_eq!(
            rollback_refusal(&store, "default", &uploaded).unwrap(),
            None
        );

        policy(
            &store,
            json!({"namespaces": ["prod"], "registries": ["127.0.0.1:5000/apps"]}),
        );
        assert_eq!(
            rollback_refusal(&store, "default", &uploaded).unwrap(),
            None
        );
        let refused = rollback_refusal(&store, "prod", &uploaded)
            .unwrap()
            .unwrap();
        assert!(refused.contains("uploaded"), "{refused}");
        assert_eq!(rollback_refusal(&store, "prod", &pulled).unwrap(), None);
        let foreign = module("oci://registry.example/apps/web:1");
        let refused = rollback_refusal(&store, "prod", &foreign).unwrap().unwrap();
        assert!(refused.contains("does not allow"), "{refused}");

        store.delete("ModulePolicy", "", "p").unwrap();
        policy(&store, json!({"require": "signed", "keys": ["k"]}));
        let refused = rollback_refusal(&store, "default", &pulled)
            .unwrap()
            .unwrap();
        assert!(refused.contains("signed"), "{refused}");
    }
}
