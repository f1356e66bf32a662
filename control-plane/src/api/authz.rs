//! Who may do what: authorization by route and verb (never by substring),
//! with the Node authorizer's and NodeRestriction's rules for nodes.
//!
//! | caller | may |
//! |---|---|
//! | admin | everything |
//! | view | read everything but tokens, secrets and key-value buckets |
//! | node `n` | read all Nodes, Volumes and NodeCertificates (the revocation list), and write the status of the Volumes it holds; create its own Node (empty spec) and write its own Node's status; list and watch Instances and Workloads (those not its own reduced to what routing needs); read, and write the status of, Instances bound to `n`, and read their logs, Workloads, modules and the Configs and Secrets they name; use the `cluster` buckets they are granted; create Events about itself or its instances; renew its certificate |
//! | join token | get a node certificate, nothing else |
//! | namespaced token | what its own role in its namespace and the RoleBindings naming it allow ([`rbac`](super::rbac)) |
//!
//! A node never writes any spec: cordon, labels, taints and epochs belong
//! to the control plane and admins.

use axum::http::Method;
use serde_json::{json, Value};

use super::rbac::{self, Member};
use super::{ApiError, Kind};
use crate::store::Store;

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin token (or a token with the admin role).
    Admin,
    /// A read-only token.
    View,
    /// A node, by the certificate the CA issued it.
    Node(String),
    /// A join token: good for getting a node certificate only.
    Joiner,
    /// A token holding roles in namespaces only.
    Member(Member),
}

impl Caller {
    /// A name for logs and per-client limits (never a secret).
    pub fn name(&self) -> String {
        match self {
            Caller::Admin => "admin".into(),
            Caller::View => "view".into(),
            Caller::Node(n) => format!("system:node:{n}"),
            Caller::Joiner => "join-token".into(),
            Caller::Member(m) => format!("token:{}", m.token),
        }
    }
}

/// What a request addresses, parsed from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/healthz`, `/cacerts`, `/openapi.json`: anyone.
    Public,
    /// `POST /certificates/node`: join, or renew a node's certificate.
    NodeCertificate,
    /// `POST /apis/flotilla.dev/v1/selfsubjectaccessreviews`: what may I do?
    AccessReview,
    /// `/blobs/sha256/{digest}`.
    Blob(String),
    /// `/kv/v1/namespaces/{ns}/buckets/{bucket}/…`: a cluster bucket.
    Bucket {
        /// Its namespace.
        namespace: String,
        /// Its name.
        bucket: String,
        /// `POST …/batch`: its verb is in the body (get, set or delete).
        batch: bool,
    },
    /// `/apis/flotilla.dev/v1/[namespaces/{ns}/]{plural}[/{name}[/{sub}]]`.
    Object {
        /// The kind's URL plural (unknown ones are the handlers' 404).
        plural: String,
        /// The namespace, for namespaced paths.
        namespace: Option<String>,
        /// The object, if one is named.
        name: Option<String>,
        /// `status` or `log`.
        subresource: Option<String>,
    },
    /// Anything else (the router answers 404).
    Unknown,
}

impl Target {
    /// Parses a request path, segment by segment, each percent-decoded as
    /// the router decodes it (`%74okens` is `tokens`).
    pub fn parse(path: &str) -> Self {
        let decoded: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(|segment| {
                percent_encoding::percent_decode_str(segment)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
        match parts.as_slice() {
            ["healthz"] | ["cacerts"] | ["openapi.json"] => Target::Public,
            ["certificates", "node"] => Target::NodeCertificate,
            ["apis", "flotilla.dev", "v1", "selfsubjectaccessreviews"] => Target::AccessReview,
            ["blobs", "sha256", digest] => Target::Blob((*digest).to_string()),
            ["kv", "v1", "namespaces", ns, "buckets", bucket, rest @ ..] if !rest.is_empty() => {
                Target::Bucket {
                    namespace: (*ns).to_string(),
                    bucket: (*bucket).to_string(),
                    batch: rest == ["batch"],
                }
            }
            ["apis", "flotilla.dev", "v1", "namespaces", ns, rest @ ..] if !rest.is_empty() => {
                Self::object(Some(ns), rest)
            }
            ["apis", "flotilla.dev", "v1", rest @ ..] if !rest.is_empty() => {
                Self::object(None, rest)
            }
            _ => Target::Unknown,
        }
    }

    fn object(namespace: Option<&str>, rest: &[&str]) -> Self {
        let owned = |s: Option<&&str>| s.map(|s| (*s).to_string());
        if rest.len() > 3 {
            return Target::Unknown;
        }
        Target::Object {
            plural: rest[0].to_string(),
            namespace: namespace.map(str::to_string),
            name: owned(rest.get(1)),
            subresource: owned(rest.get(2)),
        }
    }
}

/// How much of the objects a permitted list or watch returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum View {
    /// Whole objects.
    #[default]
    Full,
    /// For node `n`: its own objects whole, others reduced to what routing
    /// needs (see [`project`]).
    Node(String),
    /// Whole objects of these namespaces only (a namespaced token's list
    /// of every namespace).
    Namespaces(std::collections::BTreeSet<String>),
}

/// What a request may do once authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead, with this view of lists and watches.
    Allow(View),
    /// Go ahead once the JSON body passes this check (creates by nodes).
    AllowIfBody(BodyCheck),
}

/// A check of a node's create body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyCheck {
    /// A Node named after the caller, with an empty spec.
    OwnNode(String),
    /// An Event about the caller or an instance bound to it, in `namespace`.
    OwnEvent {
        /// The caller.
        node: String,
        /// The namespace of the events collection.
        namespace: String,
    },
    /// A bucket batch whose verb (get, set → update, delete) `member`
    /// holds for buckets in `namespace`.
    BucketBatch {
        /// The caller.
        member: Member,
        /// The bucket's namespace.
        namespace: String,
        /// The bucket.
        bucket: String,
    },
    /// A Role or RoleBinding granting no more than `member` holds.
    NoEscalation {
        /// The writer.
        member: Member,
        /// Where.
        namespace: String,
        /// Role or RoleBinding.
        kind: Kind,
    },
}

fn forbidden(caller: &Caller, method: &Method, path: &str, why: &str) -> ApiError {
    tracing::warn!("refused {method} {path} to {}", caller.name());
    ApiError::forbidden(why.to_string())
}

/// Decides a request, reading the store for the node rules that depend on
/// an object (which node an instance is bound to).
pub fn authorize(
    caller: &Caller,
    method: &Method,
    path: &str,
    watch: bool,
    store: &dyn Store,
) -> Result<Decision, ApiError> {
    let target = Target::parse(path);
    if target == Target::AccessReview && *method == Method::POST && *caller != Caller::Joiner {
        // Anyone may ask what they may do.
        return Ok(Decision::Allow(View::Full));
    }
    let read = *method == Method::GET || *method == Method::HEAD;
    let allow = Ok(Decision::Allow(View::Full));
    if target == Target::Public {
        return allow;
    }
    if let Target::Object {
        plural,
        subresource,
        ..
    } = &target
    {
        if !read && Kind::from_plural(plural).ok() == Some(Kind::Revision) {
            return Err(ApiError::method_not_allowed(
                "revisions are written by the workload controller only: change the workload instead (flotilla rollout undo brings an earlier revision back)",
            ));
        }
        // Volumes: made by the binder, measured by their nodes, deleted by
        // admins (which drops the data).
        let volume_write_allowed = *method == Method::DELETE
            || (*method == Method::PUT && subresource.as_deref() == Some("status"));
        if !read && Kind::from_plural(plural).ok() == Some(Kind::Volume) && !volume_write_allowed {
            return Err(ApiError::method_not_allowed(
                "volumes are made by the scheduler when it first places a stateful replica: change the workload's spec.volumes instead (delete a volume to drop its data)",
            ));
        }
    }
    match caller {
        Caller::Admin => allow,
        Caller::View => match &target {
            Target::Object { plural, .. } if Kind::from_plural(plural).ok() == Some(Kind::Token) => Err(forbidden(
                caller,
                method,
                path,
                "the view role cannot read tokens; use an admin token",
            )),
            Target::Object { plural, .. } if Kind::from_plural(plural).ok() == Some(Kind::Secret) => Err(forbidden(
                caller,
                method,
                path,
                "the view role cannot read secrets; use an admin token",
            )),
            Target::Bucket { .. } => Err(forbidden(
                caller,
                method,
                path,
                "the view role cannot read key-value buckets (their values may be secrets); use an admin token",
            )),
            _ if read => allow,
            _ => Err(forbidden(
                caller,
                method,
                path,
                "the view role is read-only; use an admin token to change the cluster",
            )),
        },
        Caller::Joiner => match target {
            Target::NodeCertificate if *method == Method::POST => allow,
            _ => Err(forbidden(
                caller,
                method,
                path,
                "a join token is good for joining only: an agent joins with it and then uses its own node certificate; use an admin token for this",
            )),
        },
        Caller::Node(node) => authorize_node(node, caller, method, path, &target, store),
        Caller::Member(member) => rbac::authorize(member, method, watch, &target, store),
    }
}

fn authorize_node(
    node: &str,
    caller: &Caller,
    method: &Method,
    path: &str,
    target: &Target,
    store: &dyn Store,
) -> Result<Decision, ApiError> {
    let read = *method == Method::GET || *method == Method::HEAD;
    let allow = |view: View| Ok(Decision::Allow(view));
    let deny = |why: String| Err(forbidden(caller, method, path, &why));
    let (plural, namespace, name, subresource) = match target {
        Target::NodeCertificate if *method == Method::POST => return allow(View::Full),
        Target::Blob(digest) if read => {
            return if bound_instances(store, node)?
                .iter()
                .any(|i| i["spec"]["template"]["module"]["sha256"].as_str() == Some(digest))
            {
                allow(View::Full)
            } else {
                deny(format!(
                    "node {node} may read only the modules of instances bound to it"
                ))
            };
        }
        Target::Bucket {
            namespace, bucket, ..
        } => {
            return if bound_instances(store, node)?.iter().any(|i| {
                i["metadata"]["namespace"].as_str() == Some(namespace)
                    && grants_cluster_bucket(&i["spec"]["template"], bucket)
            }) {
                allow(View::Full)
            } else {
                deny(format!(
                    "node {node} may use only the cluster buckets granted to instances bound to it; {namespace}/{bucket} is not one"
                ))
            };
        }
        Target::Object {
            plural,
            namespace,
            name,
            subresource,
        } => (
            plural.as_str(),
            namespace.as_deref(),
            name.as_deref(),
            subresource.as_deref(),
        ),
        _ => return deny(format!("node {node} may not {method} {path}")),
    };
    let Ok(kind) = Kind::from_plural(plural) else {
        return deny(format!("node {node} may not use {plural}"));
    };
    match (kind, name, subresource) {
        // Lists and watches: a node's own objects whole, others projected.
        // The revocation list included: every node refuses revoked peers.
        (Kind::Node | Kind::Volume | Kind::NodeCertificate, None, None) if read => {
            allow(View::Full)
        }
        (Kind::Instance | Kind::Workload, None, None) if read => allow(View::Node(node.into())),
        (Kind::Volume, Some(n), Some("status")) if *method == Method::PUT => {
            let ns = namespace.unwrap_or_default();
            if on_node(store, kind, ns, n, node)? {
                allow(View::Full)
            } else {
                deny(format!(
                    "node {node} may report only the volumes it holds; {ns}/{n} is not one"
                ))
            }
        }
        (Kind::Node, None, None) if *method == Method::POST => {
            Ok(Decision::AllowIfBody(BodyCheck::OwnNode(node.into())))
        }
        (Kind::Event, None, None) if *method == Method::POST => {
            Ok(Decision::AllowIfBody(BodyCheck::OwnEvent {
                node: node.into(),
                namespace: namespace.unwrap_or_default().into(),
            }))
        }
        (Kind::Node, Some(_), None) if read => allow(View::Full),
        (Kind::Node, Some(n), Some("status")) if *method == Method::PUT => {
            if n == node {
                allow(View::Full)
            } else {
                deny(format!("node {node} may write only its own Node's status, not {n}'s"))
            }
        }
        (Kind::Instance, Some(n), sub)
            if (read && matches!(sub, None | Some("log")))
                || (*method == Method::PUT && sub == Some("status")) =>
        {
            let ns = namespace.unwrap_or_default();
            if on_node(store, kind, ns, n, node)? {
                allow(View::Full)
            } else {
                deny(format!(
                    "node {node} may read and report only instances bound to it; {ns}/{n} is not"
                ))
            }
        }
        (Kind::Config | Kind::Secret, Some(n), None) if read => {
            let ns = namespace.unwrap_or_default();
            let used = || -> Result<bool, ApiError> {
                Ok(bound_instances(store, node)?.iter().any(|i| {
                i["metadata"]["namespace"].as_str() == Some(ns)
                    && serde_json::from_value::<flotilla_spec::workload::WorkloadSpec>(
                        i["spec"]["template"].clone(),
                    )
                    .is_ok_and(|t| t.references(kind.name()).contains(&n))
                }))
            };
            // The TLS case first: it reads one namespace's workloads, not
            // every instance of the cluster.
            if (kind == Kind::Secret && serves_tls(store, ns, n)?) || used()? {
                allow(View::Full)
            } else {
                deny(format!(
                    "node {node} may read only the {} that instances bound to it use (and TLS secrets of workloads' routes); {ns}/{n} is not one",
                    kind.plural()
                ))
            }
        }
        (Kind::Workload, Some(n), None) if read => {
            let ns = namespace.unwrap_or_default();
            // A Job's attempt names its Job there, not a workload.
            let referenced = bound_instances(store, node)?.iter().any(|i| {
                i["metadata"]["namespace"].as_str() == Some(ns)
                    && i["spec"]["workload"].as_str() == Some(n)
                    && !crate::controllers::jobs::owned_by_a_job(i)
            });
            if referenced {
                allow(View::Full)
            } else {
                deny(format!(
                    "node {node} may read only the workloads of instances bound to it; {ns}/{n} has none"
                ))
            }
        }
        _ => deny(format!(
            "node {node} may not {method} {path}: nodes write only their own status, their instances' status and events about them, never a spec"
        )),
    }
}

/// Whether Secret `ns/name` is a `flotilla.dev/tls` secret that a workload
/// of `ns` names in `spec.tls`: every node's ingress terminates HTTPS for
/// every workload, so every node reads these (and only these) certificates.
fn serves_tls(store: &dyn Store, ns: &str, name: &str) -> Result<bool, ApiError> {
    let is_tls = store
        .get("Secret", ns, name)?
        .is_some_and(|s| s["type"].as_str() == Some(flotilla_spec::config::TLS_SECRET_TYPE));
    if !is_tls {
        return Ok(false);
    }
    Ok(store.list("Workload", Some(ns))?.items.iter().any(|w| {
        w["spec"]["execution"] == "http"
            && w["spec"]["tls"]
                .as_array()
                .is_some_and(|tls| tls.iter().any(|t| t["secretName"].as_str() == Some(name)))
    }))
}

/// Whether object `ns/name` of `kind` (an Instance, a Volume) names `node`
/// in its `spec.nodeName`.
fn on_node(
    store: &dyn Store,
    kind: Kind,
    ns: &str,
    name: &str,
    node: &str,
) -> Result<bool, ApiError> {
    Ok(store
        .get(kind.name(), ns, name)?
        .is_some_and(|o| o["spec"]["nodeName"].as_str() == Some(node)))
}

/// Whether a workload spec grants `bucket` on the `cluster` backend.
fn grants_cluster_bucket(spec: &Value, bucket: &str) -> bool {
    spec["grants"]["keyValue"].as_array().is_some_and(|grants| {
        grants
            .iter()
            .any(|g| g["bucket"].as_str() == Some(bucket) && g["backend"] == "cluster")
    })
}

fn bound_instances(store: &dyn Store, node: &str) -> Result<Vec<Value>, ApiError> {
    Ok(store
        .list("Instance", None)?
        .items
        .into_iter()
        .filter(|i| i["spec"]["nodeName"].as_str() == Some(node))
        .collect())
}

/// Checks a node's create body (see [`BodyCheck`]).
pub fn check_body(check: &BodyCheck, body: &Value, store: &dyn Store) -> Result<(), ApiError> {
    match check {
        BodyCheck::NoEscalation {
            member,
            namespace,
            kind,
        } => rbac::check_escalation(member, namespace, *kind, body, store),
        BodyCheck::BucketBatch {
            member,
            namespace,
            bucket,
        } => rbac::check_bucket_batch(member, namespace, bucket, body, store),
        BodyCheck::OwnNode(node) => {
            if body["metadata"]["name"].as_str() != Some(node) {
                return Err(ApiError::forbidden(format!(
                    "node {node} may register only itself, not {}",
                    body["metadata"]["name"]
                )));
            }
            for (key, value) in body["metadata"]["labels"].as_object().into_iter().flatten() {
                let reserved = key.starts_with("flotilla.dev/") || key.contains(".flotilla.dev/");
                let own_hostname =
                    key == flotilla_spec::node::HOSTNAME_LABEL && value.as_str() == Some(node);
                if reserved && !own_hostname {
                    return Err(ApiError::forbidden(format!(
                        "node {node} may not set the label {key}: flotilla.dev/ labels are the control plane's (and {} is the node's own name); an admin sets them",
                        flotilla_spec::node::HOSTNAME_LABEL
                    )));
                }
            }
            let spec_empty = match &body["spec"] {
                Value::Null => true,
                Value::Object(fields) => fields.values().all(|v| {
                    matches!(v, Value::Null | Value::Bool(false))
                        || v.as_u64() == Some(0)
                        || v.as_array().is_some_and(Vec::is_empty)
                }),
                _ => false,
            };
            if !spec_empty {
                return Err(ApiError::forbidden(format!(
                    "node {node} may not set its own spec (cordon, epoch): an admin does that with flotilla cordon"
                )));
            }
            Ok(())
        }
        BodyCheck::OwnEvent { node, namespace } => {
            let about = &body["spec"]["involvedObject"];
            let kind = about["kind"].as_str().unwrap_or_default();
            let name = about["name"].as_str().unwrap_or_default();
            let own = match kind {
                "Node" => name == node,
                "Instance" => {
                    about["namespace"].as_str().unwrap_or_default() == namespace
                        && store
                            .get("Instance", namespace, name)?
                            .is_some_and(|i| i["spec"]["nodeName"].as_str() == Some(node))
                }
                _ => false,
            };
            if own {
                Ok(())
            } else {
                Err(ApiError::forbidden(format!(
                    "node {node} may record events only about itself and instances bound to it, not {kind} {name}"
                )))
            }
        }
    }
}

/// An object as `view` shows it. A node sees its own instances whole; of
/// other instances and of workloads, only what its ingress needs to route
/// (like kube-proxy's endpoints): names, where a replica runs and whether
/// it is ready, a workload's execution, routes, TLS secret names and the
/// workloads it may call (`grants.workloads`: a node's port checks the
/// calls other nodes forward on its behalf) — never env, args, other
/// grants, modules or logs.
pub fn project(view: &View, kind: Kind, object: Value) -> Value {
    let View::Node(node) = view else {
        // Whole, or (View::Namespaces) not at all: `Filter::admit` decides.
        return object;
    };
    let meta = &object["metadata"];
    let metadata = json!({
        "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
        "resourceVersion": meta["resourceVersion"],
    });
    let spec = &object["spec"];
    match kind {
        Kind::Instance if spec["nodeName"].as_str() == Some(node) => object,
        Kind::Instance => json!({
            "apiVersion": object["apiVersion"], "kind": object["kind"],
            "metadata": with_hash_label(metadata, meta),
            "spec": {"nodeName": spec["nodeName"], "workload": spec["workload"],
                     "template": {"execution": spec["template"]["execution"]}},
            "status": {"phase": object["status"]["phase"], "ready": object["status"]["ready"]},
        }),
        Kind::Workload => {
            let canary = &object["status"]["canary"];
            let mut reduced = json!({
                "apiVersion": object["apiVersion"], "kind": object["kind"], "metadata": metadata,
                "spec": {"execution": spec["execution"], "routes": spec["routes"], "tls": spec["tls"]},
            });
            let calls = &spec["grants"]["workloads"];
            if !calls.is_null() {
                reduced["spec"]["grants"] = json!({ "workloads": calls });
            }
            if !canary.is_null() {
                reduced["status"]["canary"] =
                    json!({"hash": canary["hash"], "weight": canary["weight"]});
            }
            // After an automatic rollback, ingresses send nothing to the
            // bad version's replicas while they are stopped.
            let rolled_back_to = &object["status"]["rolledBackTo"];
            if rolled_back_to.as_str().is_some_and(|h| !h.is_empty()) {
                reduced["status"]["rolledBackTo"] = rolled_back_to.clone();
            }
            reduced
        }
        _ => object,
    }
}

/// `metadata` with the template-hash label of `meta` (which side of a
/// canary an instance is on).
fn with_hash_label(mut metadata: Value, meta: &Value) -> Value {
    let label = flotilla_spec::revision::TEMPLATE_HASH_LABEL;
    if let Some(hash) = meta["labels"][label].as_str() {
        metadata["labels"] = json!({ label: hash });
    }
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_paths_parse_as_the_router_decodes_them() {
        let t = Target::parse("/apis/flotilla.dev/v1/%74okens");
        assert!(
            matches!(t, Target::Object { ref plural, .. } if plural == "tokens"),
            "{t:?}"
        );
        let t = Target::parse("/apis/flotilla.dev/v1/namespaces/default/%69nstances/x/%73tatus");
        assert!(
            matches!(t, Target::Object { ref plural, ref subresource, .. }
            if plural == "instances" && subresource.as_deref() == Some("status")),
            "{t:?}"
        );
        assert_eq!(Target::parse("/%68ealthz"), Target::Public);
    }

    #[test]
    fn paths_parse_by_segment_not_substring() {
        let t = Target::parse("/apis/flotilla.dev/v1/namespaces/default/instances/x/status");
        assert_eq!(
            t,
            Target::Object {
                plural: "instances".into(),
                namespace: Some("default".into()),
                name: Some("x".into()),
                subresource: Some("status".into()),
            }
        );
        // A node named "instances" is a node, not an instance route.
        let t = Target::parse("/apis/flotilla.dev/v1/nodes/instances/status");
        assert!(matches!(t, Target::Object { ref plural, .. } if plural == "nodes"));
        assert_eq!(
            Target::parse("/apis/flotilla.dev/v1/nodes/a/status/x"),
            Target::Unknown
        );
        assert_eq!(Target::parse("/healthz/x"), Target::Unknown);
    }

    #[test]
    fn projections_drop_what_routing_does_not_need() {
        let instance = json!({"metadata": {"name": "i", "namespace": "d", "labels": {"a": "b"}},
            "spec": {"nodeName": "b", "workload": "w", "template": {"execution": "http", "env": {"SECRET": "x"}}},
            "status": {"ready": true, "phase": "Running", "message": "m"}});
        let seen = project(&View::Node("a".into()), Kind::Instance, instance.clone());
        assert!(!seen.to_string().contains("SECRET"), "{seen}");
        assert_eq!(seen["spec"]["nodeName"], "b");
        assert_eq!(seen["status"]["ready"], true);
        let own = project(&View::Node("b".into()), Kind::Instance, instance.clone());
        assert_eq!(own, instance);
    }
}
