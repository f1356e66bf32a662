//! The controllers' informer: a decoded copy of every Workload, Instance and
//! Node, kept current from the store's change log.
//!
//! Listing and decoding every object on every pass made a pass cost
//! O(objects), most of it JSON parsing under the store's lock: with 10,000
//! instances and a trickle of status writes, the controllers kept the store
//! busy and the API waited behind them. The cache lists once, then applies
//! only the changes after its revision (served from the store's in-memory
//! watch cache), decoding each changed object once, and says which workloads
//! those changes concern so the work queue holds only them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use flotilla_spec::instance::Instance;
use flotilla_spec::node::Node;
use flotilla_spec::workload::Workload;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::store::{revision_of, Change, ChangeType, Store, StoreError};

/// An object's namespace and name ("" namespace for cluster-scoped kinds).
pub type Key = (String, String);

/// Changes read from the store per call while catching up.
const PAGE: usize = 10_000;

/// One cached object: the stored JSON (written back as it is, so fields this
/// version does not know survive) and its decoded form, if it decodes.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    /// As stored.
    pub value: Value,
    /// Decoded; `None` for an object this version cannot read.
    pub object: Option<T>,
}

/// Every object of one kind, by key.
#[derive(Debug)]
pub struct Informer<T> {
    kind: &'static str,
    objects: BTreeMap<Key, Entry<T>>,
}

fn key_of(value: &Value) -> Key {
    let meta = &value["metadata"];
    (
        meta["namespace"].as_str().unwrap_or_default().to_string(),
        meta["name"].as_str().unwrap_or_default().to_string(),
    )
}

impl<T: DeserializeOwned> Informer<T> {
    fn new(kind: &'static str) -> Self {
        Self {
            kind,
            objects: BTreeMap::new(),
        }
    }

    fn insert(&mut self, value: Value) -> Key {
        let key = key_of(&value);
        let object = match serde_json::from_value(value.clone()) {
            Ok(object) => Some(object),
            Err(e) => {
                tracing::warn!(
                    "{} {}/{} cannot be read by this version ({e}); the controllers leave it alone",
                    self.kind,
                    key.0,
                    key.1
                );
                None
            }
        };
        self.objects.insert(key.clone(), Entry { value, object });
        key
    }

    /// One object.
    pub fn get(&self, key: &Key) -> Option<&Entry<T>> {
        self.objects.get(key)
    }

    /// Every object that decodes, with its stored JSON, in key order.
    pub fn decoded(&self) -> impl Iterator<Item = (&Value, &T)> {
        self.objects
            .values()
            .filter_map(|e| e.object.as_ref().map(|o| (&e.value, o)))
    }

    /// Every object, decoded or not, in key order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<T>> {
        self.objects.values()
    }

    /// Every key, in order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.objects.keys()
    }

    /// How many objects (decoded or not).
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// The name of the workload that owns an instance, read from its stored JSON
/// so that an instance this version cannot decode still counts as owned.
fn owner_of(value: &Value) -> String {
    value["metadata"]["ownerReferences"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// What a sync found changed.
#[derive(Debug, Default, PartialEq)]
pub struct Changed {
    /// Workloads (namespace, name) whose object, or one of whose instances,
    /// changed; after a full list, every workload and every owner named.
    pub workloads: BTreeSet<Key>,
}

/// The controllers' copy of the store.
#[derive(Debug)]
pub struct Cache {
    /// The revision the copy is current to; `None` before the first list.
    revision: Option<u64>,
    /// Workloads.
    pub workloads: Informer<Workload>,
    /// Instances.
    pub instances: Informer<Instance>,
    /// Nodes.
    pub nodes: Informer<Node>,
    /// Instance names by owning workload (namespace, workload name).
    owned: HashMap<Key, BTreeSet<String>>,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            revision: None,
            workloads: Informer::new("Workload"),
            instances: Informer::new("Instance"),
            nodes: Informer::new("Node"),
            owned: HashMap::new(),
        }
    }
}

impl Cache {
    /// The instances owned by the workload at `key` (by owner name: the
    /// caller compares uids, since a workload deleted and re-created under
    /// the same name owns none of its predecessor's).
    pub fn owned_by<'a>(&'a self, key: &'a Key) -> impl Iterator<Item = &'a Entry<Instance>> {
        self.owned
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(move |name| self.instances.get(&(key.0.clone(), name.clone())))
    }

    /// Brings the copy up to the store's latest revision: a full list the
    /// first time (or when the change log no longer reaches back far
    /// enough), the changes since the last sync otherwise.
    pub fn sync(&mut self, store: &dyn Store) -> Result<Changed, StoreError> {
        let mut changed = Changed::default();
        let Some(mut revision) = self.revision else {
            return self.relist(store);
        };
        loop {
            let changes = match store.changes_since(revision, PAGE) {
                Ok(changes) => changes,
                Err(StoreError::Gone(_)) => return self.relist(store),
                Err(e) => return Err(e),
            };
            let Some(last) = changes.last().map(|c| c.revision) else {
                break;
            };
            for change in changes {
                self.apply(change, &mut changed);
            }
            revision = last;
            self.revision = Some(revision);
        }
        Ok(changed)
    }

    /// Lists the three kinds afresh, then catches up from the oldest of the
    /// three listings' revisions (replaying a change the listing already
    /// holds is harmless: [`Cache::apply`] skips what is not newer).
    fn relist(&mut self, store: &dyn Store) -> Result<Changed, StoreError> {
        *self = Cache::default();
        let mut oldest = u64::MAX;
        for kind in ["Workload", "Instance", "Node"] {
            let listing = store.list(kind, None)?;
            oldest = oldest.min(listing.revision);
            for value in listing.items {
                self.put(kind, value);
            }
        }
        self.revision = Some(oldest);
        let mut changed = self.sync(store)?;
        changed.workloads.extend(self.workloads.keys().cloned());
        changed.workloads.extend(self.owned.keys().cloned());
        Ok(changed)
    }

    /// Stores `value` under its kind (keeping the owner index of instances).
    fn put(&mut self, kind: &str, value: Value) -> Option<Key> {
        match kind {
            "Workload" => Some(self.workloads.insert(value)),
            "Node" => Some(self.nodes.insert(value)),
            "Instance" => {
                let (namespace, name) = key_of(&value);
                self.unindex(&(namespace.clone(), name.clone()));
                if super::jobs::owned_by_a_job(&value) {
                    // The job controller's: no workload's to reconcile.
                    self.instances.insert(value);
                    return None;
                }
                let owner = (namespace, owner_of(&value));
                self.owned.entry(owner.clone()).or_default().insert(name);
                self.instances.insert(value);
                Some(owner)
            }
            _ => None,
        }
    }

    /// Forgets an instance in the owner index; returns its owner.
    fn unindex(&mut self, key: &Key) -> Option<Key> {
        let value = &self.instances.get(key)?.value;
        if super::jobs::owned_by_a_job(value) {
            return None;
        }
        let owner = (key.0.clone(), owner_of(value));
        if let Some(names) = self.owned.get_mut(&owner) {
            names.remove(&key.1);
            if names.is_empty() {
                self.owned.remove(&owner);
            }
        }
        Some(owner)
    }

    /// Applies one change, unless the copy already holds a newer version of
    /// the object (possible only while catching up after a list).
    fn apply(&mut self, change: Change, changed: &mut Changed) {
        let key = key_of(&change.object);
        if change.kind == "Config" || change.kind == "Secret" {
            // Not kept; the workloads of its namespace that read it are
            // looked at again (a change of its values is a rollout).
            let (namespace, name) = &key;
            changed.workloads.extend(
                self.workloads
                    .objects
                    .iter()
                    .filter(|((ns, _), _)| ns == namespace)
                    .filter(|(_, e)| {
                        e.object.as_ref().is_some_and(|w| {
                            w.spec.references(&change.kind).contains(&name.as_str())
                        })
                    })
                    .map(|(k, _)| k.clone()),
            );
            return;
        }
        let cached = match change.kind.as_str() {
            "Workload" => self.workloads.get(&key).map(|e| &e.value),
            "Instance" => self.instances.get(&key).map(|e| &e.value),
            "Node" => self.nodes.get(&key).map(|e| &e.value),
            _ => return,
        };
        if cached
            .and_then(revision_of)
            .is_some_and(|held| held >= change.revision)
        {
            return;
        }
        if change.kind == "Workload" {
            changed.workloads.insert(key.clone());
        }
        if change.kind == "Node" {
            // A node that comes, goes, turns Ready or not, or is labelled
            // otherwise changes what every-node workloads want (a
            // heartbeat alone does not).
            let eligibility = |v: Option<&Value>| {
                v.map(|v| {
                    (
                        v["metadata"]["labels"].clone(),
                        v["status"]["ready"].clone(),
                    )
                })
            };
            let after = match change.change {
                ChangeType::Deleted => None,
                _ => Some(&change.object),
            };
            if eligibility(cached) != eligibility(after) {
                changed.workloads.extend(
                    self.workloads
                        .decoded()
                        .filter(|(_, w)| w.spec.placement.every_node)
                        .map(|(v, _)| key_of(v)),
                );
            }
        }
        if change.kind == "Instance" {
            // A changed instance concerns its owner, before and after.
            if let Some(owner) = self.unindex(&key) {
                changed.workloads.insert(owner);
            }
        }
        match change.change {
            ChangeType::Deleted => match change.kind.as_str() {
                "Workload" => drop(self.workloads.objects.remove(&key)),
                "Instance" => drop(self.instances.objects.remove(&key)),
                _ => drop(self.nodes.objects.remove(&key)),
            },
            ChangeType::Added | ChangeType::Modified => {
                if let Some(owner) = self.put(&change.kind, change.object) {
                    if change.kind == "Instance" {
                        changed.workloads.insert(owner);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use serde_json::json;

    fn workload(name: &str, uid: &str) -> Value {
        json!({"apiVersion": "flotilla.dev/v1", "kind": "Workload",
               "metadata": {"name": name, "namespace": "default", "uid": uid},
               "spec": {"module": {"sha256": "ab"}, "replicas": 1}})
    }

    fn instance(name: &str, owner: &str) -> Value {
        json!({"apiVersion": "flotilla.dev/v1", "kind": "Instance",
               "metadata": {"name": name, "namespace": "default",
                            "ownerReferences": [{"kind": "Workload", "name": owner, "uid": "u"}]},
               "spec": {"workload": owner, "template": {"module": {"sha256": "ab"}}}})
    }

    fn key(name: &str) -> Key {
        ("default".into(), name.into())
    }

    #[test]
    fn the_copy_follows_the_store_and_names_the_workloads_concerned() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        store
            .create("Workload", "default", "web", workload("web", "u"))
            .unwrap();
        store
            .create("Instance", "default", "web-1", instance("web-1", "web"))
            .unwrap();
        let mut cache = Cache::default();
        let first = cache.sync(&store).unwrap();
        assert_eq!(first.workloads, BTreeSet::from([key("web")]));
        assert_eq!(cache.owned_by(&key("web")).count(), 1);

        // Nothing written: nothing to do.
        assert_eq!(cache.sync(&store).unwrap(), Changed::default());

        // An instance's status write concerns its workload only.
        store
            .create("Workload", "default", "api", workload("api", "v"))
            .unwrap();
        cache.sync(&store).unwrap();
        let mut running = instance("web-1", "web");
        running["status"] = json!({"phase": "Running"});
        store
            .update("Instance", "default", "web-1", running, None)
            .unwrap();
        let changed = cache.sync(&store).unwrap();
        assert_eq!(changed.workloads, BTreeSet::from([key("web")]));
        let cached = cache.instances.get(&key("web-1")).unwrap();
        assert_eq!(
            cached
                .object
                .as_ref()
                .unwrap()
                .status
                .as_ref()
                .unwrap()
                .phase,
            flotilla_spec::instance::Phase::Running
        );

        // A deleted instance leaves the owner index.
        store.delete("Instance", "default", "web-1").unwrap();
        let changed = cache.sync(&store).unwrap();
        assert_eq!(changed.workloads, BTreeSet::from([key("web")]));
        assert_eq!(cache.owned_by(&key("web")).count(), 0);
        assert!(cache.instances.is_empty());
    }

    #[test]
    fn an_undecodable_instance_is_kept_and_still_owned() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        let mut strange = instance("web-1", "web");
        strange["spec"]["template"] = json!("from a newer control plane");
        store
            .create("Instance", "default", "web-1", strange)
            .unwrap();
        let mut cache = Cache::default();
        cache.sync(&store).unwrap();
        let web = key("web");
        let owned: Vec<_> = cache.owned_by(&web).collect();
        assert_eq!(owned.len(), 1);
        assert!(owned[0].object.is_none());
        assert_eq!(cache.instances.decoded().count(), 0);
    }

    #[test]
    fn replayed_changes_older_than_the_copy_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        store
            .create("Workload", "default", "web", workload("web", "u"))
            .unwrap();
        store.delete("Workload", "default", "web").unwrap();
        store
            .create("Workload", "default", "web", workload("web", "w"))
            .unwrap();
        let mut cache = Cache::default();
        assert!(cache.sync(&store).unwrap().workloads.contains(&key("web")));
        // Replaying changes the copy already holds (as after a list older
        // than some of its objects) changes nothing and queues no work: the
        // delete of the first "web" must not remove the re-created one.
        cache.revision = Some(0);
        assert_eq!(cache.sync(&store).unwrap(), Changed::default());
        let held = cache.workloads.get(&key("web")).unwrap();
        assert_eq!(held.object.as_ref().unwrap().metadata.uid, "w");
    }
}
