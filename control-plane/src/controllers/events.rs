//! Recording Events, and expiring old ones.

use std::time::{Duration, SystemTime};

use flotilla_spec::event::{Event, EventSpec, ObjectRef};
use flotilla_spec::meta::{now_rfc3339, ObjectMeta, API_VERSION};

use serde_json::Value;

use crate::store::{Store, StoreError};

/// Events older than this are deleted.
pub const EVENT_TTL: Duration = Duration::from_secs(3600);

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy)]
pub enum Severity {
    /// Routine.
    Normal,
    /// Needs attention.
    Warning,
}

/// Builds an Event about `object`.
pub fn event(
    object: ObjectRef,
    severity: Severity,
    reason: &str,
    message: String,
    source: &str,
) -> Event {
    let namespace = if object.namespace.is_empty() {
        "default".to_string()
    } else {
        object.namespace.clone()
    };
    Event {
        api_version: API_VERSION.into(),
        kind: "Event".into(),
        metadata: ObjectMeta {
            name: format!("{}.{:016x}", object.name, rand::random::<u64>()),
            namespace,
            ..ObjectMeta::default()
        },
        spec: EventSpec {
            involved_object: object,
            kind: match severity {
                Severity::Normal => "Normal",
                Severity::Warning => "Warning",
            }
            .into(),
            reason: reason.into(),
            message,
            source: source.into(),
            timestamp: now_rfc3339(),
            ..EventSpec::default()
        },
        status: None,
    }
}

/// Stores an Event directly (for in-process controllers).
pub fn record(store: &dyn Store, event: &Event) -> Result<(), StoreError> {
    let value = serde_json::to_value(event).map_err(|e| StoreError::Backend(e.to_string()))?;
    store_folded(store, &event.metadata.namespace, value).map(drop)
}

/// How often folding an event into its aggregate is retried on a conflict.
const FOLD_RETRIES: usize = 16;

/// Stores an Event, folding a repeat (same object, type, reason, message,
/// source: [`EventSpec::aggregate_name`]) into the one already stored: its
/// `count` goes up, `timestamp` moves to the latest, `firstTimestamp` stays.
/// A crash loop makes one Event with a count instead of thousands.
pub fn store_folded(
    store: &dyn Store,
    namespace: &str,
    mut value: Value,
) -> Result<Value, StoreError> {
    let spec: EventSpec = serde_json::from_value(value["spec"].clone())
        .map_err(|e| StoreError::Backend(format!("event spec: {e}")))?;
    let name = spec.aggregate_name();
    value["metadata"]["name"] = name.clone().into();
    for _ in 0..FOLD_RETRIES {
        let Some(mut existing) = store.get("Event", namespace, &name)? else {
            let mut first = value.clone();
            first["spec"]["count"] = 1.into();
            first["spec"]["firstTimestamp"] = spec.timestamp.clone().into();
            if first["metadata"]["uid"].is_null() {
                first["metadata"]["uid"] = uuid::Uuid::new_v4().to_string().into();
            }
            if first["metadata"]["creationTimestamp"].is_null() {
                first["metadata"]["creationTimestamp"] = now_rfc3339().into();
            }
            match store.create("Event", namespace, &name, first) {
                Err(StoreError::AlreadyExists { .. }) => continue,
                other => return other,
            }
        };
        let count = existing["spec"]["count"].as_u64().unwrap_or(1).max(1);
        existing["spec"]["count"] = (count.saturating_add(1).min(u64::from(u32::MAX))).into();
        existing["spec"]["timestamp"] = spec.timestamp.clone().into();
        let expected = crate::store::revision_of(&existing);
        match store.update("Event", namespace, &name, existing, expected) {
            // Changed, or collected, meanwhile: fold into what is there now.
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => continue,
            other => return other,
        }
    }
    Err(StoreError::Backend(format!(
        "event {namespace}/{name}: {FOLD_RETRIES} conflicting writes in a row"
    )))
}

/// Most Events kept at once: past it the oldest go first, whatever their
/// age, so churning instances cannot grow the store for a whole TTL (a soak
/// of 1,000 churned instances made ~100,000 in 8 minutes).
pub const MAX_EVENTS: usize = 10_000;

/// Deletes Events older than [`EVENT_TTL`], then the oldest past
/// [`MAX_EVENTS`].
pub fn collect_garbage(store: &dyn Store) -> Result<(), StoreError> {
    collect(store, EVENT_TTL, MAX_EVENTS)
}

fn collect(store: &dyn Store, ttl: Duration, max: usize) -> Result<(), StoreError> {
    let now = SystemTime::now();
    let mut kept = Vec::new();
    for event in store.list("Event", None)?.items {
        let at = event["spec"]["timestamp"]
            .as_str()
            .and_then(flotilla_spec::meta::parse_rfc3339);
        let expired = at.is_some_and(|t| now.duration_since(t).unwrap_or_default() > ttl);
        if expired {
            delete(store, &event)?;
        } else {
            kept.push((at.unwrap_or(now), event));
        }
    }
    if kept.len() > max {
        kept.sort_by_key(|(at, _)| *at);
        let excess = kept.len() - max;
        for (_, event) in &kept[..excess] {
            delete(store, event)?;
        }
    }
    Ok(())
}

fn delete(store: &dyn Store, event: &Value) -> Result<(), StoreError> {
    let ns = event["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = event["metadata"]["name"].as_str().unwrap_or_default();
    super::delete_if_present(store, "Event", ns, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn repeats_fold_into_one_event_with_a_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        let about = ObjectRef {
            kind: "Instance".into(),
            namespace: "default".into(),
            name: "web-x7k2q".into(),
        };
        let crash = || {
            event(
                about.clone(),
                Severity::Warning,
                "Error",
                "exit code 3".into(),
                "agent/a",
            )
        };
        for _ in 0..3 {
            record(&store, &crash()).unwrap();
        }
        record(
            &store,
            &event(
                about.clone(),
                Severity::Warning,
                "Error",
                "exit code 4".into(),
                "agent/a",
            ),
        )
        .unwrap();
        let events = store.list("Event", Some("default")).unwrap().items;
        assert_eq!(events.len(), 2, "{events:?}");
        let folded = events
            .iter()
            .find(|e| e["spec"]["message"] == "exit code 3")
            .unwrap();
        assert_eq!(folded["spec"]["count"], 3, "{folded}");
        assert!(folded["spec"]["firstTimestamp"].is_string(), "{folded}");
        assert!(folded["metadata"]["uid"].is_string(), "{folded}");
    }

    #[test]
    fn past_the_cap_the_oldest_events_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        for i in 0..5 {
            let about = ObjectRef {
                kind: "Instance".into(),
                namespace: "default".into(),
                name: format!("web-{i}"),
            };
            record(
                &store,
                &event(about, Severity::Normal, "Started", "ok".into(), "agent/a"),
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(1100));
        }
        collect(&store, EVENT_TTL, 3).unwrap();
        let mut left: Vec<String> = store
            .list("Event", None)
            .unwrap()
            .items
            .iter()
            .map(|e| {
                e["spec"]["involvedObject"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        left.sort();
        assert_eq!(left, ["web-2", "web-3", "web-4"]);
    }
}
