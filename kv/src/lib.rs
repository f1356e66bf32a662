//! Key-value buckets, as `wasi:keyvalue` and `flotilla kv` see them: the
//! [`Backend`] trait every store of buckets implements, the limits every
//! entry point enforces (the same as Spin documents), and [`SqliteKv`], the
//! store in one SQLite file that an agent keeps for `node` buckets and the
//! control plane keeps for `cluster` buckets.
//!
//! A bucket is named by its backend's id for it (`namespace/bucket`); its
//! quota bounds its keys and values together and is checked in the same
//! transaction as the write, so concurrent writers cannot pass it together.

mod sqlite;
pub mod wire;

pub use sqlite::SqliteKv;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// A bucket's quota when its grant names none.
pub const DEFAULT_QUOTA_BYTES: u64 = 64 << 20;
/// Most keys one batch names.
pub const MAX_BATCH: usize = 1000;
/// Most bytes of values one batch reads or writes.
pub const MAX_BATCH_BYTES: usize = 16 << 20;
/// Keys one listing answers.
pub const LIST_PAGE: usize = 1000;

/// Why an operation failed, as a guest or an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// No such bucket.
    #[error("no such bucket")]
    NoSuchStore,
    /// The caller is not granted the bucket.
    #[error("access denied: the bucket is not granted")]
    AccessDenied,
    /// The caller's mistake, in words: past a limit, a value that is not
    /// a number for `increment`.
    #[error("{0}")]
    Invalid(String),
    /// Anything else, in words (quota, the backend's trouble).
    #[error("{0}")]
    Other(String),
}

impl KvError {
    /// A write that would take the bucket past its quota.
    pub fn quota_exceeded(bucket: &str, used: u64, adding: u64, quota: u64) -> Self {
        Self::Other(format!(
            "quota-exceeded: bucket {bucket} holds {used} bytes; {adding} more would pass its quota of {quota} (raise quota in spec.grants.keyValue, or delete keys)"
        ))
    }

    /// Whether it is a [`KvError::quota_exceeded`].
    pub fn is_quota_exceeded(&self) -> bool {
        matches!(self, KvError::Other(m) if is_quota_message(m))
    }
}

/// Whether `message` is the words of a [`KvError::quota_exceeded`] (as
/// the bucket API passes it on).
pub fn is_quota_message(message: &str) -> bool {
    message.starts_with("quota-exceeded")
}

/// Where buckets live. `bucket` is the backend's id of a bucket (unique
/// among the buckets it holds); `quota` bounds the bucket's keys and values
/// together.
pub trait Backend: Send + Sync {
    /// The value of `key`.
    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Sets every pair at once (all or none).
    fn set_many(
        &self,
        bucket: &str,
        pairs: &[(String, Vec<u8>)],
        quota: u64,
    ) -> Result<(), KvError>;
    /// Deletes the keys (absent ones are no error).
    fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError>;
    /// Keys in order after `after` (from the first when `None`), at most
    /// `limit`.
    fn list_keys(
        &self,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, KvError>;
    /// Adds `delta` to the decimal number at `key` (0 if absent), atomically.
    fn increment(&self, bucket: &str, key: &str, delta: u64, quota: u64) -> Result<u64, KvError>;
    /// Sets `key` to `value` only if its value now has the SHA-256
    /// `expected` (`None`: only if it is absent), atomically; whether it
    /// did.
    fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<[u8; 32]>,
        value: &[u8],
        quota: u64,
    ) -> Result<bool, KvError>;
    /// Whether its calls are short enough to make on the caller's own
    /// thread (an in-process store answering in microseconds); otherwise
    /// async callers hand them to a blocking pool (a store across a network).
    fn inline(&self) -> bool {
        false
    }
}

/// The usage of `bucket` once `pairs` are written in order over what it
/// holds now (`used` bytes; `size_of` gives a key's stored size, key and
/// value), or the quota error of the first pair that would pass `quota`
/// (a write that does not grow a key always passes).
pub fn usage_after(
    bucket: &str,
    used: u64,
    pairs: &[(String, Vec<u8>)],
    quota: u64,
    mut size_of: impl FnMut(&str) -> Result<u64, KvError>,
) -> Result<u64, KvError> {
    let mut total = used;
    // A key named twice: its earlier value in this batch is what the later
    // one replaces.
    let mut written: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (key, value) in pairs {
        let before = match written.get(key.as_str()) {
            Some(size) => *size,
            None => size_of(key)?,
        };
        let after = (key.len() + value.len()) as u64;
        if after > before && total - before.min(total) + after > quota {
            return Err(KvError::quota_exceeded(
                bucket,
                total,
                after - before,
                quota,
            ));
        }
        total = total - before.min(total) + after;
        written.insert(key, after);
    }
    Ok(total)
}

/// What `increment` stores: the decimal number at `key` (0 when absent)
/// plus `delta`.
pub fn incremented(key: &str, current: Option<&[u8]>, delta: u64) -> Result<u64, KvError> {
    let current = match current {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                KvError::Invalid(format!(
                    "the value of {key:?} is not a decimal number, so it cannot be incremented"
                ))
            })?,
    };
    current
        .checked_add(delta)
        .ok_or_else(|| KvError::Invalid(format!("incrementing {key:?} by {delta} overflows a u64")))
}

/// The SHA-256 of a value: what [`Backend::compare_and_swap`] compares, and
/// the API's `ETag`.
pub fn digest(value: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(value).into()
}

/// A key is 1 to [`MAX_KEY_BYTES`] bytes.
pub fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KvError::Invalid(format!(
            "a key is 1 to {MAX_KEY_BYTES} bytes; this one is {}",
            key.len()
        )));
    }
    Ok(())
}

/// A value is at most [`MAX_VALUE_BYTES`].
pub fn check_value(key: &str, value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::Invalid(format!(
            "the value of {key:?} is {} bytes; a value is at most {MAX_VALUE_BYTES} (1 MiB)",
            value.len()
        )));
    }
    Ok(())
}

/// A batch names at most [`MAX_BATCH`] keys.
pub fn check_batch(len: usize) -> Result<(), KvError> {
    if len > MAX_BATCH {
        return Err(KvError::Invalid(format!(
            "a batch names at most {MAX_BATCH} keys; this one {len}"
        )));
    }
    Ok(())
}

/// A batch's values are at most [`MAX_BATCH_BYTES`] together.
pub fn check_batch_bytes(total: usize) -> Result<(), KvError> {
    if total > MAX_BATCH_BYTES {
        return Err(KvError::Invalid(format!(
            "a batch reads or writes at most {MAX_BATCH_BYTES} bytes of values (16 MiB); this one {total}: split it"
        )));
    }
    Ok(())
}
