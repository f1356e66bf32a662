//! `POST /apis/flotilla.dev/v1/selfsubjectaccessreviews`: may I? — what
//! `flotilla auth can-i VERB KIND [-n NS]` asks, answered by the same
//! authorization every request goes through (as Kubernetes'
//! SelfSubjectAccessReview), for the caller's own credential.
//!
//! ```json
//! {"spec": {"resourceAttributes": {"verb": "list", "resource": "workloads", "namespace": "team-a"}}}
//! ```
//! comes back with `status: {allowed, reason}`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::Method;
use axum::{Extension, Json};
use flotilla_spec::rbac::VERBS;
use flotilla_spec::validate::{check_name, check_object_name};
use serde::Deserialize;
use serde_json::{json, Value};

use super::authz::{self, Caller, Decision};
use super::{ApiError, ApiState, Kind};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    spec: ReviewSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewSpec {
    resource_attributes: Attributes,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attributes {
    verb: String,
    resource: String,
    #[serde(default)]
    subresource: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
}

/// The request the attributes describe: a method, a path, and whether it
/// watches.
fn request_for(a: &Attributes) -> Result<(Method, String, bool), ApiError> {
    // Each becomes one path segment: a `/` would ask about another path.
    let field = |name: &str, value: &str, check: fn(&str) -> Result<(), String>| {
        if value.is_empty() {
            return Ok(());
        }
        check(value).map_err(|e| {
            ApiError::invalid(format!("spec.resourceAttributes.{name}: {value:?}: {e}"))
        })
    };
    field("namespace", &a.namespace, check_name)?;
    field("name", &a.name, check_object_name)?;
    field("subresource", &a.subresource, check_name)?;
    let method = match a.verb.as_str() {
        "get" | "list" | "watch" => Method::GET,
        "create" => Method::POST,
        "update" => Method::PUT,
        "patch" => Method::PATCH,
        "delete" => Method::DELETE,
        other => {
            return Err(ApiError::invalid(format!(
                "spec.resourceAttributes.verb: {other:?} is not a verb (the verbs are {})",
                VERBS.join(", ")
            )))
        }
    };
    if a.resource == "buckets" {
        let ns = if a.namespace.is_empty() {
            "default"
        } else {
            &a.namespace
        };
        let bucket = if a.name.is_empty() { "any" } else { &a.name };
        return Ok((
            method,
            format!("/kv/v1/namespaces/{ns}/buckets/{bucket}/keys"),
            false,
        ));
    }
    let kind = Kind::parse(&a.resource).map_err(|e| ApiError::invalid(e.to_string()))?;
    let mut path = String::from("/apis/flotilla.dev/v1");
    if kind.namespaced() && !a.namespace.is_empty() {
        path += &format!("/namespaces/{}", a.namespace);
    }
    path += &format!("/{}", kind.plural());
    let needs_name = matches!(a.verb.as_str(), "get" | "update" | "patch" | "delete")
        || !a.subresource.is_empty();
    if needs_name {
        // Roles name no objects: any name answers for every name.
        let name = if a.name.is_empty() { "any" } else { &a.name };
        path += &format!("/{name}");
    }
    if !a.subresource.is_empty() {
        path += &format!("/{}", a.subresource);
    }
    Ok((method, path, a.verb == "watch"))
}

/// `POST /apis/flotilla.dev/v1/selfsubjectaccessreviews`.
pub async fn review(
    State(s): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let review: Review = serde_json::from_value(body.clone())
        .map_err(|e| ApiError::invalid(format!("not a SelfSubjectAccessReview: {e}")))?;
    let (method, path, watch) = request_for(&review.spec.resource_attributes)?;
    let store = s.store.clone();
    let decided = tokio::task::spawn_blocking(move || {
        authz::authorize(&caller, &method, &path, watch, store.as_ref())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let (allowed, reason) = match decided {
        Ok(Decision::Allow(_)) => (true, String::new()),
        Ok(Decision::AllowIfBody(_)) => (
            true,
            "allowed for what the body may hold (a node's own objects; roles no wider than the caller's)".into(),
        ),
        Err(e) if matches!(e.code.as_u16(), 403 | 405) => (false, e.message),
        Err(e) => return Err(e),
    };
    let mut answer = body;
    answer["apiVersion"] = json!(flotilla_spec::meta::API_VERSION);
    answer["kind"] = json!("SelfSubjectAccessReview");
    answer["status"] = json!({"allowed": allowed, "reason": reason});
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(namespace: &str, name: &str, subresource: &str) -> Attributes {
        Attributes {
            verb: "get".into(),
            resource: "workloads".into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_question_is_about_one_path_and_names_that_would_leave_it_are_refused() {
        let (method, path, watch) = request_for(&attributes("team-a", "web", "")).unwrap();
        assert_eq!(
            (method, path.as_str(), watch),
            (
                Method::GET,
                "/apis/flotilla.dev/v1/namespaces/team-a/workloads/web",
                false
            )
        );
        for bad in [
            attributes("team-a/namespaces/team-b", "", ""),
            attributes("team-a", "web/../x", ""),
            attributes("team-a", "web", "status/x"),
            attributes("team-a", "web?watch=true", ""),
        ] {
            let e = request_for(&bad).unwrap_err();
            assert!(
                e.message.contains("spec.resourceAttributes."),
                "{}",
                e.message
            );
        }
    }
}
