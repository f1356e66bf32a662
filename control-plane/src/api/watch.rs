//! `?watch=true`: a stream of newline-delimited JSON events
//! (`{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{…}}`), replayed
//! from the change log after `resourceVersion` (or, without one, every
//! current object as ADDED first, then a BOOKMARK annotated
//! `flotilla.dev/initial-events-end` at the list's revision), then live. A
//! BOOKMARK every 5 s carries the latest revision and proves the stream is
//! alive.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::authz::{project, View};
use super::recheck::{Recheck, RECHECK_EVERY};
use super::{ApiError, Kind};
use crate::store::{Store, StoreError};

/// (Clients take a stream silent for three of these as dead: a server
/// stopped or cut off leaves the connection open.)
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);
const CHANGES_PER_READ: usize = 500;
/// The annotation of the BOOKMARK that follows a watch's initial list.
pub const INITIAL_EVENTS_END: &str = "flotilla.dev/initial-events-end";

/// Which objects a list or watch returns.
#[derive(Debug, Clone)]
pub struct Filter {
    /// The kind.
    pub kind: Kind,
    /// One namespace, or all with `None`.
    pub namespace: Option<String>,
    fields: Vec<(Vec<String>, String)>,
    labels: Vec<(String, String)>,
    view: View,
}

impl Filter {
    /// From `fieldSelector=spec.nodeName=n1,metadata.name=x` and
    /// `labelSelector=app=web` (equality only).
    pub fn from_params(
        kind: Kind,
        namespace: Option<String>,
        params: &HashMap<String, String>,
    ) -> Result<Self, ApiError> {
        let pairs =
            |text: Option<&String>, what: &str| -> Result<Vec<(String, String)>, ApiError> {
                text.map(|t| {
                    t.split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            p.split_once('=')
                                .map(|(k, v)| (k.trim_end_matches('=').to_string(), v.to_string()))
                                .ok_or_else(|| {
                                    ApiError::bad_request(format!("{what} {p:?} is not key=value"))
                                })
                        })
                        .collect()
                })
                .unwrap_or(Ok(Vec::new()))
            };
        let fields = pairs(params.get("fieldSelector"), "fieldSelector")?
            .into_iter()
            .map(|(k, v)| (k.split('.').map(String::from).collect(), v))
            .collect();
        Ok(Self {
            kind,
            namespace,
            fields,
            labels: pairs(params.get("labelSelector"), "labelSelector")?,
            view: View::Full,
        })
    }

    /// Shows objects as `view` allows (a node sees others' reduced).
    pub fn with_view(mut self, view: View) -> Self {
        self.view = view;
        self
    }

    /// `object` as the caller may see it, if it passes the selectors —
    /// judged on what the caller sees, so a selector on a field the view
    /// hides cannot tell the caller anything about it.
    pub fn admit(&self, object: Value) -> Option<Value> {
        if let View::Namespaces(allowed) = &self.view {
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
            if !allowed.contains(namespace) {
                return None;
            }
        }
        let seen = project(&self.view, self.kind, object);
        self.matches(&seen).then_some(seen)
    }

    /// Whether `object` passes the selectors.
    pub fn matches(&self, object: &Value) -> bool {
        let fields_ok = self.fields.iter().all(|(path, want)| {
            let found = path.iter().try_fold(object, |v, key| v.get(key));
            found.and_then(Value::as_str).unwrap_or_default() == want
        });
        let labels_ok = self
            .labels
            .iter()
            .all(|(k, v)| object["metadata"]["labels"][k].as_str() == Some(v.as_str()));
        fields_ok && labels_ok
    }

    fn accepts(&self, kind: &str, namespace: &str) -> bool {
        kind == self.kind.name() && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
    }
}

struct WatchState {
    store: Arc<dyn Store>,
    filter: Filter,
    revision: Option<u64>,
    pending: VecDeque<Value>,
    wake: tokio::sync::watch::Receiver<u64>,
    done: bool,
    /// When the last line went out: a BOOKMARK is due [`BOOKMARK_EVERY`]
    /// after it, whether or not the store changed meanwhile (changes this
    /// watch filters out must not starve it of bookmarks).
    last_sent: tokio::time::Instant,
    /// The caller's authorization, judged again as the stream goes on.
    recheck: Option<Recheck>,
    last_check: tokio::time::Instant,
}

fn event_line(event: &Value) -> Bytes {
    let mut line = event.to_string();
    line.push('\n');
    Bytes::from(line)
}

fn error_event(status: ApiError) -> Value {
    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": status.reason, "message": status.message, "code": status.code.as_u16()}})
}

impl WatchState {
    /// Fills `pending` with the next events, waiting for changes if none.
    async fn fill(&mut self) {
        self.fill_events().await;
        if !self.pending.is_empty() {
            self.last_sent = tokio::time::Instant::now();
        }
    }

    async fn fill_events(&mut self) {
        let Some(revision) = self.revision else {
            match self
                .store
                .list(self.filter.kind.name(), self.filter.namespace.as_deref())
            {
                Ok(listing) => {
                    for object in listing
                        .items
                        .into_iter()
                        .filter_map(|o| self.filter.admit(o))
                    {
                        self.pending
                            .push_back(json!({"type": "ADDED", "object": object}));
                    }
                    // Where the list ends, at once (as Kubernetes' initial
                    // events end): a client that resumes from it replays
                    // nothing it already has.
                    self.pending
                        .push_back(self.bookmark(listing.revision, true));
                    self.revision = Some(listing.revision);
                }
                Err(e) => self.fail(e),
            }
            return;
        };
        if !self.still_allowed() {
            return;
        }
        match self.store.changes_since(revision, CHANGES_PER_READ) {
            Err(e) => self.fail(e),
            Ok(changes) if !changes.is_empty() => {
                for change in changes {
                    self.revision = Some(change.revision);
                    if !self.filter.accepts(&change.kind, &change.namespace) {
                        continue;
                    }
                    if let Some(object) = self.filter.admit(change.object) {
                        self.pending
                            .push_back(json!({"type": change.change, "object": object}));
                    }
                }
                if self.pending.is_empty() && self.last_sent.elapsed() >= BOOKMARK_EVERY {
                    let at = self.revision.unwrap_or(revision);
                    self.pending.push_back(self.bookmark(at, false));
                }
            }
            Ok(_) => {
                match tokio::time::timeout_at(self.last_sent + BOOKMARK_EVERY, self.wake.changed())
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => self.done = true,
                    Err(_) => self.pending.push_back(self.bookmark(revision, false)),
                }
            }
        }
    }

    /// A BOOKMARK at `revision`; `initial`: the one that ends the list.
    fn bookmark(&self, revision: u64, initial: bool) -> Value {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial {
            metadata["annotations"] = json!({INITIAL_EVENTS_END: "true"});
        }
        json!({"type": "BOOKMARK", "object": {
            "kind": self.filter.kind.name(), "apiVersion": flotilla_spec::meta::API_VERSION,
            "metadata": metadata}})
    }

    fn fail(&mut self, e: StoreError) {
        self.end(ApiError::from(e));
    }

    fn end(&mut self, e: ApiError) {
        self.pending.push_back(error_event(e));
        self.done = true;
    }

    /// Whether the caller may still watch, judged again every
    /// [`RECHECK_EVERY`]: if not, the stream ends with the refusal; if its
    /// grants narrowed, so does what it sees from now on.
    fn still_allowed(&mut self) -> bool {
        let Some(recheck) = &self.recheck else {
            return true;
        };
        if self.last_check.elapsed() < RECHECK_EVERY {
            return true;
        }
        self.last_check = tokio::time::Instant::now();
        match recheck.view() {
            Ok(view) => {
                self.filter.view = view;
                true
            }
            Err(e) if super::recheck::refuses(&e) => {
                tracing::info!(
                    "ended a watch of {}: {}",
                    self.filter.kind.plural(),
                    e.message
                );
                self.end(e);
                false
            }
            // The store did not answer: judged again at the next recheck,
            // not every stream ended for one busy moment.
            Err(e) => {
                tracing::warn!("could not recheck a watch: {}", e.message);
                true
            }
        }
    }
}

/// The streaming response of a watch.
pub fn watch(
    store: Arc<dyn Store>,
    filter: Filter,
    from: Option<u64>,
    recheck: Option<Recheck>,
) -> Response {
    let wake = store.subscribe();
    let state = WatchState {
        recheck,
        last_check: tokio::time::Instant::now(),
        store,
        filter,
        revision: from,
        pending: VecDeque::new(),
        wake,
        last_sent: tokio::time::Instant::now(),
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.pending.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(event_line(&event)), state));
            }
            if state.done {
                return None;
            }
            state.fill().await;
        }
    });
    (
        [("content-type", "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod robustness {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::{Filter, Kind};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any selector text is a filter or a 400, and any object passes or not.
        #[test]
        fn any_selector_is_a_filter_or_an_error(fields in "[ -~]{0,40}", labels in "[ -~]{0,40}", name in "[a-z.=,]{0,12}") {
            let params = HashMap::from([
                ("fieldSelector".to_string(), fields),
                ("labelSelector".to_string(), labels),
            ]);
            if let Ok(filter) = Filter::from_params(Kind::Instance, None, &params) {
                let object = serde_json::json!({"metadata": {"name": name, "labels": {"a": "b"}}, "spec": {"nodeName": "n"}});
                let _ = filter.matches(&object);
            }
        }
    }
}
