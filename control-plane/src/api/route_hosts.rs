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

use std::collections::BTreeSet;

use serde_json::Value;

use super::ApiError;
use crate::store::Store;

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

/// Refuses `workload` (to be stored in `namespace`, replacing `stored` if
/// any) if it adds a host a workload of another namespace routes.
pub fn check(
    store: &dyn Store,
    namespace: &str,
    workload: &Value,
    stored: Option<&Value>,
) -> Result<(), ApiError> {
    let kept = stored.map(hosts).unwrap_or_default();
    let added: BTreeSet<String> = hosts(workload).difference(&kept).cloned().collect();
    if added.is_empty() {
        return Ok(());
    }
    for other in store.list("Workload", None)?.items {
        let other_namespace = other["metadata"]["namespace"].as_str().unwrap_or_default();
        if other_namespace == namespace {
            continue;
        }
        if let Some(host) = hosts(&other).intersection(&added).next() {
            let other_name = other["metadata"]["name"].as_str().unwrap_or_default();
            return Err(ApiError::invalid(format!(
                "spec.routes: host {host:?} is routed by workload {other_namespace}/{other_name}: a host is served from one namespace (route another host, or route this one from namespace {other_namespace})"
            )));
        }
    }
    Ok(())
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
        store
            .create("Workload", "team-a", "web", web.clone())
            .unwrap();

        // Another namespace: refused, in any case, naming the holder.
        let thief = workload("team-b", "thief", &["APP.example", "b.example"]);
        let e = check(&store, "team-b", &thief, None).unwrap_err();
        assert!(e.message.contains("team-a/web"), "{}", e.message);
        // The same namespace shares it by path.
        check(
            &store,
            "team-a",
            &workload("team-a", "api", &["app.example"]),
            None,
        )
        .unwrap();
        // Hosts of its own: fine.
        check(
            &store,
            "team-b",
            &workload("team-b", "b", &["b.example"]),
            None,
        )
        .unwrap();
        // A write that keeps a host it already routes is not refused (a
        // workload stored before the rule stays writable).
        let legacy = workload("team-b", "legacy", &["app.example"]);
        check(&store, "team-b", &legacy, Some(&legacy)).unwrap();
        let more = workload("team-b", "legacy", &["app.example", "c.example"]);
        check(&store, "team-b", &more, Some(&legacy)).unwrap();
    }
}
