//! Expired tokens are deleted. A token past `spec.expires` authenticates
//! nothing already (`api::tokens` checks the time on every request), but
//! kept forever it would crowd `flotilla token list` and the store, one
//! object per CI run that made a short-lived token. As Kubernetes'
//! token cleaner does for bootstrap tokens, the controllers delete it once
//! it has expired; a RoleBinding naming it stays (it names an id nobody
//! holds, and a new token never gets an old id back by design: ids are
//! random).

use std::time::SystemTime;

use flotilla_spec::meta::parse_rfc3339;

use crate::store::{Store, StoreError};

/// Deletes the stored tokens whose `spec.expires` is past; how many.
pub fn collect(store: &dyn Store) -> Result<usize, StoreError> {
    let now = SystemTime::now();
    let mut deleted = 0;
    for token in store.list("Token", None)?.items {
        let expired = token["spec"]["expires"]
            .as_str()
            .filter(|t| !t.is_empty())
            .and_then(parse_rfc3339)
            .is_some_and(|at| at <= now);
        let Some(id) = token["metadata"]["name"].as_str().filter(|_| expired) else {
            continue;
        };
        match store.delete("Token", "", id) {
            Ok(_) => {
                tracing::info!(
                    "deleted token {id}: it expired at {}",
                    token["spec"]["expires"]
                );
                deleted += 1;
            }
            // Deleted meanwhile (by `token delete`, or another server).
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expired_tokens_go_and_the_others_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(&dir.path().join("store.db")).unwrap();
        let token = |id: &str, expires: &str| {
            let object = json!({"apiVersion": "flotilla.dev/v1", "kind": "Token",
                "metadata": {"name": id},
                "spec": {"role": "view", "secretSha256": "00", "expires": expires}});
            store.create("Token", "", id, object).unwrap();
        };
        token("old001", "2020-01-01T00:00:00Z");
        token("old002", "2026-01-01T00:00:00Z");
        token("new001", "2999-01-01T00:00:00Z");
        token("never1", "");
        assert_eq!(collect(&store).unwrap(), 2);
        let mut left: Vec<String> = store
            .list("Token", Some(""))
            .unwrap()
            .items
            .iter()
            .map(|t| t["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        left.sort();
        assert_eq!(left, ["never1", "new001"]);
        // Nothing more to do: idempotent.
        assert_eq!(collect(&store).unwrap(), 0);
    }
}
