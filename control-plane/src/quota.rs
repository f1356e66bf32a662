//! A namespace's ResourceQuotas and LimitRanges, applied to what is written
//! into it ([`flotilla_spec::quota`] has the rules; here they meet the
//! store).
//!
//! The API applies them to every write of a Workload (LimitRange defaults
//! first, then its bounds, then the quotas: Kubernetes' admission order)
//! and the quotas to every create of a counted kind; the workload
//! controller applies the quotas to an automatic rollback, which puts an
//! old template back without the API; the quota controller writes each
//! quota's `status` from [`namespace_usage`].
//!
//! The check and the write are two steps: the API serialises Workload
//! writes per server (`ApiState::admission`), so two writes on one server
//! cannot both fit in the room left for one; writes to two servers at the
//! same moment still can (as with Kubernetes without its quota status's
//! optimistic lock).

use std::collections::BTreeMap;

use flotilla_spec::quota::{counted_plural, LimitRange, ResourceQuota, Usage};
use flotilla_spec::workload::WorkloadSpec;
use serde_json::Value;

use crate::store::{Store, StoreError};

/// Why a write may not be stored.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A quota would be exceeded, or a capped resource is unset (403).
    #[error("{0}")]
    Quota(String),
    /// Outside a LimitRange's bounds (422).
    #[error("{0}")]
    Limits(String),
}

/// The namespace's quotas, by name, decoded (what does not decode was
/// never admitted, and is skipped).
fn quotas(store: &dyn Store, namespace: &str) -> Result<Vec<ResourceQuota>, StoreError> {
    Ok(store
        .list("ResourceQuota", Some(namespace))?
        .items
        .into_iter()
        .filter_map(|q| serde_json::from_value(q).ok())
        .collect())
}

/// The namespace's workloads' specs, by name.
fn workloads(
    store: &dyn Store,
    namespace: &str,
) -> Result<BTreeMap<String, WorkloadSpec>, StoreError> {
    Ok(store
        .list("Workload", Some(namespace))?
        .items
        .into_iter()
        .filter_map(|w| {
            let name = w["metadata"]["name"].as_str()?.to_string();
            Some((name, serde_json::from_value(w["spec"].clone()).ok()?))
        })
        .collect())
}

/// The namespace's objects of the kinds `quotas` cap by count (counted
/// only when a quota caps them: a list of Secrets is not free).
fn object_counts(
    store: &dyn Store,
    namespace: &str,
    quotas: &[ResourceQuota],
) -> Result<Usage, StoreError> {
    let mut usage = Usage::default();
    for (resource, _) in flotilla_spec::quota::QUOTA_RESOURCES {
        let Some(plural) = counted_plural(resource) else {
            continue;
        };
        if !quotas.iter().any(|q| q.spec.hard.contains_key(*resource)) {
            continue;
        }
        let Ok(kind) = flotilla_spec::kinds::Kind::from_plural(plural) else {
            continue;
        };
        let count = store.list(kind.name(), Some(namespace))?.items.len();
        usage.add(resource, count as u64);
    }
    Ok(usage)
}

/// The usage of `specs` (a namespace's workloads) beside its `counts`.
fn usage_of(specs: &BTreeMap<String, WorkloadSpec>, counts: &Usage) -> Usage {
    let mut usage = Usage::of_workloads(specs.values(), flotilla_kv::DEFAULT_QUOTA_BYTES);
    usage.add_all(counts);
    usage
}

/// The namespace's usage of everything its quotas cap, for their status.
pub fn namespace_usage(
    store: &dyn Store,
    namespace: &str,
    quotas: &[ResourceQuota],
) -> Result<Usage, StoreError> {
    let counts = object_counts(store, namespace, quotas)?;
    Ok(usage_of(&workloads(store, namespace)?, &counts))
}

/// Whether the quotas of `namespace` let its workload `name` become
/// `spec` (created, replaced, patched or rolled back); `new_resources`:
/// whether the write sets its resources (else a capped resource it leaves
/// unset, admitted before the quota, is not asked for).
pub fn admit_workload(
    store: &dyn Store,
    namespace: &str,
    name: &str,
    spec: &WorkloadSpec,
    new_resources: bool,
) -> Result<(), Refusal> {
    let quotas = quotas(store, namespace)?;
    if quotas.is_empty() {
        return Ok(());
    }
    // The counts do not change with a Workload write: read once.
    let counts = object_counts(store, namespace, &quotas)?;
    let mut specs = workloads(store, namespace)?;
    let before = usage_of(&specs, &counts);
    specs.insert(name.to_string(), spec.clone());
    let after = usage_of(&specs, &counts);
    for quota in &quotas {
        let quota_name = &quota.metadata.name;
        if new_resources {
            quota
                .spec
                .check_specified(quota_name, spec)
                .map_err(|e| Refusal::Quota(e.to_string()))?;
        }
        quota
            .spec
            .check(quota_name, &before, &after)
            .map_err(|e| Refusal::Quota(e.to_string()))?;
    }
    Ok(())
}

/// Why the quotas of `namespace` stop its workload `name` going back to
/// `spec` by itself (an automatic rollback), if they do.
pub fn rollback_refusal(
    store: &dyn Store,
    namespace: &str,
    name: &str,
    spec: &WorkloadSpec,
) -> Result<Option<String>, StoreError> {
    match admit_workload(store, namespace, name, spec, true) {
        Ok(()) => Ok(None),
        Err(Refusal::Store(e)) => Err(e),
        Err(refusal) => Ok(Some(refusal.to_string())),
    }
}

/// The `count/…` resource that counts objects of `kind`, if any.
fn count_resource(kind: &str) -> Option<&'static str> {
    let info = flotilla_spec::kinds::KINDS
        .iter()
        .find(|k| k.name == kind)?;
    flotilla_spec::quota::QUOTA_RESOURCES
        .iter()
        .map(|(resource, _)| *resource)
        .find(|r| counted_plural(r) == Some(info.plural))
}

/// Whether a quota may cap how many objects of `kind` a namespace holds.
pub fn counted(kind: &str) -> bool {
    count_resource(kind).is_some()
}

/// Whether the quotas of `namespace` let one more object of `kind` be
/// created (kinds a `count/…` quota may cap; others always may).
pub fn admit_create(store: &dyn Store, namespace: &str, kind: &str) -> Result<(), Refusal> {
    let Some(resource) = count_resource(kind) else {
        return Ok(());
    };
    let quotas = quotas(store, namespace)?;
    let capping: Vec<&ResourceQuota> = quotas
        .iter()
        .filter(|q| q.spec.hard.contains_key(resource))
        .collect();
    if capping.is_empty() {
        return Ok(());
    }
    let before = object_counts(store, namespace, &quotas)?;
    let mut after = before.clone();
    after.add(resource, 1);
    for quota in capping {
        quota
            .spec
            .check(&quota.metadata.name, &before, &after)
            .map_err(|e| Refusal::Quota(e.to_string()))?;
    }
    Ok(())
}

/// Applies the namespace's LimitRanges to a Workload object to store: its
/// unset requests and limits get their defaults (then a limit without a
/// request requests its limit), and what it sets must be within bounds.
pub fn apply_limit_ranges(
    store: &dyn Store,
    namespace: &str,
    workload: &mut Value,
) -> Result<(), Refusal> {
    let ranges: Vec<LimitRange> = store
        .list("LimitRange", Some(namespace))?
        .items
        .into_iter()
        .filter_map(|r| serde_json::from_value(r).ok())
        .collect();
    if ranges.is_empty() {
        return Ok(());
    }
    let Ok(mut spec) = serde_json::from_value::<WorkloadSpec>(workload["spec"].clone()) else {
        // Admission decoded it already; nothing to default if it does not.
        return Ok(());
    };
    for range in &ranges {
        range.spec.apply_defaults(&mut spec.resources);
    }
    spec.resources.default_requests_to_limits();
    check_requests_within_limits(&spec)?;
    for range in &ranges {
        range
            .spec
            .check(&range.metadata.name, &spec)
            .map_err(Refusal::Limits)?;
    }
    workload["spec"]["resources"] = serde_json::to_value(&spec.resources)
        .map_err(|e| Refusal::Store(StoreError::Backend(e.to_string())))?;
    Ok(())
}

/// A default limit may fall below a request the workload set itself.
fn check_requests_within_limits(spec: &WorkloadSpec) -> Result<(), Refusal> {
    let (request_memory, request_cpu) = spec.resources.requests.memory_and_cpu();
    let (limit_memory, limit_cpu) = spec.resources.limits.memory_and_cpu();
    for (name, request, limit) in [
        ("memory", request_memory, limit_memory),
        ("cpu", request_cpu, limit_cpu),
    ] {
        if limit > 0 && request > limit {
            return Err(Refusal::Limits(format!(
                "spec.resources.requests.{name}: must not be more than spec.resources.limits.{name} (the namespace's LimitRange default limit is lower than the request: set the limit too)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn workload(name: &str, replicas: u32, memory: &str) -> Value {
        serde_json::json!({
            "apiVersion": "flotilla.dev/v1", "kind": "Workload",
            "metadata": {"name": name, "namespace": "team-a"},
            "spec": {"module": {"source": "m.wasm"}, "replicas": replicas,
                     "resources": {"limits": {"memory": memory}}}
        })
    }

    fn spec(object: &Value) -> WorkloadSpec {
        serde_json::from_value(object["spec"].clone()).unwrap()
    }

    #[test]
    fn workloads_and_objects_are_admitted_up_to_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let a = workload("a", 2, "16Mi");
        store.create("Workload", "team-a", "a", a.clone()).unwrap();
        // No quota: anything goes.
        assert!(
            admit_workload(&store, "team-a", "b", &spec(&workload("b", 9, "1Gi")), true).is_ok()
        );
        store
            .create(
                "ResourceQuota",
                "team-a",
                "compute",
                serde_json::json!({"apiVersion": "flotilla.dev/v1", "kind": "ResourceQuota",
                    "metadata": {"name": "compute", "namespace": "team-a"},
                    "spec": {"hard": {"limits.memory": "64Mi", "count/configs": "1"}}}),
            )
            .unwrap();
        assert!(admit_workload(
            &store,
            "team-a",
            "b",
            &spec(&workload("b", 2, "16Mi")),
            true
        )
        .is_ok());
        let e = admit_workload(
            &store,
            "team-a",
            "b",
            &spec(&workload("b", 1, "33Mi")),
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("exceeded quota: compute, requested: limits.memory=33Mi, used: limits.memory=32Mi, limited: limits.memory=64Mi"), "{e}");
        // Replacing a workload counts its new spec instead of its old one.
        assert!(admit_workload(
            &store,
            "team-a",
            "a",
            &spec(&workload("a", 4, "16Mi")),
            true
        )
        .is_ok());
        // Other namespaces are not this quota's.
        assert!(
            admit_workload(&store, "team-b", "b", &spec(&workload("b", 9, "1Gi")), true).is_ok()
        );
        assert!(admit_create(&store, "team-a", "Config").is_ok());
        assert!(admit_create(&store, "team-a", "Event").is_ok());
        store
            .create(
                "Config",
                "team-a",
                "c",
                serde_json::json!({"apiVersion": "flotilla.dev/v1", "kind": "Config",
                    "metadata": {"name": "c", "namespace": "team-a"}, "data": {}}),
            )
            .unwrap();
        let e = admit_create(&store, "team-a", "Config")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "requested: count/configs=1, used: count/configs=1, limited: count/configs=1"
            ),
            "{e}"
        );
    }

    #[test]
    fn limit_ranges_default_then_bound_a_workload() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        store
            .create(
                "LimitRange",
                "team-a",
                "limits",
                serde_json::json!({"apiVersion": "flotilla.dev/v1", "kind": "LimitRange",
                    "metadata": {"name": "limits", "namespace": "team-a"},
                    "spec": {"limits": [{"default": {"memory": "32Mi"}, "max": {"memory": "64Mi"}}]}}),
            )
            .unwrap();
        let mut bare = workload("a", 1, "1Mi");
        bare["spec"]["resources"] = serde_json::json!({});
        apply_limit_ranges(&store, "team-a", &mut bare).unwrap();
        assert_eq!(bare["spec"]["resources"]["limits"]["memory"], "32Mi");
        assert_eq!(bare["spec"]["resources"]["requests"]["memory"], "32Mi");
        let mut big = workload("a", 1, "65Mi");
        let e = apply_limit_ranges(&store, "team-a", &mut big)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("spec.resources.limits.memory: 65Mi is more than 64Mi"),
            "{e}"
        );
        let mut asks = workload("a", 1, "1Mi");
        asks["spec"]["resources"] = serde_json::json!({"requests": {"memory": "48Mi"}});
        let e = apply_limit_ranges(&store, "team-a", &mut asks)
            .unwrap_err()
            .to_string();
        assert!(e.contains("default limit is lower than the request"), "{e}");
        // Elsewhere nothing is defaulted.
        let mut other = workload("a", 1, "1Mi");
        other["spec"]["resources"] = serde_json::json!({});
        apply_limit_ranges(&store, "team-b", &mut other).unwrap();
        assert_eq!(other["spec"]["resources"], serde_json::json!({}));
    }
}
