//! Object handlers: list (or watch), get, create, replace, merge patch,
//! replace status, delete.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::admission::{for_create, for_replace, for_status, namespace_for};
use super::authz::{Caller, View};
use super::rbac::Member;
use super::recheck::Recheck;
use super::watch::{watch, Filter};
use super::{ApiError, ApiState, Kind};

type Params = Query<HashMap<String, String>>;
pub(super) type ApiResult = Result<Response, ApiError>;

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

fn not_found(kind: Kind, namespace: &str, name: &str) -> ApiError {
    let place = if namespace.is_empty() {
        String::new()
    } else {
        format!(" in namespace {namespace:?}")
    };
    ApiError::not_found(format!("{} {name:?} not found{place}", kind.plural()))
}

/// Most items one page may ask for.
const MAX_PAGE: usize = 10_000;

/// `?limit=N&continue=TOKEN`, as Kubernetes pages lists. Each page is read
/// at the store's current revision (there is no snapshot to hold), in
/// namespace/name order, after the last item of the previous page.
struct Page {
    limit: Option<usize>,
    after: Option<(String, String)>,
}

impl Page {
    fn from_params(params: &HashMap<String, String>) -> Result<Self, ApiError> {
        let limit = match params.get("limit").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(text) => Some(
                text.parse::<usize>()
                    .ok()
                    .filter(|&n| n <= MAX_PAGE)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit {text:?} is not a number from 1 to {MAX_PAGE}"
                        ))
                    })?,
            ),
        };
        let after = match params.get("continue").map(String::as_str) {
            None | Some("") => None,
            Some(token) => Some(parse_continue(token).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "continue token {token:?} is not one this server gave: list again from the start"
                ))
            })?),
        };
        Ok(Self { limit, after })
    }
}

/// An object's place in list order.
fn object_key(object: &Value) -> (String, String) {
    let meta = &object["metadata"];
    (
        meta["namespace"].as_str().unwrap_or_default().to_string(),
        meta["name"].as_str().unwrap_or_default().to_string(),
    )
}

/// An opaque token for "after this object".
fn continue_token((namespace, name): &(String, String)) -> String {
    hex::encode(format!("{namespace}/{name}"))
}

fn parse_continue(token: &str) -> Option<(String, String)> {
    let text = String::from_utf8(hex::decode(token).ok()?).ok()?;
    let (namespace, name) = text.split_once('/')?;
    Some((namespace.to_string(), name.to_string()))
}

async fn list(
    state: Arc<ApiState>,
    kind: Kind,
    namespace: Option<String>,
    params: HashMap<String, String>,
    view: View,
    recheck: Option<Recheck>,
) -> ApiResult {
    let filter = Filter::from_params(kind, namespace, &params)?.with_view(view);
    if super::query_flag(&params, "watch") {
        let from = match params.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("resourceVersion {rv:?} is not a number"))
            })?),
        };
        return Ok(watch(state.store.clone(), filter, from, recheck).into_response());
    }
    let listing = state.store.list(kind.name(), filter.namespace.as_deref())?;
    let page = Page::from_params(&params)?;
    let mut items: Vec<Value> = listing
        .items
        .into_iter()
        .filter_map(|o| filter.admit(o))
        .filter(|o| {
            page.after
                .as_ref()
                .is_none_or(|after| &object_key(o) > after)
        })
        .collect();
    let mut metadata = json!({"resourceVersion": listing.revision.to_string()});
    if let Some(limit) = page.limit.filter(|&l| l < items.len()) {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some(last) = items.last() {
            metadata["continue"] = continue_token(&object_key(last)).into();
            metadata["remainingItemCount"] = remaining.into();
        }
    }
    Ok(Json(json!({
        "apiVersion": flotilla_spec::meta::API_VERSION,
        "kind": format!("{}List", kind.name()),
        "metadata": metadata,
        "items": items,
    }))
    .into_response())
}

async fn get_one(state: Arc<ApiState>, kind: Kind, namespace: String, name: String) -> ApiResult {
    match state.store.get(kind.name(), &namespace, &name)? {
        Some(object) => Ok(Json(object).into_response()),
        None => Err(not_found(kind, &namespace, &name)),
    }
}

async fn create(
    state: Arc<ApiState>,
    kind: Kind,
    namespace: String,
    body: Bytes,
    member: Option<Member>,
) -> ApiResult {
    let body = parse_body(&body)?;
    // Said before any registry is asked (an apply tries a create first).
    if let Some(name) = body["metadata"]["name"].as_str() {
        if state.store.get(kind.name(), &namespace, name)?.is_some() {
            return Err(
                crate::store::StoreError::already_exists(kind.name(), &namespace, name).into(),
            );
        }
    }
    let body = super::oci::resolve_module(&state, kind, &namespace, body, None).await?;
    let mut object = for_create(kind, &namespace, body, &state.blobs)?;
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Checked and stored under the lock: two writes cannot both take the
    // room a quota has left for one, nor one host.
    let mut _admission = None;
    if kind == Kind::Workload {
        _admission = Some(state.admission.lock().await);
        check_workload(&state, &namespace, &mut object, None, member.as_ref())?;
    } else if kind == Kind::Job {
        _admission = Some(state.admission.lock().await);
        check_job(&state, &namespace, &mut object, None, member.as_ref())?;
    } else if crate::quota::counted(kind.name()) {
        _admission = Some(state.admission.lock().await);
        crate::quota::admit_create(state.store.as_ref(), &namespace, kind.name())
            .map_err(refused)?;
    }
    let created = if kind == Kind::Event {
        // Repeats fold into one Event with a count.
        crate::controllers::events::store_folded(state.store.as_ref(), &namespace, object)?
    } else {
        state.store.create(kind.name(), &namespace, &name, object)?
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn replace(
    state: Arc<ApiState>,
    kind: Kind,
    namespace: String,
    name: String,
    body: Bytes,
    status_only: bool,
    member: Option<Member>,
) -> ApiResult {
    let how = if status_only {
        Write::Status
    } else {
        Write::Replace
    };
    write(state, kind, namespace, name, body, how, member).await
}

/// What a Workload write must pass besides admission, judged on the object
/// to store (for a patch, the merge; so fields it does not name count
/// too): the namespace's LimitRanges fill in and bound its requests and
/// limits, its hosts are its namespace's, a member's workload reaches
/// nothing outside its namespace — unless the write only scales, pauses or
/// restarts a workload an admin wrote that way — and the namespace's
/// quotas have room for it. A quota that stops a change of a stored
/// workload (a scale, say) is said by an Event on it too.
fn check_workload(
    state: &ApiState,
    namespace: &str,
    object: &mut Value,
    stored: Option<&Value>,
    member: Option<&Member>,
) -> Result<(), ApiError> {
    let store = state.store.as_ref();
    // A write that leaves the resources as stored (a scale, a pause, a
    // restart, a change of anything else) keeps them as they were
    // admitted: no default written into a workload older than the
    // LimitRange (its template, so every replica, would change), no bound
    // or "must specify" applied after the fact.
    let resources_kept =
        stored.is_some_and(|stored| stored["spec"]["resources"] == object["spec"]["resources"]);
    if !resources_kept {
        crate::quota::apply_limit_ranges(store, namespace, object).map_err(refused)?;
    }
    if let Some(why) = crate::route_hosts::conflict(store, namespace, object, stored)? {
        return Err(ApiError::invalid(format!("spec.routes: {why}")));
    }
    if let Some(member) = member {
        if !stored.is_some_and(|stored| super::rbac::only_scales(object, stored)) {
            super::rbac::check_workload_reach(member, namespace, object, store)?;
        }
    }
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let spec: flotilla_spec::workload::WorkloadSpec =
        serde_json::from_value(object["spec"].clone())
            .map_err(|e| ApiError::invalid(format!("spec: {e}")))?;
    if let Err(refusal) =
        crate::quota::admit_workload(store, namespace, name, &spec, !resources_kept)
    {
        if let (Some(_), crate::quota::Refusal::Quota(why)) = (stored, &refusal) {
            let event = crate::controllers::events::event(
                flotilla_spec::event::ObjectRef {
                    kind: "Workload".into(),
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                },
                crate::controllers::events::Severity::Warning,
                "ExceededQuota",
                format!("a change to {} replicas was refused: {why}", spec.replicas),
                "apiserver",
            );
            if let Err(e) = crate::controllers::events::record(store, &event) {
                tracing::warn!("recording a quota refusal of {namespace}/{name}: {e}");
            }
        }
        return Err(refused(refusal));
    }
    Ok(())
}

/// A Job's template gets what a Workload's spec gets — LimitRange defaults
/// and bounds, a member's reach (hostPath, dirs, grants), the namespace's
/// quotas (its `parallelism` attempts at once, as replicas) — judged as a
/// workload of its own (`NAME.job`: no workload is named with a dot).
fn check_job(
    state: &ApiState,
    namespace: &str,
    object: &mut Value,
    stored: Option<&Value>,
    member: Option<&Member>,
) -> Result<(), ApiError> {
    let store = state.store.as_ref();
    let template = |v: &Value| v["spec"]["template"].clone();
    let mut as_workload = json!({
        "apiVersion": object["apiVersion"],
        "kind": "Workload",
        "metadata": object["metadata"],
        "spec": template(object),
    });
    let resources_kept = stored.is_some_and(|stored| {
        stored["spec"]["template"]["resources"] == object["spec"]["template"]["resources"]
    });
    if !resources_kept {
        crate::quota::apply_limit_ranges(store, namespace, &mut as_workload).map_err(refused)?;
        object["spec"]["template"] = as_workload["spec"].clone();
    }
    if let Some(member) = member {
        super::rbac::check_workload_reach(member, namespace, &as_workload, store)?;
    }
    let mut spec: flotilla_spec::workload::WorkloadSpec =
        serde_json::from_value(as_workload["spec"].clone())
            .map_err(|e| ApiError::invalid(format!("spec.template: {e}")))?;
    spec.replicas = object["spec"]["parallelism"].as_u64().unwrap_or(1) as u32;
    let name = format!(
        "{}.job",
        object["metadata"]["name"].as_str().unwrap_or_default()
    );
    crate::quota::admit_workload(store, namespace, &name, &spec, !resources_kept).map_err(refused)
}

/// A quota's refusal is 403 (as Kubernetes'), a LimitRange's bounds 422.
fn refused(refusal: crate::quota::Refusal) -> ApiError {
    match refusal {
        crate::quota::Refusal::Store(e) => e.into(),
        crate::quota::Refusal::Quota(why) => ApiError::forbidden(why),
        crate::quota::Refusal::Limits(why) => ApiError::invalid(why),
    }
}

/// How a write to an existing object treats the body.
enum Write {
    /// The body is the whole new object.
    Replace,
    /// The body is the new status.
    Status,
    /// The body is a merge patch of the object (status excluded).
    MergePatch,
}

/// How often a write without a `resourceVersion` is retried on a fresh
/// read after losing a race with another writer.
const WRITE_RETRIES: usize = 16;

/// A write to an existing object. It is computed from the stored object
/// (a status write keeps the spec, a patch the fields it does not name), so
/// it is stored only if nothing changed the object meanwhile: with the
/// caller's `resourceVersion` (a conflict is the caller's 409), else with the
/// one it was computed from, retried on a fresh read. An unconditional write
/// would let a heartbeat undo a concurrent epoch raise or cordon.
async fn write(
    state: Arc<ApiState>,
    kind: Kind,
    namespace: String,
    name: String,
    body: Bytes,
    how: Write,
    member: Option<Member>,
) -> ApiResult {
    let body = parse_body(&body)?;
    let mut attempt = 0;
    loop {
        let stored = state
            .store
            .get(kind.name(), &namespace, &name)?
            .ok_or_else(|| not_found(kind, &namespace, &name))?;
        let (object, expected) = match how {
            Write::Status => for_status(kind, &namespace, &name, body.clone(), &stored)?,
            Write::Replace => {
                let body = super::oci::resolve_module(
                    &state,
                    kind,
                    &namespace,
                    body.clone(),
                    Some(&stored),
                )
                .await?;
                for_replace(kind, &namespace, &name, body, &stored, &state.blobs)?
            }
            Write::MergePatch => {
                let mut patched = stored.clone();
                // Optimistic concurrency on the caller's part only if the
                // patch asks for it.
                if let Some(meta) = patched["metadata"].as_object_mut() {
                    meta.remove("resourceVersion");
                }
                super::merge_patch::apply(&mut patched, &body);
                let patched =
                    super::oci::resolve_module(&state, kind, &namespace, patched, Some(&stored))
                        .await?;
                for_replace(kind, &namespace, &name, patched, &stored, &state.blobs)?
            }
        };
        let mut object = object;
        let mut _admission = None;
        if matches!(kind, Kind::Workload | Kind::Job) && !matches!(how, Write::Status) {
            _admission = Some(state.admission.lock().await);
            let check = if kind == Kind::Job {
                check_job
            } else {
                check_workload
            };
            check(
                &state,
                &namespace,
                &mut object,
                Some(&stored),
                member.as_ref(),
            )?;
        }
        let ours = expected.is_none();
        let expected = expected.or_else(|| crate::store::revision_of(&stored));
        match state
            .store
            .update(kind.name(), &namespace, &name, object, expected)
        {
            Ok(updated) => return Ok(Json(updated).into_response()),
            Err(crate::store::StoreError::Conflict { .. }) if ours && attempt < WRITE_RETRIES => {
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn delete(state: Arc<ApiState>, kind: Kind, namespace: String, name: String) -> ApiResult {
    // A node deleted is a node revoked: its certificates are refused from
    // now on (else it would register itself again at its next heartbeat).
    let revoked = if kind == Kind::Node {
        crate::node_certificates::revoke_node(state.store.as_ref(), &name)?
    } else {
        0
    };
    match state.store.delete(kind.name(), &namespace, &name) {
        Ok(object) => Ok(Json(object).into_response()),
        // A node that got certificates but never registered.
        Err(crate::store::StoreError::NotFound { .. }) if revoked > 0 => Ok(Json(json!({
            "kind": "Status",
            "status": "Success",
            "message": format!("node {name} was not registered; its {revoked} certificate(s) are revoked"),
        }))
        .into_response()),
        Err(crate::store::StoreError::NotFound { .. }) => Err(not_found(kind, &namespace, &name)),
        Err(e) => Err(e.into()),
    }
}

/// GET /namespaces/{ns}/{plural}
pub async fn list_namespaced(
    State(s): State<Arc<ApiState>>,
    Path((ns, plural)): Path<(String, String)>,
    Query(p): Params,
    view: Option<Extension<View>>,
    recheck: Option<Extension<Recheck>>,
) -> ApiResult {
    let kind = Kind::from_plural(&plural)?;
    let ns = namespace_for(kind, Some(&ns))?;
    let view = view.map(|v| v.0).unwrap_or_default();
    list(s, kind, Some(ns), p, view, recheck.map(|r| r.0)).await
}

/// POST /namespaces/{ns}/{plural}
pub async fn create_namespaced(
    State(s): State<Arc<ApiState>>,
    Path((ns, plural)): Path<(String, String)>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> ApiResult {
    let kind = Kind::from_plural(&plural)?;
    let ns = namespace_for(kind, Some(&ns))?;
    create(s, kind, ns, body, member_of(caller)).await
}

/// The caller if it is a member (a namespaced token).
fn member_of(caller: Option<Extension<Caller>>) -> Option<Member> {
    match caller {
        Some(Extension(Caller::Member(member))) => Some(member),
        _ => None,
    }
}

/// GET /namespaces/{ns}/{plural}/{name}
pub async fn get_namespaced(
    State(s): State<Arc<ApiState>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
) -> ApiResult {
    let kind = Kind::from_plural(&plural)?;
    let ns = namespace_for(kind, Some(&ns))?;
    get_one(s, kind, ns, name).await
}

/// PUT /namespaces/{ns}/{plural}/{name}
pub async fn replace_namespaced(
    State(s): State<Arc<ApiState>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> ApiResult {
    let kind = Kind::from_plural(&plural)?;
    let ns = namespace_for(kind, Some(&ns))?;
    replace(s, kind, ns, name, body, false, member_of(caller)).await
}

/// PUT /namespaces/{ns}/{plural}/{name}/status
pub async fn replace_status_namespaced(
    State(s): State<Arc<ApiState>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult {
    let kind = Kind::from_plural(&plural)?;
    let ns = namespace_for(kind, Some(&ns))?;
    replace(s, kind, ns, name, body, true, None).await
}

/// PATCH /namespaces/{ns}/{plural}/{name} (`application/merge-patch+json`)
pub async fn patch_namespaced(
    State(s): State<Arc<ApiState>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
    headers: axum::http::HeaderMap,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> ApiResult {
    check_patch_type(&headers)?;
    let kind = Kind::from_plural(&plural)?;
    let ns = namespace_for(kind, Some(&ns))?;
    write(
        s,
        kind,
        ns,
        name,
        body,
        Write::MergePatch,
        member_of(caller),
    )
    .await
}

/// PATCH /{plural}/{name} (cluster-scoped kinds)
pub async fn patch_cluster(
    State(s): State<Arc<ApiState>>,
    Path((plural, name)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_patch_type(&headers)?;
    let kind = cluster_scoped(&plural)?;
    write(s, kind, String::new(), name, body, Write::MergePatch, None).await
}

/// Only merge patches (RFC 7386) are understood.
fn check_patch_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/merge-patch+json");
    if content_type.starts_with("application/merge-patch+json")
        || content_type.starts_with("application/json")
    {
        return Ok(());
    }
    Err(ApiError {
        code: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        reason: "UnsupportedMediaType",
        message: format!(
            "PATCH body of type {content_type:?} is not supported: send a JSON merge patch (Content-Type: application/merge-patch+json)"
        ),
    })
}

/// DELETE /namespaces/{ns}/{plural}/{name}
pub async fn delete_namespaced(
    State(s): State<Arc<ApiState>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
) -> ApiResult {
    let kind = Kind::from_plural(&plural)?;
    let ns = namespace_for(kind, Some(&ns))?;
    delete(s, kind, ns, name).await
}

/// GET /{plural}: a cluster-scoped kind, or a namespaced kind across all namespaces.
pub async fn list_cluster(
    State(s): State<Arc<ApiState>>,
    Path(plural): Path<String>,
    Query(p): Params,
    view: Option<Extension<View>>,
    recheck: Option<Extension<Recheck>>,
) -> ApiResult {
    let kind = Kind::from_plural(&plural)?;
    let ns = if kind.namespaced() {
        None
    } else {
        Some(String::new())
    };
    let view = view.map(|v| v.0).unwrap_or_default();
    list(s, kind, ns, p, view, recheck.map(|r| r.0)).await
}

fn cluster_scoped(plural: &str) -> Result<Kind, ApiError> {
    let kind = Kind::from_plural(plural)?;
    if kind.namespaced() {
        return Err(ApiError::not_found(format!(
            "{plural} are namespaced: use /apis/flotilla.dev/v1/namespaces/{{namespace}}/{plural}"
        )));
    }
    Ok(kind)
}

/// POST /{plural} (cluster-scoped kinds)
pub async fn create_cluster(
    State(s): State<Arc<ApiState>>,
    Path(plural): Path<String>,
    body: Bytes,
) -> ApiResult {
    create(s, cluster_scoped(&plural)?, String::new(), body, None).await
}

/// GET /{plural}/{name} (cluster-scoped kinds)
pub async fn get_cluster(
    State(s): State<Arc<ApiState>>,
    Path((plural, name)): Path<(String, String)>,
) -> ApiResult {
    get_one(s, cluster_scoped(&plural)?, String::new(), name).await
}

/// PUT /{plural}/{name} (cluster-scoped kinds)
pub async fn replace_cluster(
    State(s): State<Arc<ApiState>>,
    Path((plural, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    replace(
        s,
        cluster_scoped(&plural)?,
        String::new(),
        name,
        body,
        false,
        None,
    )
    .await
}

/// PUT /{plural}/{name}/status (cluster-scoped kinds)
pub async fn replace_status_cluster(
    State(s): State<Arc<ApiState>>,
    Path((plural, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    replace(
        s,
        cluster_scoped(&plural)?,
        String::new(),
        name,
        body,
        true,
        None,
    )
    .await
}

/// DELETE /{plural}/{name} (cluster-scoped kinds)
pub async fn delete_cluster(
    State(s): State<Arc<ApiState>>,
    Path((plural, name)): Path<(String, String)>,
) -> ApiResult {
    delete(s, cluster_scoped(&plural)?, String::new(), name).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Change, Listing, SqliteStore, Store, StoreError};

    /// A store where another writer raises a node's epoch just before the
    /// first update of an API write lands: the race, made deterministic.
    struct Racing {
        inner: SqliteStore,
        raced: std::sync::atomic::AtomicBool,
    }

    impl Store for Racing {
        fn get(&self, k: &str, ns: &str, n: &str) -> Result<Option<Value>, StoreError> {
            self.inner.get(k, ns, n)
        }
        fn list(&self, k: &str, ns: Option<&str>) -> Result<Listing, StoreError> {
            self.inner.list(k, ns)
        }
        fn create(&self, k: &str, ns: &str, n: &str, o: Value) -> Result<Value, StoreError> {
            self.inner.create(k, ns, n, o)
        }
        fn update(
            &self,
            k: &str,
            ns: &str,
            n: &str,
            o: Value,
            e: Option<u64>,
        ) -> Result<Value, StoreError> {
            if !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let mut node = self.inner.get(k, ns, n)?.unwrap();
                let rv = node["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .ok();
                node["spec"]["epoch"] = 7.into();
                node["spec"]["unschedulable"] = true.into();
                self.inner.update(k, ns, n, node, rv)?;
            }
            self.inner.update(k, ns, n, o, e)
        }
        fn delete(&self, k: &str, ns: &str, n: &str) -> Result<Value, StoreError> {
            self.inner.delete(k, ns, n)
        }
        fn changes_since(&self, r: u64, l: usize) -> Result<Vec<Change>, StoreError> {
            self.inner.changes_since(r, l)
        }
        fn revision(&self) -> Result<u64, StoreError> {
            self.inner.revision()
        }
        fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
            self.inner.subscribe()
        }
        fn put_blob(&self, d: &str, b: &[u8]) -> Result<(), StoreError> {
            self.inner.put_blob(d, b)
        }
        fn get_blob(&self, d: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get_blob(d)
        }
        fn has_blob(&self, d: &str) -> Result<bool, StoreError> {
            self.inner.has_blob(d)
        }
        fn blob_digests(&self) -> Result<Vec<String>, StoreError> {
            self.inner.blob_digests()
        }
        fn delete_blob(&self, d: &str) -> Result<(), StoreError> {
            self.inner.delete_blob(d)
        }
    }

    fn node_body(heartbeat: &str) -> Bytes {
        Bytes::from(
            json!({
                "apiVersion": flotilla_spec::meta::API_VERSION,
                "kind": "Node",
                "metadata": {"name": "edge"},
                "spec": {},
                "status": {"ready": true, "lastHeartbeat": heartbeat},
            })
            .to_string(),
        )
    }

    fn test_state(dir: &std::path::Path, store: Arc<dyn Store>) -> Arc<ApiState> {
        let trust = crate::trust::ClusterTrust::load_or_create(
            &dir.join("pki"),
            &["localhost".to_string()],
            &Default::default(),
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        Arc::new(ApiState {
            store,
            tokens: Default::default(),
            streams: Default::default(),
            event_rate: Default::default(),
            blobs: Arc::new(crate::store::BlobStore::open(&dir.join("blobs")).unwrap()),
            kv: Arc::new(flotilla_kv::SqliteKv::open(&dir.join("kv.db"), "test").unwrap()),
            metrics: Default::default(),
            usage: crate::api::usage::UsageHistory::new(crate::api::usage::DEFAULT_INTERVAL),
            insecure_registries: Vec::new(),
            audit: None,
            admission: Default::default(),
            node_tls: trust.node_client_config().unwrap(),
            trust: Arc::new(trust),
        })
    }

    #[tokio::test]
    async fn lists_page_with_limit_and_continue() {
        let dir = tempfile::tempdir().unwrap();
        let state = test_state(
            dir.path(),
            Arc::new(SqliteStore::open(&dir.path().join("store.db")).unwrap()),
        );
        for name in ["e", "a", "d", "b", "c"] {
            let body = json!({
                "apiVersion": flotilla_spec::meta::API_VERSION,
                "kind": "Node",
                "metadata": {"name": name},
                "spec": {},
            });
            create(
                state.clone(),
                Kind::Node,
                String::new(),
                Bytes::from(body.to_string()),
                None,
            )
            .await
            .unwrap();
        }
        let page = |query: &[(&str, &str)]| {
            let params: HashMap<String, String> = query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let state = state.clone();
            async move {
                let response = list(
                    state,
                    Kind::Node,
                    Some(String::new()),
                    params,
                    View::Full,
                    None,
                )
                .await;
                let response = response.map_err(|e| e.message)?;
                let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
                Ok::<Value, String>(serde_json::from_slice(&body).unwrap())
            }
        };
        let names = |list: &Value| -> Vec<String> {
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
                .collect()
        };
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let list = page(&[("limit", "2"), ("continue", &token)]).await.unwrap();
            seen.extend(names(&list));
            match list["metadata"]["continue"].as_str() {
                Some(next) => token = next.to_string(),
                None => break,
            }
            assert!(list["metadata"]["remainingItemCount"].as_u64().unwrap() > 0);
        }
        assert_eq!(seen, ["a", "b", "c", "d", "e"]);
        assert_eq!(names(&page(&[]).await.unwrap()).len(), 5);
        assert!(page(&[("limit", "x")]).await.unwrap_err().contains("limit"));
        assert!(page(&[("continue", "zz")])
            .await
            .unwrap_err()
            .contains("continue token"));
    }

    #[tokio::test]
    async fn a_heartbeat_never_undoes_a_concurrent_epoch_raise_or_cordon() {
        let dir = tempfile::tempdir().unwrap();
        let racing = Arc::new(Racing {
            inner: SqliteStore::open(&dir.path().join("store.db")).unwrap(),
            raced: true.into(),
        });
        let state = test_state(dir.path(), racing.clone());
        create(
            state.clone(),
            Kind::Node,
            String::new(),
            node_body("t0"),
            None,
        )
        .await
        .unwrap();
        // Arm the race for the heartbeat's write.
        racing
            .raced
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let heartbeat = write(
            state.clone(),
            Kind::Node,
            String::new(),
            "edge".into(),
            node_body("t1"),
            Write::Status,
            None,
        )
        .await;
        assert!(heartbeat.is_ok(), "the heartbeat is retried, not refused");
        let stored = state.store.get("Node", "", "edge").unwrap().unwrap();
        assert_eq!(stored["spec"]["epoch"], 7, "{stored}");
        assert_eq!(stored["spec"]["unschedulable"], true, "{stored}");
        assert_eq!(stored["status"]["lastHeartbeat"], "t1", "{stored}");
    }
}
