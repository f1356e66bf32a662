//! Modules from OCI registries, at admission: a Workload whose
//! `spec.module.source` is `oci://…` has it resolved to the manifest's
//! digest (a tag is read once, here) and the module pulled into the blob
//! store, so nodes fetch it from the control plane as any other module and
//! never need a route to the registry, nor its credentials.
//!
//! The stored workload names what was resolved: `spec.module.sha256` (the
//! module's bytes) and `spec.module.resolved` (the source pinned to its
//! manifest digest). A write that keeps the source keeps the pin; applying
//! the manifest again resolves the tag again (a moved tag is then a new
//! revision, never a silent change). Credentials come from the workload's
//! `imagePullSecrets` (Secrets of type `kubernetes.io/dockerconfigjson`),
//! then from its namespace's pull secrets (such Secrets labelled
//! `flotilla.dev/namespace-pull-secret: "true"`), read here and nowhere
//! else.
//!
//! A reference imported from a bundle (an `ImportedModule`, see
//! [`super::imported`]) is resolved from it, before any registry is asked:
//! a control plane without a registry runs such modules.
//!
//! `ModulePolicy` objects that apply to the namespace are enforced when a
//! module is resolved: its registry among the allowed ones, and, with
//! `require: signed`, a cosign-compatible signature of its manifest by one
//! of the policy's keys (checked before the module is pulled). Uploaded
//! (`file:`) modules are refused under such a policy.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;

use flotilla_oci::signature::{self, PublicKey};
use flotilla_oci::{Credentials, ModuleRef, OciError, Registry};
use flotilla_spec::config::{
    Secret, DOCKER_CONFIG_KEY, DOCKER_CONFIG_SECRET_TYPE, NAMESPACE_PULL_SECRET_LABEL,
};
use flotilla_spec::policy::{ModulePolicy, ModulePolicySpec};

use super::{imported, ApiError, ApiState, Kind, MAX_BLOB_BYTES};

/// Pulls under way at once (each writes its module, up to
/// [`MAX_BLOB_BYTES`], into the blob folder as it arrives), so applies
/// that race share the link and the disk in turns.
static PULLS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Whether `resolved` was resolved from `source` (the same tag, or the
/// same digest).
fn pinned_from(source: &str, resolved: &str) -> bool {
    resolved == source
        || resolved
            .strip_prefix(source)
            .is_some_and(|rest| rest.starts_with("@sha256:"))
}

fn refused(e: OciError) -> ApiError {
    match e {
        OciError::Unusable { .. } => ApiError {
            code: StatusCode::BAD_GATEWAY,
            reason: "RegistryAnswerUnusable",
            message: format!("spec.module.source: {e}"),
        },
        OciError::Registry { .. } => ApiError {
            code: StatusCode::SERVICE_UNAVAILABLE,
            reason: "RegistryUnavailable",
            message: format!("spec.module.source: {e}; the registry must be reachable from the control plane (nodes never talk to it): retry when it is"),
        },
        e => ApiError::invalid(format!("spec.module.source: {e}")),
    }
}

/// The credentials for `registry`: from the workload's pull secrets, else
/// from its namespace's (Secrets labelled [`NAMESPACE_PULL_SECRET_LABEL`],
/// by name).
fn credentials(
    state: &ApiState,
    namespace: &str,
    object: &Value,
    registry: &str,
) -> Result<Option<Credentials>, ApiError> {
    if let Some(found) = workload_credentials(state, namespace, object, registry)? {
        return Ok(Some(found));
    }
    for stored in state.store.list("Secret", Some(namespace))?.items {
        if stored["metadata"]["labels"][NAMESPACE_PULL_SECRET_LABEL] != "true"
            || stored["type"] != DOCKER_CONFIG_SECRET_TYPE
        {
            continue;
        }
        let name = stored["metadata"]["name"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        let config = serde_json::from_value::<Secret>(stored)
            .ok()
            .and_then(|s| s.value(DOCKER_CONFIG_KEY))
            .unwrap_or_default();
        match Credentials::from_docker_config(&config, registry) {
            Ok(Some(found)) => return Ok(Some(found)),
            Ok(None) => {}
            // One namespace secret that cannot be read does not stop others.
            Err(why) => tracing::warn!(
                "namespace pull secret {namespace}/{name}'s {DOCKER_CONFIG_KEY} {why}; skipped"
            ),
        }
    }
    Ok(None)
}

/// The credentials the workload's own pull secrets hold for `registry`.
fn workload_credentials(
    state: &ApiState,
    namespace: &str,
    object: &Value,
    registry: &str,
) -> Result<Option<Credentials>, ApiError> {
    let names = object["spec"]["imagePullSecrets"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|s| s["name"].as_str())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for name in names {
        let Some(stored) = state.store.get("Secret", namespace, name)? else {
            return Err(ApiError::invalid(format!(
                "spec.imagePullSecrets: no Secret {name:?} in namespace {namespace:?} (flotilla create secret docker-registry {name} --docker-server {registry} --docker-username … --docker-password …)"
            )));
        };
        let secret: Secret = serde_json::from_value(stored).map_err(|_| {
            ApiError::invalid(format!(
                "spec.imagePullSecrets: Secret {name:?} does not decode"
            ))
        })?;
        if secret.secret_type != DOCKER_CONFIG_SECRET_TYPE {
            return Err(ApiError::invalid(format!(
                "spec.imagePullSecrets: Secret {name:?} is of type {:?}, not {DOCKER_CONFIG_SECRET_TYPE}",
                secret.secret_type
            )));
        }
        let config = secret.value(DOCKER_CONFIG_KEY).unwrap_or_default();
        match Credentials::from_docker_config(&config, registry) {
            Ok(Some(found)) => return Ok(Some(found)),
            Ok(None) => {}
            Err(why) => {
                return Err(ApiError::invalid(format!(
                    "spec.imagePullSecrets: Secret {name:?}'s {DOCKER_CONFIG_KEY} {why}"
                )))
            }
        }
    }
    Ok(None)
}

/// How long one resolution and pull may take in all.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long an apply waits for one of the [`PULLS`] turns.
const TURN_WAIT: Duration = Duration::from_secs(60);

fn module_field<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object["spec"]["module"][field].as_str()
}

/// The ModulePolicies that apply in `namespace`, by name. One that does
/// not decode refuses everything (a policy is never skipped).
fn policies_for(
    state: &ApiState,
    namespace: &str,
) -> Result<Vec<(String, ModulePolicySpec)>, ApiError> {
    let mut policies = Vec::new();
    for stored in state.store.list("ModulePolicy", None)?.items {
        let name = stored["metadata"]["name"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        let policy = serde_json::from_value::<ModulePolicy>(stored).map_err(|_| {
            ApiError::internal(format!(
                "ModulePolicy {name} cannot be read by this server, so no module is admitted; fix or delete it (flotilla delete modulepolicy {name})"
            ))
        })?;
        if policy.spec.applies_to(namespace) {
            policies.push((name, policy.spec));
        }
    }
    Ok(policies)
}

/// Where a module's manifest and signatures are read from.
enum Origin<'a> {
    /// Its registry.
    Registry(&'a Registry),
    /// What was imported from a bundle (no registry is asked).
    Imported(&'a imported::Found),
}

/// Checks manifest `digest` of `reference` against every policy that
/// wants it signed.
async fn verify_signatures(
    origin: &Origin<'_>,
    reference: &str,
    digest: &str,
    policies: &[(String, ModulePolicySpec)],
) -> Result<(), ApiError> {
    let wanting: Vec<_> = policies
        .iter()
        .filter(|(_, p)| p.require.is_some())
        .collect();
    if wanting.is_empty() {
        return Ok(());
    }
    let signatures = match origin {
        Origin::Registry(registry) => registry.signatures(digest).await.map_err(refused)?,
        Origin::Imported(found) => Some(found.signatures.clone()).filter(|found| !found.is_empty()),
    };
    // No registry vouches for the repository an import claims: the
    // signature must name it.
    let identities = match origin {
        Origin::Registry(_) => None,
        Origin::Imported(found) => Some(found.identities.as_slice()),
    };
    for (name, policy) in wanting {
        let keys = policy
            .keys
            .iter()
            .filter_map(|k| PublicKey::from_pem(k).ok())
            .collect::<Vec<_>>();
        signature::verify(
            reference,
            name,
            digest,
            signatures.as_deref(),
            &keys,
            identities,
        )
        .map_err(refused)?;
    }
    Ok(())
}

/// Refuses a module other than the one a caller's `spec.module.sha256`
/// (`given`) named.
fn check_given(given: Option<&str>, actual: &str, source: &str) -> Result<(), ApiError> {
    match given {
        Some(given) if given != actual => Err(ApiError::invalid(format!(
            "spec.module.sha256: {source} holds a module with sha256 {actual}, not the {given} given; leave sha256 out for oci:// sources"
        ))),
        _ => Ok(()),
    }
}

/// What an ImportedModule says `source` resolves to; its module must be
/// in the blob store, and signed where a policy wants it.
async fn resolve_imported(
    state: &ApiState,
    found: &imported::Found,
    source: &str,
    given: Option<&str>,
    policies: &[(String, ModulePolicySpec)],
) -> Result<flotilla_oci::Resolved, ApiError> {
    let digest = &found.manifest.digest;
    verify_signatures(&Origin::Imported(found), source, digest, policies).await?;
    let resolved = flotilla_oci::Resolved {
        manifest_digest: digest.clone(),
        layer: found.manifest.layer.clone(),
        annotations: Default::default(),
    };
    check_given(given, resolved.sha256(), source)?;
    if !state.blobs.has(resolved.sha256()) {
        return Err(ApiError::invalid(format!(
            "spec.module.source: {source} was imported from a bundle, but its module (sha256 {}) is no longer in the blob store: import the bundle again (flotilla bundle import)",
            resolved.sha256()
        )));
    }
    Ok(resolved)
}

/// An uploaded module has no registry to come from nor a signature: a
/// ModulePolicy that wants either refuses it.
fn refuse_uploaded(
    policies: &[(String, ModulePolicySpec)],
    namespace: &str,
) -> Result<(), ApiError> {
    if let Some((name, _)) = policies
        .iter()
        .find(|(_, p)| p.require.is_some() || !p.registries.is_empty())
    {
        return Err(ApiError::invalid(format!(
            "spec.module: ModulePolicy {name} wants modules in namespace {namespace} to come from a registry{}; an uploaded module cannot be checked: flotilla push it, sign it (flotilla sign), and name it as oci://…",
            if policies.iter().any(|(_, p)| p.require.is_some()) { " and be signed" } else { "" }
        )));
    }
    Ok(())
}

/// Resolves and pulls the module of a Workload with an `oci://` source
/// (other objects and sources pass as they are). `stored`: the workload as
/// stored, for a write to an existing one.
pub async fn resolve_module(
    state: &ApiState,
    kind: Kind,
    namespace: &str,
    object: Value,
    stored: Option<&Value>,
) -> Result<Value, ApiError> {
    if kind == Kind::Job {
        // A Job's module is always uploaded: judged as a workload's
        // uploaded module is.
        return refuse_uploaded(&policies_for(state, namespace)?, namespace).map(|()| object);
    }
    if kind != Kind::Workload {
        return Ok(object);
    }
    let policies = policies_for(state, namespace)?;
    let Some(source) = module_field(&object, "source").filter(|s| ModuleRef::is_oci(s)) else {
        return refuse_uploaded(&policies, namespace).map(|()| object);
    };
    let source = source.to_string();
    let reference = ModuleRef::parse(&source).map_err(refused)?;
    if let Some((name, policy)) = policies
        .iter()
        .find(|(_, p)| !p.allows(reference.named_registry(), reference.repository()))
    {
        return Err(ApiError::invalid(format!(
            "spec.module.source: ModulePolicy {name} allows modules from {} only, not {source}",
            policy.registries.join(", ")
        )));
    }
    // A pin counts only as the server stored it: the same source, resolved
    // digest and module as the stored workload (a caller cannot name a
    // digest and have it believed).
    let same =
        |field: &str| stored.map(|s| module_field(s, field)) == Some(module_field(&object, field));
    let pin = (same("source") && same("resolved") && same("sha256"))
        .then(|| {
            Some((
                module_field(&object, "resolved")?,
                module_field(&object, "sha256")?,
            ))
        })
        .flatten()
        .filter(|(resolved, _)| pinned_from(&reference.to_string(), resolved))
        .map(|(r, s)| (r.to_string(), s.to_string()));
    let signed_policies = policies.iter().any(|(_, p)| p.require.is_some());
    let target = match &pin {
        Some((_, sha256)) if state.blobs.has(sha256) && !signed_policies => return Ok(object),
        // Kept as pinned, but a policy wants it signed: checked again
        // (a module admitted before the policy, a key since removed).
        Some((resolved, sha256)) if state.blobs.has(sha256) => {
            let pinned = ModuleRef::parse(resolved).map_err(refused)?;
            let digest = pinned.digest().unwrap_or_default().to_string();
            if let Some(found) = imported::find(state.store.as_ref(), &pinned)? {
                verify_signatures(&Origin::Imported(&found), &source, &digest, &policies).await?;
                return Ok(object);
            }
            let credentials = credentials(state, namespace, &object, reference.registry())?;
            let registry =
                Registry::new(&pinned, credentials, &state.insecure_registries).map_err(refused)?;
            verify_signatures(&Origin::Registry(&registry), &source, &digest, &policies).await?;
            return Ok(object);
        }
        // The module went missing from the blob store: fetched again by the
        // pinned digest, never by what the tag names now.
        Some((resolved, _)) => ModuleRef::parse(resolved).map_err(refused)?,
        None => reference.clone(),
    };
    // A sha256 the caller wrote (no resolution beside it) is what to expect.
    let given = module_field(&object, "resolved")
        .is_none()
        .then(|| module_field(&object, "sha256").map(str::to_string))
        .flatten();
    // Imported from a bundle: resolved here, without any registry.
    if let Some(found) = imported::find(state.store.as_ref(), &target)? {
        let resolved =
            resolve_imported(state, &found, &source, given.as_deref(), &policies).await?;
        return Ok(pin_to(object, stored, &source, &reference, &resolved));
    }
    let credentials = credentials(state, namespace, &object, reference.registry())?;
    let registry =
        Registry::new(&target, credentials, &state.insecure_registries).map_err(refused)?;
    let work = async {
        let resolved = registry
            .resolve(MAX_BLOB_BYTES as u64)
            .await
            .map_err(refused)?;
        // Signed, where a policy wants it: before anything is pulled.
        verify_signatures(
            &Origin::Registry(&registry),
            &source,
            &resolved.manifest_digest,
            &policies,
        )
        .await?;
        check_given(given.as_deref(), resolved.sha256(), &source)?;
        let _turn = tokio::time::timeout(TURN_WAIT, PULLS.acquire())
            .await
            .map_err(|_| ApiError {
                code: StatusCode::SERVICE_UNAVAILABLE,
                reason: "TooManyPulls",
                message: format!("spec.module.source: {source}: the control plane has been pulling other modules for {TURN_WAIT:?}; retry"),
            })?
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if !state.blobs.has(resolved.sha256()) {
            pull_into_blobs(state, &registry, &resolved, &source).await?;
        }
        Ok::<_, ApiError>(resolved)
    };
    let resolved = tokio::time::timeout(PULL_TIMEOUT, work)
        .await
        .map_err(|_| ApiError {
            code: StatusCode::SERVICE_UNAVAILABLE,
            reason: "RegistryUnavailable",
            message: format!("spec.module.source: {source}: resolving and pulling took longer than {PULL_TIMEOUT:?}; is the registry slow or stalled? retry"),
        })??;
    Ok(pin_to(object, stored, &source, &reference, &resolved))
}

/// `object` with its module pinned to what `source` resolved to.
fn pin_to(
    mut object: Value,
    stored: Option<&Value>,
    source: &str,
    reference: &ModuleRef,
    resolved: &flotilla_oci::Resolved,
) -> Value {
    // The same bytes as stored (a tag pushed again with the same module):
    // the stored pin stays, so nothing rolls out for nothing.
    let keep = stored
        .filter(|s| {
            module_field(s, "source") == Some(source)
                && module_field(s, "sha256") == Some(resolved.sha256())
        })
        .and_then(|s| module_field(s, "resolved"))
        .filter(|r| pinned_from(&reference.to_string(), r))
        .map(str::to_string);
    object["spec"]["module"]["sha256"] = resolved.sha256().into();
    object["spec"]["module"]["resolved"] = keep
        .unwrap_or_else(|| reference.pinned(&resolved.manifest_digest).to_string())
        .into();
    object
}

/// Pulls the module into the blob store, written to a file as it arrives
/// (never held whole in memory) and kept once its digest is checked.
async fn pull_into_blobs(
    state: &ApiState,
    registry: &Registry,
    resolved: &flotilla_oci::Resolved,
    source: &str,
) -> Result<(), ApiError> {
    let started = std::time::Instant::now();
    let cannot_keep =
        |e: std::io::Error| ApiError::internal(format!("cannot keep the pulled module: {e}"));
    let incoming = state.blobs.incoming().map_err(cannot_keep)?;
    let mut file = tokio::fs::File::from_std(incoming.reopen().map_err(cannot_keep)?);
    let resumed = registry
        .pull_to(resolved, &mut file, &mut |_, _| {})
        .await
        .map_err(refused)?;
    tokio::io::AsyncWriteExt::flush(&mut file)
        .await
        .map_err(cannot_keep)?;
    drop(file);
    let (blobs, digest) = (state.blobs.clone(), resolved.sha256().to_string());
    tokio::task::spawn_blocking(move || blobs.adopt(&digest, incoming))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(cannot_keep)?;
    let took = started.elapsed();
    if resumed > 0 {
        // A link worth looking at: say it where operators look.
        tracing::warn!(
            "pulled {source} ({} bytes, manifest {}) in {took:?}, its transfer taken up again {resumed} times after dropped connections",
            resolved.size(),
            resolved.manifest_digest,
        );
    } else {
        tracing::info!(
            "pulled {source} ({} bytes, manifest {}) in {took:?}",
            resolved.size(),
            resolved.manifest_digest
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_holds_only_for_the_source_it_was_resolved_from() {
        let digest = format!("@sha256:{}", "a".repeat(64));
        let tag = "oci://localhost:5000/app:v1";
        assert!(pinned_from(tag, &format!("{tag}{digest}")));
        assert!(!pinned_from(
            "oci://localhost:5000/app:v2",
            &format!("{tag}{digest}")
        ));
        assert!(!pinned_from(
            "oci://localhost:5000/app",
            &format!("{tag}{digest}")
        ));
        let by_digest = format!("oci://localhost:5000/app{digest}");
        assert!(pinned_from(&by_digest, &by_digest));
    }
}
