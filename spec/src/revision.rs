//! `Revision`: one version of a Workload's template, kept as its own object
//! (as Kubernetes keeps ControllerRevisions and old ReplicaSets), so a
//! rollout's history can be listed and an earlier version brought back.
//! Written by the workload controller only.

use serde::{Deserialize, Serialize};

use crate::meta::Resource;
use crate::workload::WorkloadSpec;

/// A Revision resource.
pub type Revision = Resource<RevisionSpec, ()>;

/// The label every instance carries: the hash of the template it was made
/// from (and every Revision: the hash of its template).
pub const TEMPLATE_HASH_LABEL: &str = "flotilla.dev/template-hash";

/// Revisions kept per workload unless `spec.revisionHistoryLimit` says
/// otherwise (Kubernetes' default).
pub const DEFAULT_HISTORY_LIMIT: u32 = 10;

/// What a revision holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevisionSpec {
    /// The workload it is a version of.
    pub workload: String,
    /// Its number: 1 for the first template, one more for each later one
    /// (a template brought back takes the next number, as in Kubernetes).
    pub revision: u64,
    /// [`template_hash`] of `template`.
    pub template_hash: String,
    /// The fields an instance is made from, as they were.
    pub template: WorkloadSpec,
    /// The digest of the Config and Secret values the template read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_digest: String,
    /// What changed from the revision before it (`args, env`), empty for
    /// the first.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub change: String,
}

/// A short, stable digest of the fields of `spec` an instance is made from
/// (not the replica count, nor how a rollout proceeds): equal templates
/// have equal hashes.
pub fn template_hash(spec: &WorkloadSpec) -> String {
    use sha2::Digest;
    let template = spec.template();
    // Serialising a struct is deterministic: fields in declaration order,
    // maps sorted (BTreeMap).
    let text = serde_json::to_string(&template).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(text.as_bytes()))[..10].to_string()
}

/// The hash of a revision: its template's, and (when it reads any) the
/// digest of the Config and Secret values it reads.
pub fn revision_hash(spec: &WorkloadSpec, config_digest: &str) -> String {
    use sha2::Digest;
    let template = template_hash(spec);
    if config_digest.is_empty() {
        return template;
    }
    let both = format!("{template}/{config_digest}");
    hex::encode(sha2::Sha256::digest(both.as_bytes()))[..10].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_follows_the_template_and_nothing_else() {
        let mut spec = WorkloadSpec {
            args: vec!["a".into()],
            ..WorkloadSpec::default()
        };
        let first = template_hash(&spec);
        assert_eq!(first.len(), 10);
        spec.replicas = 7;
        spec.paused = true;
        spec.progress_deadline_seconds = 30;
        assert_eq!(template_hash(&spec), first, "not a template change");
        spec.args = vec!["b".into()];
        assert_ne!(template_hash(&spec), first);
    }
}
