//! A host is served from one namespace.
//!
//! Every node's ingress picks the workload whose route matches a request's
//! host and path best, across namespaces. Without an owner per host, a
//! workload in one namespace could take another namespace's traffic by
//! routing the same host with a longer path prefix (or the same one and a
//! name that sorts first), and serve its TLS name. So a Workload may route
//! a host only if no workload of another namespace routes it; within one
//! namespace, hosts are shared by path as before. Only hosts a write adds
//! are checked, so a workload stored before this rule keeps being writable.
//! The API checks every write; the workload controller checks an automatic
//! rollback, which puts an old template back without the API.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::store::{Store, StoreError};

/// The hosts a Workload object routes, lowercased (hosts match in any case).
fn hosts(workload: &Value) -> BTreeSet<String> {
    workload["spec"]["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|route| route["host"].as_str())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// What is wrong with `workload` (to be stored in `namespace`, replacing
/// `stored` if any) if it adds a host a workload of another namespace
/// routes.
pub fn conflict(
    store: &dyn Store,
    namespace: &str,
    workload: &Value,
    stored: Option<&Value>,
) -> Result<Option<String>, StoreError> {
    let kept = stored.map(hosts).unwrap_or_default();
    let added: BTreeSet<String> = hosts(workload).difference(&kept).cloned().collect();
    if added.is_empty() {
        return Ok(None);
    }
    for other in store.list("Workload", None)?.items {
        let other_namespace = other["metadata"]["namespace"].as_str().unwrap_or_default();
        if other_namespace == namespace {
            continue;
        }
        if let Some(host) = hosts(&other).intersection(&added).next() {
            let other_name = other["metadata"]["name"].as_str().unwrap_or_default();
            return Ok(Some(format!(
                "host {host:?} is routed by workload {other_namespace}/{other_name}: a host is served from one namespace (route another host, or route this one from namespace {other_namespace})"
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn workload(namespace: &str, name: &str, hosts: &[&str]) -> Value {
        json!({
            "kind": "Workload",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"routes": hosts.iter().map(|h| json!({"host": h, "pathPrefix": "/"})).collect::<Vec<_>>()},
        })
    }

    #[test]
    fn hosts_are_read_in_any_case_and_without_routes_are_none() {
        assert_eq!(
            hosts(&workload(
                "a",
                "w",
                &["App.Example", "app.example", "b.example"]
            )),
            BTreeSet::from(["app.example".to_string(), "b.example".to_string()])
        );
        assert!(hosts(&json!({"spec": {}})).is_empty());
    }

    #[test]
    fn a_host_of_another_namespace_is_refused_and_one_already_held_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(&dir.path().join("store.db")).unwrap();
        let web = workload("team-a", "web", &["app.example"]);
        store.create("Workload", "team-a", "web", web).unwrap();
        let conflict = |namespace: &str, object: &Value, stored: Option<&Value>| {
            conflict(&store, namespace, object, stored).unwrap()
        };

        // Another namespace: refused, in any case, naming the holder.
        let thief = workload("team-b", "thief", &["APP.example", "b.example"]);
        let why = conflict("team-b", &thief, None).unwrap();
        assert!(why.contains("team-a/web"), "{why}");
        // The same namespace shares it by path.
        let api = workload("team-a", "api", &["app.example"]);
        assert_eq!(conflict("team-a", &api, None), None);
        // Hosts of its own: fine.
        let own = workload("team-b", "b", &["b.example"]);
        assert_eq!(conflict("team-b", &own, None), None);
        // A write that keeps a host it already routes is not refused (a
        // workload stored before the rule stays writable).
        let legacy = workload("team-b", "legacy", &["app.example"]);
        assert_eq!(conflict("team-b", &legacy, Some(&legacy)), None);
        let more = workload("team-b", "legacy", &["app.example", "c.example"]);
        assert_eq!(conflict("team-b", &more, Some(&legacy)), None);
    }
}
