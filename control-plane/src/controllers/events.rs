//! Recording Events, and expiring old ones.

use std::time::{Duration, SystemTime};

use flotilla_spec::event::{Event, EventSpec, ObjectRef};
use flotilla_spec::meta::{now_rfc3339, ObjectMeta, API_VERSION};

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
        },
        status: None,
    }
}

/// Stores an Event directly (for in-process controllers).
pub fn record(store: &dyn Store, event: &Event) -> Result<(), StoreError> {
    let mut value = serde_json::to_value(event).map_err(|e| StoreError::Backend(e.to_string()))?;
    value["metadata"]["uid"] = uuid::Uuid::new_v4().to_string().into();
    value["metadata"]["creationTimestamp"] = event.spec.timestamp.clone().into();
    store.create(
        "Event",
        &event.metadata.namespace,
        &event.metadata.name,
        value,
    )?;
    Ok(())
}

/// Deletes Events older than [`EVENT_TTL`].
pub fn collect_garbage(store: &dyn Store) -> Result<(), StoreError> {
    let now = SystemTime::now();
    for event in store.list("Event", None)?.items {
        let expired = event["spec"]["timestamp"]
            .as_str()
            .and_then(flotilla_spec::meta::parse_rfc3339)
            .is_some_and(|t| now.duration_since(t).unwrap_or_default() > EVENT_TTL);
        if expired {
            let ns = event["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = event["metadata"]["name"].as_str().unwrap_or_default();
            match store.delete("Event", ns, name) {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
