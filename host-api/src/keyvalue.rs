//! `wasi:keyvalue` (0.2.0-draft: `store`, `atomics`, `batch`): the buckets a
//! workload is granted (`spec.grants.keyValue`), each on a [`Backend`] the
//! embedder provides. Opening any other bucket fails with `access-denied`
//! (and the embedder is told, to raise an Event naming the grant).
//!
//! Limits, as Spin documents them, enforced here whatever the backend: a key
//! is 1–[`MAX_KEY_BYTES`] bytes, a value at most [`MAX_VALUE_BYTES`]; a
//! bucket holds at most its grant's quota (keys and values together), and a
//! write past it fails with `other("quota-exceeded: …")` — the draft WIT
//! has no case of its own for it. A batch names at most [`MAX_BATCH`] keys;
//! `list-keys` answers [`LIST_PAGE`] keys at a time with a cursor. The host
//! functions are async: a backend that is not in-process runs on tokio's
//! blocking pool, never on the threads that run guests and the agent; an
//! in-process one (the node's SQLite, microseconds a call) runs in place.

use std::sync::Arc;

use wasmtime::component::{HasData, Resource, ResourceTable};

use crate::{Capability, Grant};

mod generated {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "wasi:keyvalue/imports",
        // Async: a backend's work runs on the blocking pool, never on the
        // thread that runs guests and the agent's own tasks.
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::OpenBucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::KvError,
        },
    });
}

use generated::wasi::keyvalue as wit;

/// The capability: granted by naming buckets.
pub const CAPABILITY: Capability = Capability {
    name: "wasi:keyvalue",
    interfaces: &[
        "wasi:keyvalue/store",
        "wasi:keyvalue/atomics",
        "wasi:keyvalue/batch",
    ],
    core_modules: &[],
    grant: Grant::Spec("add spec.grants.keyValue: [{bucket: NAME}] naming the buckets it opens"),
};

pub use flotilla_kv::{
    check_batch, check_batch_bytes, check_key, check_value, Backend, KvError, DEFAULT_QUOTA_BYTES,
    LIST_PAGE, MAX_BATCH, MAX_BATCH_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES,
};

/// Buckets one instance may hold open at once.
pub const MAX_OPEN_BUCKETS: usize = 256;
/// `list-keys` cursors one open bucket remembers (older ones start over).
const MAX_CURSORS: usize = 64;

fn table_error(e: wasmtime::component::ResourceTableError) -> KvError {
    KvError::Other(e.to_string())
}

/// Told the name of a bucket the guest tried to open without a grant.
pub type OnDenied = Arc<dyn Fn(&str) + Send + Sync>;

/// One bucket a workload may open.
#[derive(Clone)]
pub struct BucketGrant {
    /// What the guest opens (`store.open(name)`).
    pub name: String,
    /// The backend's name for it.
    pub id: String,
    /// Where it lives.
    pub backend: Arc<dyn Backend>,
    /// Most bytes of keys and values it holds.
    pub quota: u64,
}

/// A bucket the guest opened, and where its `list-keys` cursors point
/// (cursor `n` is the key after which page `n` starts, so a listing is
/// not thrown off by writes between its pages).
pub struct OpenBucket {
    grant: BucketGrant,
    cursors: Vec<String>,
}

/// The buckets of one instance.
#[derive(Clone, Default)]
pub struct KeyValueCtx {
    /// What it may open.
    pub buckets: Vec<BucketGrant>,
    /// Told the name of a bucket the guest tried to open without a grant.
    pub on_denied: Option<OnDenied>,
    opened: FreshTable,
}

/// A resource table that every clone starts empty: a template's context
/// is cloned into each instance, whose open buckets are its own. (In a
/// mutex only to be `Sync` like the rest of the context; reached through
/// `&mut`, it is never locked.)
#[derive(Default)]
struct FreshTable(std::sync::Mutex<ResourceTable>);

impl Clone for FreshTable {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl KeyValueCtx {
    /// The buckets `buckets`; `on_denied` is told of any other the guest
    /// tries to open.
    pub fn new(buckets: Vec<BucketGrant>, on_denied: Option<OnDenied>) -> Self {
        Self {
            buckets,
            on_denied,
            opened: FreshTable::default(),
        }
    }
}

impl FreshTable {
    fn table(&mut self) -> &mut ResourceTable {
        let table = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        table.set_max_capacity(MAX_OPEN_BUCKETS);
        table
    }
}

/// Store data that carries an instance's buckets.
pub trait KeyValueView: Send + 'static {
    /// Its buckets.
    fn keyvalue(&mut self) -> &mut KeyValueCtx;
}

/// What the generated host traits are implemented on.
pub struct KeyValueHost<'a>(&'a mut KeyValueCtx);

struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = KeyValueHost<'a>;
}

/// Adds `wasi:keyvalue/{store,atomics,batch}` to a component linker.
pub fn add_to_linker<T: KeyValueView>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    fn get<T: KeyValueView>(state: &mut T) -> KeyValueHost<'_> {
        KeyValueHost(state.keyvalue())
    }
    wit::store::add_to_linker::<T, HasKeyValue>(linker, get)?;
    wit::atomics::add_to_linker::<T, HasKeyValue>(linker, get)?;
    wit::batch::add_to_linker::<T, HasKeyValue>(linker, get)?;
    Ok(())
}

/// Runs a backend's work: in place when the backend says its calls are
/// short ([`Backend::inline`]: a hop to the blocking pool would cost ten
/// times the call), else on the blocking pool.
async fn blocking<R: Send + 'static>(
    bucket: BucketGrant,
    work: impl FnOnce(&BucketGrant) -> Result<R, KvError> + Send + 'static,
) -> Result<R, KvError> {
    if bucket.backend.inline() {
        return work(&bucket);
    }
    tokio::task::spawn_blocking(move || work(&bucket))
        .await
        .map_err(|e| KvError::Other(format!("the key-value backend stopped: {e}")))?
}

impl KeyValueHost<'_> {
    fn bucket(&mut self, bucket: &Resource<OpenBucket>) -> Result<BucketGrant, KvError> {
        Ok(self
            .0
            .opened
            .table()
            .get(bucket)
            .map_err(table_error)?
            .grant
            .clone())
    }
}

impl wit::store::Host for KeyValueHost<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<OpenBucket>, KvError> {
        let Some(grant) = self
            .0
            .buckets
            .iter()
            .find(|b| b.name == identifier)
            .cloned()
        else {
            if let Some(tell) = &self.0.on_denied {
                tell(&identifier);
            }
            return Err(KvError::AccessDenied);
        };
        let open = OpenBucket {
            grant,
            cursors: Vec::new(),
        };
        self.0.opened.table().push(open).map_err(|_| {
            KvError::Other(format!(
                "at most {MAX_OPEN_BUCKETS} buckets may be open at once: drop the ones not in use"
            ))
        })
    }

    fn convert_error(&mut self, err: KvError) -> wasmtime::Result<wit::store::Error> {
        Ok(match err {
            KvError::NoSuchStore => wit::store::Error::NoSuchStore,
            KvError::AccessDenied => wit::store::Error::AccessDenied,
            KvError::Invalid(e) | KvError::Other(e) => wit::store::Error::Other(e),
        })
    }
}

impl wit::store::HostBucket for KeyValueHost<'_> {
    async fn get(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, KvError> {
        let b = self.bucket(&bucket)?;
        check_key(&key)?;
        blocking(b, move |b| b.backend.get(&b.id, &key)).await
    }

    async fn set(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KvError> {
        let b = self.bucket(&bucket)?;
        check_key(&key)?;
        check_value(&key, &value)?;
        blocking(b, move |b| {
            b.backend.set_many(&b.id, &[(key, value)], b.quota)
        })
        .await
    }

    async fn delete(&mut self, bucket: Resource<OpenBucket>, key: String) -> Result<(), KvError> {
        let b = self.bucket(&bucket)?;
        check_key(&key)?;
        blocking(b, move |b| b.backend.delete_many(&b.id, &[key])).await
    }

    async fn exists(&mut self, bucket: Resource<OpenBucket>, key: String) -> Result<bool, KvError> {
        let b = self.bucket(&bucket)?;
        check_key(&key)?;
        Ok(blocking(b, move |b| b.backend.get(&b.id, &key))
            .await?
            .is_some())
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<OpenBucket>,
        cursor: Option<u64>,
    ) -> Result<wit::store::KeyResponse, KvError> {
        let b = self.bucket(&bucket)?;
        let open = self.0.opened.table().get(&bucket).map_err(table_error)?;
        let after = match cursor {
            None => None,
            Some(n) => Some(
                usize::try_from(n)
                    .ok()
                    .and_then(|n| open.cursors.get(n))
                    .cloned()
                    .ok_or_else(|| {
                        KvError::Other(format!("cursor {n} is not one this bucket gave"))
                    })?,
            ),
        };
        let keys = blocking(b, move |b| {
            b.backend.list_keys(&b.id, after.as_deref(), LIST_PAGE)
        })
        .await?;
        let open = self
            .0
            .opened
            .table()
            .get_mut(&bucket)
            .map_err(table_error)?;
        let cursor = match keys.last() {
            Some(last) if keys.len() == LIST_PAGE => {
                if open.cursors.len() >= MAX_CURSORS {
                    open.cursors.clear();
                }
                open.cursors.push(last.clone());
                Some(open.cursors.len() as u64 - 1)
            }
            _ => None,
        };
        Ok(wit::store::KeyResponse { keys, cursor })
    }

    async fn drop(&mut self, bucket: Resource<OpenBucket>) -> wasmtime::Result<()> {
        self.0.opened.table().delete(bucket).map_err(table_error)?;
        Ok(())
    }
}

impl wit::atomics::Host for KeyValueHost<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, KvError> {
        let b = self.bucket(&bucket)?;
        check_key(&key)?;
        blocking(b, move |b| b.backend.increment(&b.id, &key, delta, b.quota)).await
    }
}

impl wit::batch::Host for KeyValueHost<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let b = self.bucket(&bucket)?;
        check_batch(keys.len())?;
        for key in &keys {
            check_key(key)?;
        }
        blocking(b, move |b| {
            let mut found = Vec::with_capacity(keys.len());
            let mut bytes = 0usize;
            for key in keys {
                let value = b.backend.get(&b.id, &key)?;
                bytes = bytes.saturating_add(value.as_ref().map_or(0, Vec::len));
                check_batch_bytes(bytes)?;
                found.push(value.map(|v| (key, v)));
            }
            Ok(found)
        })
        .await
    }

    async fn set_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KvError> {
        let b = self.bucket(&bucket)?;
        check_batch(key_values.len())?;
        let mut bytes = 0usize;
        for (key, value) in &key_values {
            check_key(key)?;
            check_value(key, value)?;
            bytes = bytes.saturating_add(value.len());
        }
        check_batch_bytes(bytes)?;
        blocking(b, move |b| b.backend.set_many(&b.id, &key_values, b.quota)).await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> Result<(), KvError> {
        let b = self.bucket(&bucket)?;
        check_batch(keys.len())?;
        for key in &keys {
            check_key(key)?;
        }
        blocking(b, move |b| b.backend.delete_many(&b.id, &keys)).await
    }
}
