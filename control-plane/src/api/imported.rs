//! ImportedModules (`flotilla bundle import`): what admission checks of
//! one, and finding the one a module source names, so that a control plane
//! that cannot reach a registry resolves `oci://` sources from what was
//! imported.
//!
//! Nothing the importer says is taken on trust: the manifest's digest is
//! computed from its bytes, the manifest must be a Wasm artifact whose
//! module is already in the blob store (uploaded, and so checked against
//! its sha256), and signatures are checked against the ModulePolicies when
//! a workload names the module, as a registry's would be.

use base64::Engine;
use serde_json::Value;

use flotilla_oci::layout::{parse_manifest, ParsedManifest};
use flotilla_oci::signature::{Signed, MAX_PAYLOAD_BYTES, MAX_SIGNATURES};
use flotilla_oci::ModuleRef;
use flotilla_spec::imported::{name_for, ImportedModule, ImportedModuleStatus};

use super::{ApiError, MAX_BLOB_BYTES};
use crate::store::Store;

/// The kind's name in the store.
pub const KIND: &str = "ImportedModule";

/// An imported module, decoded and checked again.
pub struct Found {
    /// Its manifest.
    pub manifest: ParsedManifest,
    /// Its manifest's signatures.
    pub signatures: Vec<Signed>,
    /// The repository it claims to be from (`REGISTRY/REPOSITORY`, as
    /// named and as connected to): what its signatures must name.
    pub identities: Vec<String>,
}

fn base64(field: &str, text: &str, max: usize) -> Result<Vec<u8>, ApiError> {
    // Base64 grows by a third: longer text cannot hold at most `max` bytes.
    if text.len() > max.div_ceil(3) * 4 + 4 {
        return Err(ApiError::invalid(format!(
            "{field}: more than the {max} bytes it may hold"
        )));
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| ApiError::invalid(format!("{field}: not base64: {e}")))
}

/// Decodes and checks an ImportedModule, its reference and manifest.
fn decode(module: &ImportedModule) -> Result<(ModuleRef, Found), ApiError> {
    let spec = &module.spec;
    let reference = ModuleRef::parse(&spec.reference)
        .map_err(|e| ApiError::invalid(format!("spec.reference: {e}")))?;
    let manifest = base64(
        "spec.manifest",
        &spec.manifest,
        flotilla_oci::layout::MAX_MANIFEST_BYTES,
    )?;
    let manifest = parse_manifest(&reference, &manifest, MAX_BLOB_BYTES as u64)
        .map_err(|e| ApiError::invalid(format!("spec.manifest: {e}")))?;
    if spec.signatures.len() > MAX_SIGNATURES {
        return Err(ApiError::invalid(format!(
            "spec.signatures: {} signatures, more than the {MAX_SIGNATURES} looked at",
            spec.signatures.len()
        )));
    }
    let mut signatures = Vec::new();
    for (n, signed) in spec.signatures.iter().enumerate() {
        let payload = base64(
            &format!("spec.signatures[{n}].payload"),
            &signed.payload,
            MAX_PAYLOAD_BYTES,
        )?;
        if !flotilla_oci::signature::payload_names(&payload, &manifest.digest) {
            return Err(ApiError::invalid(format!(
                "spec.signatures[{n}]: its payload does not sign manifest {} (a signature of another module)",
                manifest.digest
            )));
        }
        base64(
            &format!("spec.signatures[{n}].signature"),
            &signed.signature,
            1024,
        )?;
        signatures.push(Signed {
            payload,
            signature: signed.signature.clone(),
        });
    }
    let mut identities = vec![format!(
        "{}/{}",
        reference.named_registry(),
        reference.repository()
    )];
    let connected = format!("{}/{}", reference.registry(), reference.repository());
    if !identities.contains(&connected) {
        identities.push(connected);
    }
    Ok((
        reference,
        Found {
            manifest,
            signatures,
            identities,
        },
    ))
}

/// Admission of an ImportedModule: decoded, checked, named after its
/// reference, with the server's reading of the manifest as its status.
pub fn admit(value: Value) -> Result<Value, ApiError> {
    let mut module: ImportedModule = serde_json::from_value(value)
        .map_err(|e| ApiError::invalid(format!("ImportedModule: {e}")))?;
    let (reference, found) = decode(&module)?;
    // One object per reference, so a reference resolves one way only.
    let name = name_for(&reference.to_string());
    if module.metadata.name != name {
        return Err(ApiError::invalid(format!(
            "metadata.name: an ImportedModule of {reference} is named {name} (flotilla bundle import names them)"
        )));
    }
    module.spec.reference = reference.to_string();
    module.status = Some(ImportedModuleStatus {
        manifest_digest: found.manifest.digest.clone(),
        sha256: found
            .manifest
            .layer
            .digest
            .trim_start_matches("sha256:")
            .to_string(),
        size: u64::try_from(found.manifest.layer.size).unwrap_or_default(),
    });
    serde_json::to_value(&module).map_err(|e| ApiError::internal(e.to_string()))
}

/// The imported module `reference` names, if one was imported: by its
/// tag, or, for a reference pinned to a digest, any import of that
/// manifest in the same repository.
pub fn find(store: &dyn Store, reference: &ModuleRef) -> Result<Option<Found>, ApiError> {
    let by_name = |reference: &ModuleRef| -> Result<Vec<Value>, ApiError> {
        Ok(store
            .get(KIND, "", &name_for(&reference.to_string()))?
            .into_iter()
            .collect())
    };
    let candidates = match reference.digest() {
        None => by_name(reference)?,
        // The manifest's own record first (import writes one per digest),
        // then any tag's record of it.
        Some(digest) => {
            let mut candidates = by_name(&reference.at_digest(digest))?;
            candidates.extend(store.list(KIND, None)?.items);
            candidates
        }
    };
    for stored in candidates {
        let Ok(module) = serde_json::from_value::<ImportedModule>(stored) else {
            continue;
        };
        let Ok(imported) = ModuleRef::parse(&module.spec.reference) else {
            continue;
        };
        let same_place = imported.named_registry() == reference.named_registry()
            && imported.repository() == reference.repository();
        let wanted = match reference.digest() {
            Some(digest) => {
                same_place
                    && module.status.as_ref().map(|s| s.manifest_digest.as_str()) == Some(digest)
            }
            None => imported == *reference,
        };
        if !wanted {
            continue;
        }
        // Checked again as admitted: the stored status is not what counts.
        let found = match decode(&module) {
            Ok((_, found)) => found,
            Err(e) => {
                tracing::warn!(
                    "ImportedModule {} cannot be used, so {reference} is not resolved from it: {}; import its bundle again",
                    module.metadata.name,
                    e.message
                );
                continue;
            }
        };
        if reference
            .digest()
            .is_some_and(|d| d != found.manifest.digest)
        {
            continue;
        }
        return Ok(Some(found));
    }
    Ok(None)
}
