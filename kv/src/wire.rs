//! What the control plane's bucket API sends and takes (its paths are in
//! `flotilla_client::kv`): JSON shapes, values as base64.

use serde::{Deserialize, Serialize};

/// One page of a bucket's keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyPage {
    /// Keys, in order.
    pub keys: Vec<String>,
    /// Where the next page starts (`after`), if there may be one.
    #[serde(rename = "continue", default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A key and its value (base64 in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value.
    #[serde(with = "base64_bytes")]
    pub value: Vec<u8>,
}

/// What a batch asks for: exactly one of its lists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Keys to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get: Option<Vec<String>>,
    /// Pairs to write, all or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Vec<Entry>>,
    /// Keys to delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<Vec<String>>,
}

/// A batch read's answer: one entry per key asked, `None` where absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BatchValues {
    /// In the order asked.
    pub values: Vec<Option<Entry>>,
}

/// A value's ETag: its SHA-256, hex, quoted.
pub fn etag(digest: &[u8; 32]) -> String {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}
