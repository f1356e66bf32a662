//! Authorization of tokens that hold roles in namespaces only
//! ([`Caller::Member`]): what the token's own namespaced role and every
//! RoleBinding naming it grant, evaluated per request (a binding written
//! now counts for the next request), default deny.
//!
//! A request is a verb on a resource in a namespace, as Kubernetes names
//! them: `GET …/workloads/x` is `get workloads`, `GET …/workloads` `list`
//! (or `watch` with `?watch=true`), `POST` `create`, `PUT` `update`,
//! `PATCH` `patch`, `DELETE` `delete`; a subresource is `instances/log`;
//! `/kv/v1/namespaces/{ns}/buckets/…` is `buckets` (`get` to read,
//! `update` to write, `delete`). A list or watch of every namespace
//! (`get -A`) is answered with the namespaces where the token may list
//! that kind. Nothing cluster-scoped is ever allowed: nodes, tokens,
//! policies, `/metrics`.
//!
//! A token cannot grant more than it holds (Kubernetes' escalation check):
//! a Role it writes may list only what it may do itself in that namespace,
//! and a RoleBinding it writes may bind only such a role.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use flotilla_spec::kinds::KINDS;
use flotilla_spec::rbac::{
    BuiltinRole, PolicyRule, RoleBindingSpec, RoleSpec, SUBRESOURCES, VERBS,
};
use serde_json::Value;

use super::authz::{BodyCheck, Decision, Target, View};
use super::{ApiError, Kind};
use crate::store::Store;

/// A token holding roles in namespaces only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The token's id.
    pub token: String,
    /// The built-in role the token itself holds, and where.
    pub own: Option<(BuiltinRole, String)>,
}

/// What a member may do, by namespace.
#[derive(Debug, Default)]
pub struct Grants {
    rules: BTreeMap<String, Vec<PolicyRule>>,
    /// What grants them, for messages: `edit in team-a`.
    sources: Vec<String>,
}

impl Grants {
    /// The member's own role and every RoleBinding naming it.
    pub fn of(member: &Member, store: &dyn Store) -> Result<Self, ApiError> {
        let mut grants = Grants::default();
        if let Some((role, namespace)) = &member.own {
            grants.add(
                namespace,
                role.rules(),
                format!("{} in {namespace}", role.name()),
            );
        }
        for binding in store.list("RoleBinding", None)?.items {
            let namespace = binding["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default();
            let Ok(spec) = serde_json::from_value::<RoleBindingSpec>(binding["spec"].clone())
            else {
                continue;
            };
            if !spec.binds(&member.token) {
                continue;
            }
            let Some(rules) = role_rules(store, namespace, &spec)? else {
                continue;
            };
            grants.add(
                namespace,
                rules,
                format!(
                    "{} {} in {namespace}",
                    spec.role_ref.kind, spec.role_ref.name
                ),
            );
        }
        Ok(grants)
    }

    fn add(&mut self, namespace: &str, rules: Vec<PolicyRule>, source: String) {
        self.rules
            .entry(namespace.to_string())
            .or_default()
            .extend(rules);
        self.sources.push(source);
    }

    /// Whether `verb` on `resource` is allowed in `namespace`.
    pub fn allows(&self, namespace: &str, verb: &str, resource: &str) -> bool {
        self.rules
            .get(namespace)
            .is_some_and(|rules| rules.iter().any(|r| r.allows(verb, resource)))
    }

    /// The namespaces where `verb` on `resource` is allowed.
    pub fn namespaces_allowing(&self, verb: &str, resource: &str) -> BTreeSet<String> {
        self.rules
            .keys()
            .filter(|ns| self.allows(ns, verb, resource))
            .cloned()
            .collect()
    }

    /// What the member holds, for messages.
    pub fn describe(&self) -> String {
        if self.sources.is_empty() {
            "it holds no role anywhere".into()
        } else {
            format!("it holds {}", self.sources.join(", "))
        }
    }

    /// The first of `rules` (verb, resource) not allowed in `namespace`.
    fn first_missing(&self, namespace: &str, rules: &[PolicyRule]) -> Option<(String, String)> {
        let resources: Vec<&str> = KINDS
            .iter()
            .filter(|k| k.namespaced)
            .map(|k| k.plural)
            .chain(SUBRESOURCES.iter().copied())
            .collect();
        let expand = |list: &[String], all: &[&str]| -> Vec<String> {
            if list.iter().any(|x| x == "*") {
                all.iter().map(|s| s.to_string()).collect()
            } else {
                list.to_vec()
            }
        };
        rules.iter().find_map(|rule| {
            let verbs = expand(&rule.verbs, VERBS);
            let resources = expand(&rule.resources, &resources);
            verbs.iter().find_map(|verb| {
                resources
                    .iter()
                    .find(|resource| !self.allows(namespace, verb, resource))
                    .map(|resource| (verb.clone(), resource.clone()))
            })
        })
    }
}

/// The rules a binding grants: a built-in role's, or its Role's (none if
/// that Role does not exist, as in Kubernetes).
fn role_rules(
    store: &dyn Store,
    namespace: &str,
    spec: &RoleBindingSpec,
) -> Result<Option<Vec<PolicyRule>>, ApiError> {
    if spec.role_ref.kind == "ClusterRole" {
        return Ok(BuiltinRole::parse(&spec.role_ref.name).map(BuiltinRole::rules));
    }
    let Some(role) = store.get("Role", namespace, &spec.role_ref.name)? else {
        return Ok(None);
    };
    Ok(serde_json::from_value::<RoleSpec>(role["spec"].clone())
        .ok()
        .map(|r| r.rules))
}

/// Whether a workload the member may read runs the module `digest`.
fn runs_module(grants: &Grants, digest: &str, store: &dyn Store) -> Result<bool, ApiError> {
    for namespace in grants.namespaces_allowing("get", "workloads") {
        if store
            .list("Workload", Some(&namespace))?
            .items
            .iter()
            .any(|w| w["spec"]["module"]["sha256"].as_str() == Some(digest))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The verb of a request on an object path.
pub fn verb(method: &Method, named: bool, watch: bool) -> &'static str {
    match *method {
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

/// The 403 for `what` the member may not do, saying what it holds.
fn refusal(member: &Member, grants: &Grants, what: &str) -> ApiError {
    tracing::warn!("refused {what} to token {}", member.token);
    ApiError::forbidden(format!(
        "token {} may not {what}: {} (an admin grants more with a RoleBinding in that namespace)",
        member.token,
        grants.describe()
    ))
}

/// Decides a member's request.
pub fn authorize(
    member: &Member,
    method: &Method,
    watch: bool,
    target: &Target,
    store: &dyn Store,
) -> Result<Decision, ApiError> {
    let grants = Grants::of(member, store)?;
    let refuse = |what: String| Err(refusal(member, &grants, &what));
    match target {
        Target::AccessReview if *method == Method::POST => Ok(Decision::Allow(View::Full)),
        Target::Bucket {
            namespace,
            bucket,
            batch,
        } => {
            if *batch && *method == Method::POST {
                return Ok(Decision::AllowIfBody(BodyCheck::BucketBatch {
                    member: member.clone(),
                    namespace: namespace.clone(),
                    bucket: bucket.clone(),
                }));
            }
            let verb = match *method {
                Method::GET | Method::HEAD => "get",
                Method::DELETE => "delete",
                _ => "update",
            };
            if grants.allows(namespace, verb, "buckets") {
                Ok(Decision::Allow(View::Full))
            } else {
                refuse(format!("{verb} bucket {bucket} in namespace {namespace}"))
            }
        }
        // Modules are uploaded (and checked for) by whoever deploys; read
        // back only if a workload it may read runs them (another team's
        // module is that team's code).
        Target::Blob(digest) => {
            if *method == Method::GET {
                if runs_module(&grants, digest, store)? {
                    return Ok(Decision::Allow(View::Full));
                }
                return refuse(format!(
                    "read module sha256:{digest}: no workload it may read runs it"
                ));
            }
            if grants.namespaces_allowing("create", "workloads").is_empty() {
                refuse("upload modules (it may create workloads nowhere)".into())
            } else {
                Ok(Decision::Allow(View::Full))
            }
        }
        Target::Object {
            plural,
            namespace,
            name,
            subresource,
        } => {
            let Ok(kind) = Kind::from_plural(plural) else {
                return Err(ApiError::not_found(format!(
                    "the server has no resource type {plural:?}"
                )));
            };
            let verb = verb(method, name.is_some(), watch);
            if !kind.namespaced() {
                return refuse(format!(
                    "{verb} {plural}: they are cluster-scoped, and a namespaced token reaches namespaced objects only"
                ));
            }
            let resource = match subresource {
                Some(sub) => format!("{plural}/{sub}"),
                None => plural.clone(),
            };
            let Some(namespace) = namespace else {
                // Every namespace: those where it may.
                let allowed = grants.namespaces_allowing(verb, &resource);
                if allowed.is_empty() || !matches!(verb, "list" | "watch") {
                    return refuse(format!("{verb} {resource} in any namespace"));
                }
                return Ok(Decision::Allow(View::Namespaces(allowed)));
            };
            if !grants.allows(namespace, verb, &resource) {
                return refuse(format!("{verb} {resource} in namespace {namespace}"));
            }
            let writes = matches!(verb, "create" | "update" | "patch");
            // An eviction is a delete that budgets may refuse.
            let eviction = resource == "instances/eviction" && verb == "create";
            if writes
                && !eviction
                && (subresource.is_some() || matches!(kind, Kind::Instance | Kind::Volume))
            {
                // Whatever a Role says: these are the controllers' and the
                // nodes' to write (an instance names its node and its
                // template, a status what happened), not a tenant's.
                return refuse(format!(
                    "{verb} {resource} in namespace {namespace}: instances, volumes and statuses are written by the controllers and the nodes (write the workload; delete an instance to restart it)"
                ));
            }
            if !matches!(verb, "get" | "list" | "watch")
                && matches!(kind, Kind::ResourceQuota | Kind::LimitRange)
            {
                // A cap its tenant could lift caps nothing.
                return refuse(format!(
                    "{verb} {resource} in namespace {namespace}: quotas and limit ranges are set by cluster admins"
                ));
            }
            // A Workload's reach is judged on the object to store, by the
            // handler (`objects::check_workload`): a patch's merge counts.
            if matches!(kind, Kind::Role | Kind::RoleBinding)
                && matches!(verb, "create" | "update" | "patch")
            {
                return Ok(Decision::AllowIfBody(BodyCheck::NoEscalation {
                    member: member.clone(),
                    namespace: namespace.clone(),
                    kind,
                }));
            }
            Ok(Decision::Allow(View::Full))
        }
        Target::NodeCertificate => refuse("get a node certificate".into()),
        _ => refuse(
            "use this path: a namespaced token reaches namespaced objects only (/metrics is cluster-wide: a workload's own usage is under …/workloads/NAME/usage)"
                .into(),
        ),
    }
}

/// Whether a Workload write changes nothing in `stored`'s spec but the
/// replicas, the pause and the restart stamp: what a member may do to a
/// workload an admin deployed with reach a member may not give.
pub fn only_scales(object: &Value, stored: &Value) -> bool {
    let rest = |workload: &Value| {
        let mut spec = workload["spec"].clone();
        if let Some(spec) = spec.as_object_mut() {
            for field in ["replicas", "paused", "restartedAt"] {
                spec.remove(field);
            }
        }
        spec
    };
    rest(object) == rest(stored)
}

/// Refuses a Workload that reaches outside its namespace: the node's own
/// files (`hostPath` volumes, `spec.dirs`) or workloads of a namespace
/// where the member may not even read workloads.
/// (`grants.hosts` are the network's, as a pod's egress is in Kubernetes:
/// what a node serves must authenticate its callers.)
pub fn check_workload_reach(
    member: &Member,
    namespace: &str,
    body: &Value,
    store: &dyn Store,
) -> Result<(), ApiError> {
    let spec = &body["spec"];
    let refuse = |what: String| {
        tracing::warn!("refused a workload of token {}: {what}", member.token);
        Err(ApiError::forbidden(format!(
            "token {} may not deploy {what}",
            member.token
        )))
    };
    let list = |value: &Value| value.as_array().cloned().unwrap_or_default();
    for (i, volume) in list(&spec["volumes"]).iter().enumerate() {
        if !volume["hostPath"].is_null() {
            return refuse(format!(
                "a hostPath volume (spec.volumes[{i}]): it reaches the node's own files, outside any namespace; use emptyDir or persistent, or ask a cluster admin to deploy it"
            ));
        }
    }
    if !list(&spec["dirs"]).is_empty() {
        return refuse(
            "spec.dirs: they reach the node's own files, outside any namespace; use volumes (emptyDir or persistent), or ask a cluster admin to deploy it".into(),
        );
    }
    let grants = Grants::of(member, store)?;
    for (i, target) in list(&spec["grants"]["workloads"]).iter().enumerate() {
        let target = target.as_str().unwrap_or_default();
        let Some((other, _)) = target.split_once('/') else {
            continue;
        };
        if other != namespace && !grants.allows(other, "get", "workloads") {
            return refuse(format!(
                "spec.grants.workloads[{i}] {target}: calls into namespace {other}, where it may not read workloads ({}); a RoleBinding there granting get workloads allows it",
                grants.describe()
            ));
        }
    }
    Ok(())
}

/// Refuses a bucket batch whose verb the member does not hold: `get`
/// reads, `set` updates, `delete` deletes (a body that is none of them
/// alone is the handler's 400).
pub fn check_bucket_batch(
    member: &Member,
    namespace: &str,
    bucket: &str,
    body: &Value,
    store: &dyn Store,
) -> Result<(), ApiError> {
    let grants = Grants::of(member, store)?;
    for (field, verb) in [("get", "get"), ("set", "update"), ("delete", "delete")] {
        if !body[field].is_null() && !grants.allows(namespace, verb, "buckets") {
            let what = format!("{verb} bucket {bucket} in namespace {namespace}");
            return Err(refusal(member, &grants, &what));
        }
    }
    Ok(())
}

/// Refuses a Role, or a RoleBinding's role, that grants more than the
/// member holds in `namespace`. A patch is judged by the spec it sends,
/// which must be whole (a merge patch replaces a Role's rules whole, and a
/// binding's spec without its roleRef is refused).
pub fn check_escalation(
    member: &Member,
    namespace: &str,
    kind: Kind,
    body: &Value,
    store: &dyn Store,
) -> Result<(), ApiError> {
    let grants = Grants::of(member, store)?;
    let invalid = |e: serde_json::Error| {
        ApiError::invalid(format!(
            "spec: not a {} a token may write (send the whole object): {e}",
            kind.name()
        ))
    };
    let rules = match kind {
        Kind::Role => {
            serde_json::from_value::<RoleSpec>(body["spec"].clone())
                .map_err(invalid)?
                .rules
        }
        _ => {
            let spec =
                serde_json::from_value::<RoleBindingSpec>(body["spec"].clone()).map_err(invalid)?;
            // A binding of a Role not written yet would grant whatever an
            // admin later puts in it: refused, as Kubernetes does.
            role_rules(store, namespace, &spec)?.ok_or_else(|| {
                ApiError::forbidden(format!(
                    "token {} may not bind {} {} in namespace {namespace}: it does not exist (write the Role first)",
                    member.token, spec.role_ref.kind, spec.role_ref.name
                ))
            })?
        }
    };
    match grants.first_missing(namespace, &rules) {
        None => Ok(()),
        Some((verb, resource)) => {
            tracing::warn!("refused an escalation to token {}", member.token);
            Err(ApiError::forbidden(format!(
                "token {} may not grant {verb} {resource} in namespace {namespace}: it does not hold it itself ({}); a role or binding may grant only what its writer holds",
                member.token,
                grants.describe()
            )))
        }
    }
}
