//! `ImportedModule` (cluster-scoped; admins write): a module brought in from
//! a bundle (`flotilla bundle import`) rather than pulled from its registry,
//! for control planes that cannot reach one (air-gapped or metered sites).
//!
//! It records what the registry would have answered for one reference: the
//! manifest's exact bytes (so its digest can be checked again by anyone)
//! and the cosign signatures of that manifest. The module itself is in the
//! blob store. Workloads name the reference as usual (`oci://…`), and the
//! control plane resolves it from here before asking any registry, checking
//! signatures from the stored payloads against the ModulePolicies of the
//! day.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::meta::Resource;

/// An ImportedModule resource.
pub type ImportedModule = Resource<ImportedModuleSpec, ImportedModuleStatus>;

/// What was imported for one reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportedModuleSpec {
    /// `oci://REGISTRY/REPOSITORY:TAG` (or `…@sha256:…`), as workloads
    /// name it.
    pub reference: String,
    /// The manifest's bytes, base64: its digest is theirs.
    pub manifest: String,
    /// Signatures of the manifest (cosign's simple-signing payloads).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<ImportedSignature>,
}

/// One signature, as cosign stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportedSignature {
    /// The simple-signing payload, base64.
    pub payload: String,
    /// The signature of the payload: base64 of DER (cosign's annotation).
    pub signature: String,
}

/// What the server read from the manifest when it admitted it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportedModuleStatus {
    /// `sha256:…` of the manifest's bytes.
    pub manifest_digest: String,
    /// The module's sha256 (hex): its blob's name.
    pub sha256: String,
    /// The module's size in bytes.
    pub size: u64,
}

/// The object name an imported `reference` is stored under: readable, and
/// one per reference (a reference's characters beyond object names' are
/// folded, so a hash of the whole keeps names apart).
pub fn name_for(reference: &str) -> String {
    let readable: String = reference
        .trim_start_matches("oci://")
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    let mut readable = readable
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    readable.truncate(40);
    let readable = readable.trim_end_matches('-');
    let hash = hex::encode(Sha256::digest(reference.as_bytes()));
    format!("{readable}-{}", &hash[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_object_names_and_one_per_reference() {
        let a = name_for("oci://127.0.0.1:5000/team/app:v1.2");
        assert!(a.starts_with("127-0-0-1-5000-team-app-v1-2-"), "{a}");
        crate::validate::check_object_name(&a).unwrap();
        // Folded alike, named apart.
        assert_ne!(a, name_for("oci://127.0.0.1:5000/team/app:v1-2"));
        let long = name_for(&format!("oci://r.example/{}:v1", "x-".repeat(200)));
        crate::validate::check_object_name(&long).unwrap();
        assert!(long.len() < 64, "{long}");
        let digest = format!("oci://r.example/app@sha256:{}", "a".repeat(64));
        crate::validate::check_object_name(&name_for(&digest)).unwrap();
    }
}
