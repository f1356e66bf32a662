//! Disruption budgets, applied: the eviction API (`POST …/instances/NAME/
//! eviction`, what `flotilla drain` calls), the rolling update's bound and
//! the budget status controller all judge a budget from the store as it is
//! now ([`status_now`]), never from a status written earlier.
//!
//! An eviction records the instance in the budget's
//! `status.disruptedInstances` with a compare-and-swap on the budget before
//! it deletes the instance: two evictions judged at once — on two servers
//! sharing etcd — cannot both spend the last allowed disruption, because
//! the second's write conflicts and, judged again, finds the first's
//! instance counted as disrupted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use flotilla_spec::disruption::{
    assess, DisruptionBudget, DisruptionBudgetStatus, Selected, DISRUPTED_FOR_SECONDS,
};
use flotilla_spec::instance::Instance;
use flotilla_spec::meta::{now_rfc3339, parse_rfc3339};
use flotilla_spec::workload::Workload;
use serde_json::Value;

use crate::controllers::workloads::WORKLOAD_LABEL;
use crate::store::{decoded_by_namespace, revision_of, Store, StoreError};

/// How often an eviction is judged again when its budget write conflicts.
const EVICTION_RETRIES: usize = 16;

/// Why an instance was not evicted.
#[derive(Debug, thiserror::Error)]
pub enum EvictionError {
    /// No such instance.
    #[error("instance {namespace}/{name} not found")]
    NotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A budget allows no disruption now.
    #[error(
        "cannot evict instance {namespace}/{instance}: it would violate disruption budget {budget} ({} of {} expected instances must stay healthy and {} are): try again once a replacement is ready",
        status.desired_healthy,
        status.expected_instances,
        status.current_healthy
    )]
    Blocked {
        /// The instance's namespace.
        namespace: String,
        /// The instance.
        instance: String,
        /// The budget that blocks it.
        budget: String,
        /// That budget's status, as judged.
        status: DisruptionBudgetStatus,
    },
    /// Its budgets kept changing while it was judged (evictions beside it).
    #[error("instance {namespace}/{name}: its disruption budgets changed {EVICTION_RETRIES} times while the eviction was judged (other evictions are under way): try again")]
    Busy {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The namespace's budgets with their stored form (for compare-and-swap).
fn budgets(
    store: &dyn Store,
    namespace: &str,
) -> Result<Vec<(Value, DisruptionBudget)>, StoreError> {
    Ok(store
        .list("DisruptionBudget", Some(namespace))?
        .items
        .into_iter()
        .filter_map(|value| {
            let budget = serde_json::from_value(value.clone()).ok()?;
            Some((value, budget))
        })
        .collect())
}

/// What runs in one namespace, decoded once for every budget in it.
struct Namespace {
    instances: Vec<Instance>,
    workloads: Vec<Workload>,
}

impl Namespace {
    fn read(store: &dyn Store, namespace: &str) -> Result<Self, StoreError> {
        let decode = |kind: &str| -> Result<Vec<Value>, StoreError> {
            Ok(store.list(kind, Some(namespace))?.items)
        };
        Ok(Self {
            instances: decode("Instance")?
                .into_iter()
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect(),
            workloads: decode("Workload")?
                .into_iter()
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect(),
        })
    }
}

/// The labels a workload's instances carry (its own and its name).
fn instance_labels(workload: &Workload) -> BTreeMap<String, String> {
    let mut labels = workload.metadata.labels.clone();
    labels.insert(WORKLOAD_LABEL.into(), workload.metadata.name.clone());
    labels
}

/// Whether an eviction recorded at `at` still counts as under way at `now`.
/// A time in the future (beyond servers' clock skew) was not written by an
/// eviction: it counts for nothing, rather than forever.
fn under_way(at: &str, now: SystemTime) -> bool {
    const SKEW: Duration = Duration::from_secs(30);
    parse_rfc3339(at).is_some_and(|at| {
        at <= now + SKEW
            && now.duration_since(at).unwrap_or_default()
                < Duration::from_secs(DISRUPTED_FOR_SECONDS)
    })
}

/// A budget's status as the namespace stands: the instances it selects,
/// and the instances their workloads ask for (`replicas`, or an every-node
/// workload's desired count) — of workloads whose instances it selects.
fn status_in(budget: &DisruptionBudget, ns: &Namespace, now: SystemTime) -> DisruptionBudgetStatus {
    let selector = &budget.spec.selector;
    let selected: Vec<&Instance> = ns
        .instances
        .iter()
        .filter(|i| selector.matches(&i.metadata.labels))
        // A Job's attempts run to an end: no budget holds them.
        .filter(|i| {
            i.metadata
                .owner_references
                .first()
                .is_none_or(|o| o.kind != "Job")
        })
        .collect();
    let owners: BTreeSet<&str> = selected.iter().map(|i| i.spec.workload.as_str()).collect();
    let expected = ns
        .workloads
        .iter()
        .filter(|w| {
            owners.contains(w.metadata.name.as_str()) || selector.matches(&instance_labels(w))
        })
        .map(|w| {
            if w.spec.placement.every_node {
                w.status.as_ref().map_or(0, |s| s.desired_replicas)
            } else {
                w.spec.replicas
            }
        })
        .fold(0u32, u32::saturating_add);
    let selected: Vec<Selected> = selected
        .iter()
        .map(|i| Selected {
            uid: i.metadata.uid.clone(),
            ready: i.status.as_ref().is_some_and(|s| s.ready),
        })
        .collect();
    assess(budget, &selected, expected, |_, at| under_way(at, now))
}

/// One pass of the budget status controller: every budget's status brought
/// up to date, written only when it changed.
pub fn pass(store: &dyn Store) -> Result<(), StoreError> {
    let by_namespace = decoded_by_namespace::<DisruptionBudget>(store, "DisruptionBudget")?;
    let now = SystemTime::now();
    for (namespace, budgets) in by_namespace {
        let ns = Namespace::read(store, &namespace)?;
        for (value, budget) in budgets {
            let status = status_in(&budget, &ns, now);
            if budget.status.as_ref() == Some(&status) {
                continue;
            }
            match write_status(store, value, &status) {
                // Changed or deleted meanwhile (an eviction): the next pass
                // sees it.
                Ok(()) | Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Writes `status` on the budget stored as `value`, if it is unchanged.
fn write_status(
    store: &dyn Store,
    mut value: Value,
    status: &DisruptionBudgetStatus,
) -> Result<(), StoreError> {
    let expected = revision_of(&value);
    let namespace = value["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    value["status"] =
        serde_json::to_value(status).map_err(|e| StoreError::Backend(e.to_string()))?;
    store
        .update("DisruptionBudget", &namespace, &name, value, expected)
        .map(drop)
}

/// Evicts an instance if every budget selecting it allows one more
/// disruption: records it in each, then deletes it. An instance that is
/// not ready costs no budget (it is not serving: taking it away breaks
/// nothing, and a drain is never stuck on a crash-looping replica).
/// Returns the deleted instance.
pub fn evict(store: &dyn Store, namespace: &str, name: &str) -> Result<Value, EvictionError> {
    let not_found = || EvictionError::NotFound {
        namespace: namespace.into(),
        name: name.into(),
    };
    for _ in 0..EVICTION_RETRIES {
        let Some(value) = store.get("Instance", namespace, name)? else {
            return Err(not_found());
        };
        let labels: BTreeMap<String, String> =
            serde_json::from_value(value["metadata"]["labels"].clone()).unwrap_or_default();
        let ready = value["status"]["ready"].as_bool() == Some(true);
        let selecting: Vec<(Value, DisruptionBudget)> = budgets(store, namespace)?
            .into_iter()
            .filter(|(_, b)| b.spec.selector.matches(&labels))
            .collect();
        // A Job's attempt is no budget's (see `status_in`).
        let job = crate::controllers::jobs::owned_by_a_job(&value);
        if ready && !job && !selecting.is_empty() {
            let uid = value["metadata"]["uid"].as_str().unwrap_or_default();
            match spend(store, namespace, name, uid, selecting)? {
                Spent::Yes => {}
                Spent::Conflict => continue,
            }
        }
        return match store.delete("Instance", namespace, name) {
            Ok(deleted) => Ok(deleted),
            Err(StoreError::NotFound { .. }) => Err(not_found()),
            Err(e) => Err(e.into()),
        };
    }
    Err(EvictionError::Busy {
        namespace: namespace.into(),
        name: name.into(),
    })
}

enum Spent {
    Yes,
    /// A budget changed between reading and writing it: judge again.
    Conflict,
}

/// Records the eviction of instance `name` (`uid`) in every budget of
/// `selecting`, or refuses it naming the first that allows no more.
fn spend(
    store: &dyn Store,
    namespace: &str,
    name: &str,
    uid: &str,
    selecting: Vec<(Value, DisruptionBudget)>,
) -> Result<Spent, EvictionError> {
    let ns = Namespace::read(store, namespace)?;
    let now = SystemTime::now();
    let mut writes = Vec::new();
    for (value, budget) in selecting {
        let mut status = status_in(&budget, &ns, now);
        // Recorded by an attempt that did not get to delete it: spent.
        if status.disrupted_instances.contains_key(uid) {
            continue;
        }
        if status.disruptions_allowed == 0 {
            return Err(EvictionError::Blocked {
                namespace: namespace.into(),
                instance: name.into(),
                budget: budget.metadata.name.clone(),
                status,
            });
        }
        status.disruptions_allowed -= 1;
        status.current_healthy = status.current_healthy.saturating_sub(1);
        status.disrupted_instances.insert(uid.into(), now_rfc3339());
        writes.push((value, status));
    }
    for (value, status) in writes {
        match write_status(store, value, &status) {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => {
                return Ok(Spent::Conflict)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Spent::Yes)
}

/// How many more of a workload's ready instances its budgets let a rolling
/// update take down now (`None`: no budget selects them), with the budget
/// that allows the fewest.
pub fn rollout_allowance(
    store: &dyn Store,
    workload: &Workload,
) -> Result<Option<(String, u32)>, StoreError> {
    let namespace = &workload.metadata.namespace;
    let labels = instance_labels(workload);
    let selecting: Vec<DisruptionBudget> = budgets(store, namespace)?
        .into_iter()
        .map(|(_, b)| b)
        .filter(|b| b.spec.selector.matches(&labels))
        .collect();
    if selecting.is_empty() {
        return Ok(None);
    }
    let ns = Namespace::read(store, namespace)?;
    let now = SystemTime::now();
    Ok(selecting
        .iter()
        .map(|b| {
            (
                b.metadata.name.clone(),
                status_in(b, &ns, now).disruptions_allowed,
            )
        })
        .min_by_key(|(_, allowed)| *allowed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use serde_json::json;

    const NS: &str = "default";

    fn store_with(ready: &[bool], budget: Value) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        store
            .create(
                "Workload",
                NS,
                "web",
                json!({"apiVersion": "flotilla.dev/v1", "kind": "Workload",
                       "metadata": {"name": "web", "namespace": NS, "labels": {"app": "web"}},
                       "spec": {"module": {"source": "m.wasm"}, "replicas": ready.len()}}),
            )
            .unwrap();
        for (n, ready) in ready.iter().enumerate() {
            let name = format!("web-{n}");
            store
                .create(
                    "Instance",
                    NS,
                    &name,
                    json!({"apiVersion": "flotilla.dev/v1", "kind": "Instance",
                           "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{n}"),
                                        "labels": {"app": "web", WORKLOAD_LABEL: "web"}},
                           "spec": {"workload": "web", "nodeName": "edge-a",
                                    "template": {"module": {"source": "m.wasm"}}},
                           "status": {"phase": "Running", "ready": ready}}),
                )
                .unwrap();
        }
        let mut object = json!({"apiVersion": "flotilla.dev/v1", "kind": "DisruptionBudget",
                                "metadata": {"name": "web-budget", "namespace": NS},
                                "spec": {"selector": {"matchLabels": {"app": "web"}}}});
        object["spec"]
            .as_object_mut()
            .unwrap()
            .extend(budget.as_object().unwrap().clone());
        store
            .create("DisruptionBudget", NS, "web-budget", object)
            .unwrap();
        (dir, store)
    }

    fn present(store: &SqliteStore, name: &str) -> bool {
        store.get("Instance", NS, name).unwrap().is_some()
    }

    #[test]
    fn an_eviction_spends_the_budget_and_the_next_is_refused_naming_it() {
        let (_dir, store) = store_with(&[true, true, true], json!({"maxUnavailable": 1}));
        evict(&store, NS, "web-0").unwrap();
        assert!(!present(&store, "web-0"));
        let err = evict(&store, NS, "web-1").unwrap_err();
        let EvictionError::Blocked {
            ref budget,
            ref status,
            ..
        } = err
        else {
            panic!("{err}")
        };
        assert_eq!(budget, "web-budget");
        assert_eq!((status.current_healthy, status.desired_healthy), (2, 2));
        assert!(
            err.to_string()
                .contains("would violate disruption budget web-budget (2 of 3 expected instances must stay healthy and 2 are)"),
            "{err}"
        );
        assert!(
            present(&store, "web-1"),
            "a refused eviction deletes nothing"
        );
        assert!(matches!(
            evict(&store, NS, "nothing"),
            Err(EvictionError::NotFound { .. })
        ));
    }

    #[test]
    fn an_eviction_is_recorded_by_uid_and_a_future_time_counts_for_nothing() {
        let (_dir, store) = store_with(&[true, true, true, true], json!({"maxUnavailable": 3}));
        evict(&store, NS, "web-0").unwrap();
        let status = |store: &SqliteStore| {
            store
                .get("DisruptionBudget", NS, "web-budget")
                .unwrap()
                .unwrap()["status"]
                .clone()
        };
        assert!(
            status(&store)["disruptedInstances"]["uid-0"].is_string(),
            "{}",
            status(&store)
        );
        // Recorded but not yet gone (its delete lost): web-1 counts as
        // disrupted; 1 of 4 must stay healthy, web-2 and web-3 are: one
        // more eviction is left.
        let mut budget = store
            .get("DisruptionBudget", NS, "web-budget")
            .unwrap()
            .unwrap();
        budget["status"]["disruptedInstances"]["uid-1"] = now_rfc3339().into();
        // A time far ahead was not written by an eviction.
        budget["status"]["disruptedInstances"]["uid-2"] = "2999-01-01T00:00:00Z".into();
        let rv = revision_of(&budget);
        store
            .update("DisruptionBudget", NS, "web-budget", budget, rv)
            .unwrap();
        evict(&store, NS, "web-3").unwrap();
        assert!(matches!(
            evict(&store, NS, "web-2"),
            Err(EvictionError::Blocked { .. })
        ));
        // Its eviction already recorded, web-1 costs nothing more.
        evict(&store, NS, "web-1").unwrap();
    }

    #[test]
    fn an_instance_that_is_not_ready_is_evicted_whatever_the_budget() {
        let (_dir, store) = store_with(&[true, true, false], json!({"minAvailable": "100%"}));
        assert!(matches!(
            evict(&store, NS, "web-0"),
            Err(EvictionError::Blocked { .. })
        ));
        evict(&store, NS, "web-2").unwrap();
        assert!(!present(&store, "web-2"));
    }

    #[test]
    fn concurrent_evictions_never_spend_more_than_the_budget_allows() {
        let (_dir, store) = store_with(&[true; 8], json!({"maxUnavailable": 2}));
        let store = std::sync::Arc::new(store);
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let store = store.clone();
                std::thread::spawn(move || evict(store.as_ref(), NS, &format!("web-{n}")))
            })
            .collect();
        let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let evicted = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(evicted, 2, "{outcomes:?}");
        assert!(outcomes.iter().all(|o| o.is_ok()
            || matches!(
                o,
                Err(EvictionError::Blocked { .. } | EvictionError::Busy { .. })
            )));
        let left = store.list("Instance", Some(NS)).unwrap().items.len();
        assert_eq!(left, 6);
    }

    #[test]
    fn the_status_pass_and_the_rollout_allowance_follow_what_is_ready() {
        let (_dir, store) = store_with(&[true, true, false], json!({"maxUnavailable": 1}));
        pass(&store).unwrap();
        let status = store
            .get("DisruptionBudget", NS, "web-budget")
            .unwrap()
            .unwrap()["status"]
            .clone();
        assert_eq!(
            status,
            json!({"observedGeneration": 0, "expectedInstances": 3, "currentHealthy": 2,
                   "desiredHealthy": 2, "disruptionsAllowed": 0})
        );
        let workload: Workload =
            serde_json::from_value(store.get("Workload", NS, "web").unwrap().unwrap()).unwrap();
        assert_eq!(
            rollout_allowance(&store, &workload).unwrap(),
            Some(("web-budget".to_string(), 0))
        );
        let revision = store.revision().unwrap();
        pass(&store).unwrap();
        assert_eq!(
            store.revision().unwrap(),
            revision,
            "an unchanged status is not written"
        );
    }
}
