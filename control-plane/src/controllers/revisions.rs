//! Revisions: every template a Workload has had, each kept as a `Revision`
//! object with a number (as Kubernetes keeps ControllerRevisions), so that
//! `flotilla rollout history` can list them. A template seen again (an
//! undo) takes the next number; past `revisionHistoryLimit` the oldest go.

use flotilla_spec::meta::{now_rfc3339, ObjectMeta, OwnerReference, API_VERSION};
use flotilla_spec::revision::{
    revision_hash, Revision, RevisionSpec, DEFAULT_HISTORY_LIMIT, TEMPLATE_HASH_LABEL,
};
use flotilla_spec::workload::Workload;
use serde_json::Value;

use super::workloads::WORKLOAD_LABEL;
use crate::store::{Store, StoreError};

/// The current template's revision: its number and hash.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Current {
    /// The revision number.
    pub number: u64,
    /// The revision hash (the template's, and the values it reads).
    pub hash: String,
    /// The digest of the Config and Secret values the template reads.
    pub config_digest: String,
}

fn backend(e: serde_json::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Revisions of `workload` (by name) stored in its namespace: each with
/// its stored JSON, those this version cannot read left out.
fn stored(
    store: &dyn Store,
    namespace: &str,
    workload: &str,
) -> Result<Vec<(Value, Revision)>, StoreError> {
    Ok(store
        .list("Revision", Some(namespace))?
        .items
        .into_iter()
        .filter(|v| v["spec"]["workload"] == workload)
        .filter_map(|v| serde_json::from_value(v.clone()).ok().map(|r| (v, r)))
        .collect())
}

/// Makes sure the workload's current template, reading Config and Secret
/// values of `config_digest`, is recorded as its newest revision, and
/// returns it. Reads the store only when that is not the revision the
/// workload's status already names.
pub fn record(
    store: &dyn Store,
    workload: &Workload,
    config_digest: &str,
) -> Result<Current, StoreError> {
    let hash = revision_hash(&workload.spec, config_digest);
    let current = |number| Current {
        number,
        hash: hash.clone(),
        config_digest: config_digest.to_string(),
    };
    if let Some(status) = &workload.status {
        if status.template_hash == hash && status.update_revision > 0 {
            return Ok(current(status.update_revision));
        }
    }
    let (namespace, name) = (&workload.metadata.namespace, &workload.metadata.name);
    let mut revisions = stored(store, namespace, name)?;
    // Those of an earlier workload of this name are not this one's history.
    for (_, old) in revisions.iter().filter(|(_, r)| {
        r.metadata.owner_references.first().map(|o| &o.uid) != Some(&workload.metadata.uid)
    }) {
        delete(store, namespace, &old.metadata.name)?;
    }
    revisions.retain(|(_, r)| {
        r.metadata.owner_references.first().map(|o| &o.uid) == Some(&workload.metadata.uid)
    });
    revisions.sort_by_key(|(_, r)| r.spec.revision);
    let latest = revisions.last().map(|(_, r)| r.spec.revision).unwrap_or(0);
    let number = match revisions.iter().find(|(_, r)| r.spec.template_hash == hash) {
        Some((_, r)) if r.spec.revision == latest => latest,
        Some((value, r)) => {
            // Brought back: it becomes the newest, with the next number.
            let mut value = value.clone();
            value["spec"]["revision"] = (latest + 1).into();
            let expected = crate::store::revision_of(&value);
            store.update("Revision", namespace, &r.metadata.name, value, expected)?;
            latest + 1
        }
        None => {
            let change = revisions
                .last()
                .map(|(_, r)| {
                    let mut changes = r.spec.template.template_changes(&workload.spec);
                    if r.spec.config_digest != config_digest {
                        changes.push("config values");
                    }
                    changes.join(", ")
                })
                .unwrap_or_default();
            let mut revision = new_revision(workload, &hash, latest + 1, change);
            revision.spec.config_digest = config_digest.to_string();
            let value = serde_json::to_value(&revision).map_err(backend)?;
            // An AlreadyExists (an object of that name this version cannot
            // read) is an error: the next pass tries again.
            store.create("Revision", namespace, &revision.metadata.name, value)?;
            latest + 1
        }
    };
    // Past the history limit, the oldest go (never the current one, nor
    // the last that completed: a failed rollout reverts to it).
    let limit = workload
        .spec
        .revision_history_limit
        .unwrap_or(DEFAULT_HISTORY_LIMIT) as usize;
    let stable = workload
        .status
        .as_ref()
        .map(|s| s.current_template_hash.as_str())
        .unwrap_or_default();
    let older: Vec<&Revision> = revisions
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r.spec.template_hash != hash && r.spec.template_hash != stable)
        .collect();
    if older.len() > limit {
        for old in &older[..older.len() - limit] {
            delete(store, namespace, &old.metadata.name)?;
        }
    }
    Ok(current(number))
}

fn new_revision(workload: &Workload, hash: &str, number: u64, change: String) -> Revision {
    let name = &workload.metadata.name;
    Revision {
        api_version: API_VERSION.into(),
        kind: "Revision".into(),
        metadata: ObjectMeta {
            name: format!("{name}-{hash}"),
            namespace: workload.metadata.namespace.clone(),
            uid: uuid::Uuid::new_v4().to_string(),
            creation_timestamp: Some(now_rfc3339()),
            labels: [
                (WORKLOAD_LABEL.to_string(), name.clone()),
                (TEMPLATE_HASH_LABEL.to_string(), hash.to_string()),
            ]
            .into(),
            owner_references: vec![OwnerReference {
                kind: "Workload".into(),
                name: name.clone(),
                uid: workload.metadata.uid.clone(),
            }],
            ..ObjectMeta::default()
        },
        spec: RevisionSpec {
            workload: name.clone(),
            revision: number,
            template_hash: hash.to_string(),
            template: workload.spec.template(),
            config_digest: String::new(),
            change,
        },
        status: None,
    }
}

/// The template of `workload`'s revision with template hash `hash`, if it
/// is still kept.
pub fn template_of(
    store: &dyn Store,
    workload: &Workload,
    hash: &str,
) -> Result<Option<flotilla_spec::workload::WorkloadSpec>, StoreError> {
    let (namespace, name) = (&workload.metadata.namespace, &workload.metadata.name);
    Ok(stored(store, namespace, name)?
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| {
            r.spec.template_hash == hash
                && r.metadata.owner_references.first().map(|o| &o.uid)
                    == Some(&workload.metadata.uid)
        })
        .map(|r| r.spec.template))
}

/// Deletes every revision whose workload (by name and uid) is gone.
pub fn sweep(store: &dyn Store, cache: &super::cache::Cache) -> Result<(), StoreError> {
    for value in store.list("Revision", None)?.items {
        let meta = &value["metadata"];
        let namespace = meta["namespace"].as_str().unwrap_or_default();
        let owner = &meta["ownerReferences"][0];
        let key = (
            namespace.to_string(),
            owner["name"].as_str().unwrap_or_default().to_string(),
        );
        let alive = cache
            .workloads
            .get(&key)
            .is_some_and(|w| w.value["metadata"]["uid"] == owner["uid"]);
        if !alive {
            delete(store, namespace, meta["name"].as_str().unwrap_or_default())?;
        }
    }
    Ok(())
}

/// Deletes the revisions of a workload that is gone.
pub fn forget(store: &dyn Store, namespace: &str, workload: &str) -> Result<(), StoreError> {
    for (_, revision) in stored(store, namespace, workload)? {
        delete(store, namespace, &revision.metadata.name)?;
    }
    Ok(())
}

fn delete(store: &dyn Store, namespace: &str, name: &str) -> Result<(), StoreError> {
    super::delete_if_present(store, "Revision", namespace, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn workload(args: &str, status: Option<&Current>) -> Workload {
        let mut w = Workload::default();
        w.metadata.name = "web".into();
        w.metadata.namespace = "default".into();
        w.metadata.uid = "u1".into();
        w.spec.args = vec![args.into()];
        w.spec.revision_history_limit = Some(2);
        if let Some(current) = status {
            w.status = Some(flotilla_spec::workload::WorkloadStatus {
                update_revision: current.number,
                template_hash: current.hash.clone(),
                ..Default::default()
            });
        }
        w
    }

    #[test]
    fn templates_are_numbered_brought_back_renumbered_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        let first = record(&store, &workload("a", None), "").unwrap();
        assert_eq!(first.number, 1);
        // Recorded: the status names it, nothing is read again.
        assert_eq!(
            record(&store, &workload("a", Some(&first)), "").unwrap(),
            first
        );
        let second = record(&store, &workload("b", Some(&first)), "").unwrap();
        assert_eq!(second.number, 2);
        let revisions = stored(&store, "default", "web").unwrap();
        let b = revisions
            .iter()
            .find(|(_, r)| r.spec.revision == 2)
            .unwrap();
        assert_eq!(b.1.spec.change, "args");
        // "a" again (an undo): it takes number 3, no new object.
        let back = record(&store, &workload("a", Some(&second)), "").unwrap();
        assert_eq!((back.number, back.hash.clone()), (3, first.hash.clone()));
        assert_eq!(stored(&store, "default", "web").unwrap().len(), 2);
        // Past the limit of 2 old ones, the oldest goes.
        let c = record(&store, &workload("c", Some(&back)), "").unwrap();
        let d = record(&store, &workload("d", Some(&c)), "").unwrap();
        let mut numbers: Vec<u64> = stored(&store, "default", "web")
            .unwrap()
            .iter()
            .map(|(_, r)| r.spec.revision)
            .collect();
        numbers.sort();
        assert_eq!(d.number, 5);
        assert_eq!(
            numbers,
            [3, 4, 5],
            "the current one and the 2 newest before it"
        );
        forget(&store, "default", "web").unwrap();
        assert!(stored(&store, "default", "web").unwrap().is_empty());
    }

    #[test]
    fn revisions_whose_workload_is_gone_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        let web = workload("a", None);
        record(&store, &web, "").unwrap();
        let mut cache = super::super::cache::Cache::default();
        // The workload exists, with that uid: kept.
        let value = serde_json::to_value(&web).unwrap();
        store.create("Workload", "default", "web", value).unwrap();
        cache.sync(&store).unwrap();
        sweep(&store, &cache).unwrap();
        assert_eq!(stored(&store, "default", "web").unwrap().len(), 1);
        // Gone: swept.
        store.delete("Workload", "default", "web").unwrap();
        cache.sync(&store).unwrap();
        sweep(&store, &cache).unwrap();
        assert!(stored(&store, "default", "web").unwrap().is_empty());
    }
}
