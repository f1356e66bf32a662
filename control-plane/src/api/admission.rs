//! Admission: what the server checks and fills in before anything is stored.
//!
//! Every object is decoded into its typed form (unknown fields and wrong
//! types are refused with their path), Workloads are validated and
//! defaulted (a limit without a request requests its limit), and the
//! server-owned metadata is set: `uid` and `creationTimestamp` at creation,
//! `generation` bumped when `spec` changes, `status` only through `/status`.

use flotilla_spec::config::{Config, Secret};
use flotilla_spec::event::Event;
use flotilla_spec::instance::Instance;
use flotilla_spec::manifest::{parse_one, typed, Manifest, ManifestError};
use flotilla_spec::meta::{now_rfc3339, API_VERSION, DEFAULT_NAMESPACE};
use flotilla_spec::node::Node;
use flotilla_spec::token::Token;
use flotilla_spec::validate::{check_name, check_object_name};
use serde_json::Value;

use super::{ApiError, Kind};
use crate::store::BlobStore;

/// Decodes, checks and normalises a submitted object of `kind`.
fn normalise(kind: Kind, namespace: &str, mut body: Value) -> Result<Value, ApiError> {
    let found_kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
    if found_kind != kind.name() {
        return Err(ApiError::bad_request(format!(
            "the body's kind {found_kind:?} does not match the URL's {} (use kind: {})",
            kind.plural(),
            kind.name()
        )));
    }
    // Fill the namespace from the URL, refuse a contradicting one.
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        let given = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if kind.namespaced() {
            if given.is_empty() {
                meta.insert("namespace".into(), Value::String(namespace.to_string()));
            } else if given != namespace {
                return Err(ApiError::bad_request(format!(
                    "metadata.namespace {given:?} does not match the URL's namespace {namespace:?}"
                )));
            }
        } else if !given.is_empty() {
            return Err(ApiError::bad_request(format!(
                "{} objects are cluster-scoped: remove metadata.namespace",
                kind.name()
            )));
        }
    }
    let shape = |e: ManifestError| {
        ApiError::invalid(e.to_string().trim_start_matches("document 1: ").to_string())
    };
    let value = match kind {
        Kind::Workload => match parse_one(1, body).map_err(shape)? {
            Manifest::Workload(mut w) => {
                w.spec.resources.default_requests_to_limits();
                to_value(&w)?
            }
            _ => {
                return Err(ApiError::invalid(
                    "kind: only Workloads are posted to workloads (ModulePolicies to modulepolicies, Roles to roles, RoleBindings to rolebindings)",
                ))
            }
        },
        Kind::Instance => to_value(&typed::<Instance>(1, body).map_err(shape)?)?,
        Kind::Node => {
            let node = typed::<Node>(1, body).map_err(shape)?;
            check_node_addresses(&node)?;
            to_value(&node)?
        }
        Kind::Token => {
            let token = typed::<Token>(1, body).map_err(shape)?;
            token.spec.validate().map_err(ApiError::invalid)?;
            let id = &token.metadata.name;
            if !super::tokens::is_token_id(id) {
                return Err(ApiError::invalid(format!(
                    "metadata.name: {id:?} is not a token id (6 of a-z, 0-9); `flotilla token create` makes one"
                )));
            }
            to_value(&token)?
        }
        Kind::Event => to_value(&typed::<Event>(1, body).map_err(shape)?)?,
        Kind::Config => {
            let config = typed::<Config>(1, body).map_err(shape)?;
            config.validate().map_err(ApiError::invalid)?;
            to_value(&config)?
        }
        Kind::Secret => {
            // Not the decoder's message: it may quote a value.
            let mut secret = typed::<Secret>(1, body).map_err(|_| {
                ApiError::invalid(
                    "not a valid Secret: data holds base64 strings, stringData plain strings, type a string; no other fields",
                )
            })?;
            // Never echo a value in an error: the messages name keys only.
            secret.normalise().map_err(ApiError::invalid)?;
            to_value(&secret)?
        }
        Kind::Volume => {
            to_value(&typed::<flotilla_spec::volume::VolumeObject>(1, body).map_err(shape)?)?
        }
        Kind::ModulePolicy => {
            let policy = typed::<flotilla_spec::policy::ModulePolicy>(1, body).map_err(shape)?;
            policy.spec.validate().map_err(ApiError::invalid)?;
            for (n, key) in policy.spec.keys.iter().enumerate() {
                flotilla_oci::signature::PublicKey::from_pem(key)
                    .map_err(|e| ApiError::invalid(format!("spec.keys[{n}]: {e}")))?;
            }
            to_value(&policy)?
        }
        Kind::ImportedModule => super::imported::admit(body)?,
        Kind::Role => {
            let role = typed::<flotilla_spec::rbac::Role>(1, body).map_err(shape)?;
            role.spec.validate().map_err(ApiError::invalid)?;
            to_value(&role)?
        }
        Kind::RoleBinding => {
            let binding = typed::<flotilla_spec::rbac::RoleBinding>(1, body).map_err(shape)?;
            binding.spec.validate().map_err(ApiError::invalid)?;
            to_value(&binding)?
        }
        Kind::ResourceQuota => {
            let quota = typed::<flotilla_spec::quota::ResourceQuota>(1, body).map_err(shape)?;
            quota.spec.validate().map_err(ApiError::invalid)?;
            to_value(&quota)?
        }
        Kind::LimitRange => {
            let range = typed::<flotilla_spec::quota::LimitRange>(1, body).map_err(shape)?;
            range.spec.validate().map_err(ApiError::invalid)?;
            to_value(&range)?
        }
        Kind::Job => match parse_one(1, body).map_err(shape)? {
            Manifest::Job(mut job) => {
                if job.spec.template.module.sha256.is_none() {
                    return Err(ApiError::invalid(
                        "spec.template.module: a Job's module must be in the cluster's blob store (flotilla apply uploads a file: source and sets sha256); oci:// sources are resolved for Workloads only so far",
                    ));
                }
                job.spec.template.resources.default_requests_to_limits();
                to_value(&job)?
            }
            _ => return Err(ApiError::invalid("kind: only Jobs are posted to jobs")),
        },
        Kind::DisruptionBudget => {
            let budget =
                typed::<flotilla_spec::disruption::DisruptionBudget>(1, body).map_err(shape)?;
            budget.spec.validate().map_err(ApiError::invalid)?;
            to_value(&budget)?
        }
        Kind::NodeCertificate => {
            return Err(ApiError::method_not_allowed(
                "node certificates are recorded by the server as it issues them; revoke a node's with `flotilla node revoke NAME`",
            ))
        }
        // Refused earlier, by authorization; never admitted.
        Kind::Revision => {
            return Err(ApiError::method_not_allowed(
                "revisions are written by the workload controller only",
            ))
        }
    };
    if value["apiVersion"] != API_VERSION {
        return Err(ApiError::invalid(format!(
            "apiVersion must be {API_VERSION}"
        )));
    }
    // Workload names become host names (DNS labels); other objects may use
    // dotted names, as Kubernetes allows.
    let name = value["metadata"]["name"].as_str().unwrap_or_default();
    let checked = if kind == Kind::Workload {
        check_name(name)
    } else {
        check_object_name(name)
    };
    checked.map_err(|m| ApiError::invalid(format!("metadata.name: {m}")))?;
    Ok(value)
}

/// A node's addresses are sockets (`host:port`), nothing else: the
/// control plane and other nodes dial them.
fn check_node_addresses(node: &Node) -> Result<(), ApiError> {
    let Some(status) = &node.status else {
        return Ok(());
    };
    for (field, address) in [
        ("status.ingressAddress", &status.ingress_address),
        ("status.nodeAddress", &status.node_address),
    ] {
        if !address.is_empty() {
            flotilla_spec::validate::check_host_port(address)
                .map_err(|m| ApiError::invalid(format!("{field}: {m}")))?;
        }
    }
    Ok(())
}

fn to_value<T: serde::Serialize>(t: &T) -> Result<Value, ApiError> {
    serde_json::to_value(t).map_err(|e| ApiError::internal(e.to_string()))
}

/// Keeps a module an object names from a collection racing the write
/// (on this server or, through the shared store, the leader's).
fn touch(blobs: &BlobStore, digest: &str) -> Result<(), ApiError> {
    blobs
        .touch(digest, crate::controllers::module_gc::GRACE)
        .map_err(|e| ApiError::store_unavailable(format!("{e}; retry when the store is back")))
}

/// The module a Workload or an ImportedModule names must already be in
/// the blob store.
fn check_module(kind: Kind, value: &Value, blobs: &BlobStore) -> Result<(), ApiError> {
    if kind == Kind::ImportedModule {
        let digest = value["status"]["sha256"].as_str().unwrap_or_default();
        if blobs.has(digest) {
            return touch(blobs, digest);
        }
        return Err(ApiError::invalid(format!(
            "spec.manifest: its module (sha256 {digest}) has not been uploaded: PUT it to /blobs/sha256/{digest} first (flotilla bundle import does)"
        )));
    }
    let module = match kind {
        Kind::Workload => &value["spec"]["module"],
        Kind::Job => &value["spec"]["template"]["module"],
        _ => return Ok(()),
    };
    match module["sha256"].as_str() {
        Some(digest) if blobs.has(digest) => touch(blobs, digest),
        Some(digest) => Err(ApiError::invalid(format!(
            "spec.module.sha256: no module with digest {digest} has been uploaded (PUT it to /blobs/sha256/{digest}; `flotilla apply` does this for file: sources)"
        ))),
        None => Err(ApiError::invalid(
            "spec.module.sha256: required by the server; `flotilla apply` uploads file: sources and fills it in",
        )),
    }
}

/// The object to create, with server fields set.
pub fn for_create(
    kind: Kind,
    namespace: &str,
    body: Value,
    blobs: &BlobStore,
) -> Result<Value, ApiError> {
    let mut value = normalise(kind, namespace, body)?;
    check_module(kind, &value, blobs)?;
    let meta = &mut value["metadata"];
    meta["uid"] = Value::String(uuid::Uuid::new_v4().to_string());
    meta["creationTimestamp"] = Value::String(now_rfc3339());
    meta["generation"] = Value::from(1u64);
    if let Some(m) = meta.as_object_mut() {
        m.remove("resourceVersion");
    }
    // What their controllers count from: never the writer's to say.
    if matches!(kind, Kind::Job | Kind::DisruptionBudget) {
        if let Some(o) = value.as_object_mut() {
            o.remove("status");
        }
    }
    Ok(value)
}

/// The object to store for a replace of `stored`, and the revision the caller based it on.
pub fn for_replace(
    kind: Kind,
    namespace: &str,
    name: &str,
    body: Value,
    stored: &Value,
    blobs: &BlobStore,
) -> Result<(Value, Option<u64>), ApiError> {
    let expected = resource_version(&body)?;
    let mut value = normalise(kind, namespace, body)?;
    check_same_name(&value, name)?;
    check_module(kind, &value, blobs)?;
    if kind == Kind::Node {
        // The fencing epoch belongs to the node-lifecycle controller.
        value["spec"]["epoch"] = stored["spec"]["epoch"].as_u64().unwrap_or(0).into();
    }
    check_immutable(kind, &value, stored)?;
    let generation = stored["metadata"]["generation"].as_u64().unwrap_or(1);
    let spec_changed = value["spec"] != stored["spec"];
    let meta = &mut value["metadata"];
    meta["uid"] = stored["metadata"]["uid"].clone();
    meta["creationTimestamp"] = stored["metadata"]["creationTimestamp"].clone();
    meta["generation"] = Value::from(if spec_changed {
        generation + 1
    } else {
        generation
    });
    // Status is written through /status only (an ImportedModule's is the
    // server's reading of its spec, made again above).
    match stored
        .get("status")
        .filter(|_| kind != Kind::ImportedModule)
    {
        Some(status) => value["status"] = status.clone(),
        None => {
            if let Some(o) = value.as_object_mut() {
                o.remove("status");
            }
        }
    }
    Ok((value, expected))
}

/// An `immutable` Config or Secret keeps its values (and stays immutable).
fn check_immutable(kind: Kind, value: &Value, stored: &Value) -> Result<(), ApiError> {
    if kind == Kind::Job {
        // One Job, one kind of attempt (as Kubernetes: a Job's template is
        // fixed); parallelism, the deadline and the TTL may change.
        let (new, old) = (&value["spec"], &stored["spec"]);
        for field in ["completions", "completionMode", "restartPolicy"] {
            if new[field] != old[field] {
                return Err(ApiError::invalid(format!(
                    "spec.{field}: a Job's {field} cannot change: delete the Job and create it again"
                )));
            }
        }
        for field in [
            "module",
            "args",
            "env",
            "envFrom",
            "volumes",
            "volumeMounts",
            "grants",
        ] {
            if new["template"][field] != old["template"][field] {
                return Err(ApiError::invalid(format!(
                    "spec.template.{field}: a Job's template cannot change: delete the Job and create it again"
                )));
            }
        }
        return Ok(());
    }
    if !matches!(kind, Kind::Config | Kind::Secret) || stored["immutable"] != true {
        return Ok(());
    }
    let same = |field: &str| value[field] == stored[field];
    if same("data") && same("binaryData") && same("immutable") {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{} {} is immutable: its values cannot change; delete it and create it again",
            kind.name(),
            stored["metadata"]["name"]
        )))
    }
}

/// `stored` with its status replaced by the body's.
pub fn for_status(
    kind: Kind,
    namespace: &str,
    name: &str,
    body: Value,
    stored: &Value,
) -> Result<(Value, Option<u64>), ApiError> {
    if kind == Kind::ImportedModule {
        return Err(ApiError::method_not_allowed(
            "an ImportedModule's status is the server's reading of its manifest: import the bundle again instead",
        ));
    }
    let expected = resource_version(&body)?;
    // A status about an object that was deleted and made again under the
    // same name (a stateful replica `NAME-0`) is not about this one.
    let (given_uid, stored_uid) = (
        body["metadata"]["uid"].as_str().unwrap_or_default(),
        stored["metadata"]["uid"].as_str().unwrap_or_default(),
    );
    if !given_uid.is_empty() && !stored_uid.is_empty() && given_uid != stored_uid {
        return Err(ApiError {
            code: axum::http::StatusCode::CONFLICT,
            reason: "Conflict",
            message: format!(
                "{} {namespace}/{name} with uid {given_uid} is gone: the object of that name now is another (uid {stored_uid})",
                kind.name()
            ),
        });
    }
    let submitted = normalise(kind, namespace, body)?;
    check_same_name(&submitted, name)?;
    if kind == Kind::Node {
        check_node_owner(name, stored, &submitted)?;
    }
    let mut value = stored.clone();
    value["status"] = submitted.get("status").cloned().unwrap_or(Value::Null);
    Ok((value, expected))
}

/// How long a node name stays with the agent that last heartbeated it.
const NODE_NAME_HELD_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Refuses a heartbeat for a node name that another live agent holds.
fn check_node_owner(name: &str, stored: &Value, submitted: &Value) -> Result<(), ApiError> {
    let holder = stored["status"]["agentId"].as_str().unwrap_or_default();
    let claimant = submitted["status"]["agentId"].as_str().unwrap_or_default();
    let last = stored["status"]["lastHeartbeat"]
        .as_str()
        .and_then(flotilla_spec::meta::parse_rfc3339);
    let age = last
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    if !holder.is_empty() && holder != claimant && last.is_some() && age <= NODE_NAME_HELD_FOR {
        tracing::warn!("refused node name {name}: held by another agent");
        return Err(ApiError {
            code: axum::http::StatusCode::CONFLICT,
            reason: "AlreadyExists",
            message: format!(
                "node name {name:?} is in use by another agent (its last heartbeat was {}s ago); choose another --name",
                age.as_secs()
            ),
        });
    }
    Ok(())
}

fn check_same_name(value: &Value, name: &str) -> Result<(), ApiError> {
    let in_body = value["metadata"]["name"].as_str().unwrap_or_default();
    if in_body != name {
        return Err(ApiError::bad_request(format!(
            "metadata.name {in_body:?} does not match the URL's name {name:?}"
        )));
    }
    Ok(())
}

/// `metadata.resourceVersion`, if given.
fn resource_version(body: &Value) -> Result<Option<u64>, ApiError> {
    match body["metadata"]["resourceVersion"].as_str() {
        None | Some("") => Ok(None),
        Some(rv) => rv.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "metadata.resourceVersion {rv:?} is not a revision number"
            ))
        }),
    }
}

/// The namespace for a namespaced URL, the empty one for a cluster-scoped kind.
pub fn namespace_for(kind: Kind, namespace: Option<&str>) -> Result<String, ApiError> {
    match (kind.namespaced(), namespace) {
        (true, Some(ns)) => {
            check_name(ns).map_err(|m| ApiError::bad_request(format!("namespace: {m}")))?;
            Ok(ns.to_string())
        }
        (true, None) => Ok(DEFAULT_NAMESPACE.to_string()),
        (false, None) => Ok(String::new()),
        (false, Some(_)) => Err(ApiError::not_found(format!(
            "{} are cluster-scoped: use /apis/flotilla.dev/v1/{}",
            kind.plural(),
            kind.plural()
        ))),
    }
}
