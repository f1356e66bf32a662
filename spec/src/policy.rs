//! `ModulePolicy` (cluster-scoped): which modules workloads may run — from
//! which registries, and signed by which keys (cosign-compatible
//! signatures, checked by the control plane when it resolves a module).

use serde::{Deserialize, Serialize};

use crate::meta::Resource;

/// A ModulePolicy resource.
pub type ModulePolicy = Resource<ModulePolicySpec, ()>;

/// What a policy demands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModulePolicySpec {
    /// The namespaces it applies to; every namespace when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// `signed`: every module needs a valid signature by one of `keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require: Option<Requirement>,
    /// Public keys (PEM, ECDSA P-256: what `cosign generate-key-pair`
    /// writes as `cosign.pub`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Where modules may come from: `REGISTRY` or `REGISTRY/REPOSITORY`
    /// prefixes of `oci://` sources; any registry when empty. With either
    /// this or `require`, uploaded `file:` modules are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<String>,
}

/// What a module must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Requirement {
    /// A signature by one of the policy's keys.
    Signed,
}

/// Most keys, registries or namespaces one policy lists.
pub const MAX_ENTRIES: usize = 64;

impl ModulePolicySpec {
    /// Whether it applies to workloads in `namespace`.
    pub fn applies_to(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }

    /// Whether `registry/repository` is one it allows.
    pub fn allows(&self, registry: &str, repository: &str) -> bool {
        let place = format!("{registry}/{repository}");
        self.registries.is_empty()
            || self.registries.iter().any(|allowed| {
                let allowed = allowed.trim_end_matches('/');
                place == allowed || place.starts_with(&format!("{allowed}/"))
            })
    }

    /// The checks that need no cryptography (keys are parsed by the
    /// control plane).
    pub fn validate(&self) -> Result<(), String> {
        for (field, list) in [
            ("namespaces", &self.namespaces),
            ("keys", &self.keys),
            ("registries", &self.registries),
        ] {
            if list.len() > MAX_ENTRIES {
                return Err(format!("spec.{field}: at most {MAX_ENTRIES}"));
            }
        }
        if self.require == Some(Requirement::Signed) && self.keys.is_empty() {
            return Err(
                "spec.keys: require: signed needs at least one public key (PEM) to check signatures with"
                    .into(),
            );
        }
        for registry in &self.registries {
            if registry.is_empty() || registry.contains("://") || registry.len() > 512 {
                return Err(format!(
                    "spec.registries: {registry:?} is not REGISTRY[/REPOSITORY] (e.g. ghcr.io/my-org)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_match_by_whole_path_segments() {
        let policy = ModulePolicySpec {
            registries: vec!["ghcr.io/acme".into()],
            ..Default::default()
        };
        assert!(policy.allows("ghcr.io", "acme/app"));
        assert!(!policy.allows("ghcr.io", "acme-evil/app"));
        assert!(!policy.allows("docker.io", "acme/app"));
        assert!(ModulePolicySpec::default().allows("any.where", "x"));
        let unsigned = ModulePolicySpec {
            require: Some(Requirement::Signed),
            ..Default::default()
        };
        assert!(unsigned.validate().unwrap_err().contains("public key"));
    }
}
