//! `Config` and `Secret`: configuration a workload reads without a rebuild
//! (like Kubernetes' ConfigMap and Secret, and shaped like them: `data` at
//! the top level, no `spec`). A Secret's values are base64 in `data`;
//! `stringData` is a write-only convenience folded into `data` at
//! admission. Namespaced; keys as Kubernetes allows them; at most
//! [`MAX_DATA_BYTES`] of values each.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;

/// Most bytes of values one Config or Secret holds (Kubernetes' limit).
pub const MAX_DATA_BYTES: usize = 1 << 20;

/// The type of a Secret whose use is not known (the default).
pub const OPAQUE: &str = "Opaque";
/// The type of a Secret holding a certificate and its key, for HTTPS at
/// the ingress (as Kubernetes' `kubernetes.io/tls`).
pub const TLS_SECRET_TYPE: &str = "flotilla.dev/tls";
/// The type of a Secret holding registry credentials (as Kubernetes').
pub const DOCKER_CONFIG_SECRET_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// The label (value `"true"`) that makes a `kubernetes.io/dockerconfigjson`
/// Secret the pull secret of every workload in its namespace, after the
/// workload's own `imagePullSecrets` (what the `imagePullSecrets` of a
/// Kubernetes namespace's default ServiceAccount do).
pub const NAMESPACE_PULL_SECRET_LABEL: &str = "flotilla.dev/namespace-pull-secret";
/// A registry Secret's one key: a Docker `config.json` (`{"auths": …}`).
pub const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";
/// A TLS Secret's certificate chain (PEM).
pub const TLS_CERT_KEY: &str = "tls.crt";
/// A TLS Secret's private key (PEM).
pub const TLS_KEY_KEY: &str = "tls.key";

/// A Config: named strings and binary values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// `flotilla.dev/v1`.
    pub api_version: String,
    /// `Config`.
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// UTF-8 values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Other values, base64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub binary_data: BTreeMap<String, String>,
    /// Whether it can never change (only be deleted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub immutable: bool,
}

/// A Secret: named values, base64.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secret {
    /// `flotilla.dev/v1`.
    pub api_version: String,
    /// `Secret`.
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// Values, base64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Values as plain strings, folded into `data` when stored (write-only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    /// What it holds: `Opaque` (the default) or e.g. `flotilla.dev/tls`.
    #[serde(rename = "type", default = "opaque")]
    pub secret_type: String,
    /// Whether it can never change (only be deleted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub immutable: bool,
}

fn opaque() -> String {
    OPAQUE.into()
}

/// Base64 decoded, if it is base64.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Base64 (standard alphabet, padded), as `data` holds values.
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Whether `key` may name a value: 1-253 of `[-._a-zA-Z0-9]`, not `.` or
/// `..` (it may become a file name).
pub fn check_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        && key != "."
        && key != "..";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key:?} is not a valid key (1-253 of letters, digits, '-', '_' and '.'; not '.' or '..')"
        ))
    }
}

fn check_size(total: usize) -> Result<(), String> {
    if total > MAX_DATA_BYTES {
        Err(format!(
            "data: {total} bytes of values is more than the {MAX_DATA_BYTES} allowed"
        ))
    } else {
        Ok(())
    }
}

impl Config {
    /// Problems, with field paths: bad keys, a key in both maps, bad
    /// base64, too much data.
    pub fn validate(&self) -> Result<(), String> {
        let mut total = 0;
        for (key, value) in &self.data {
            check_key(key).map_err(|e| format!("data.{key}: {e}"))?;
            total += value.len();
        }
        for (key, value) in &self.binary_data {
            check_key(key).map_err(|e| format!("binaryData.{key}: {e}"))?;
            if self.data.contains_key(key) {
                return Err(format!(
                    "binaryData.{key}: the key is in data too; keep one of them"
                ));
            }
            total += base64_decode(value)
                .ok_or_else(|| format!("binaryData.{key}: not base64"))?
                .len();
        }
        check_size(total)
    }

    /// The value of `key`, as bytes.
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        match self.data.get(key) {
            Some(text) => Some(text.as_bytes().to_vec()),
            None => base64_decode(self.binary_data.get(key)?),
        }
    }

    /// Every value, by key.
    pub fn values(&self) -> BTreeMap<String, Vec<u8>> {
        self.data
            .keys()
            .chain(self.binary_data.keys())
            .filter_map(|k| Some((k.clone(), self.value(k)?)))
            .collect()
    }
}

impl Secret {
    /// Folds `stringData` into `data` (its values win, as in Kubernetes)
    /// and checks the result: keys, base64, size, a type.
    pub fn normalise(&mut self) -> Result<(), String> {
        for (key, value) in std::mem::take(&mut self.string_data) {
            check_key(&key).map_err(|e| format!("stringData.{key}: {e}"))?;
            self.data.insert(key, base64_encode(value.as_bytes()));
        }
        let mut total = 0;
        for (key, value) in &self.data {
            check_key(key).map_err(|e| format!("data.{key}: {e}"))?;
            total += base64_decode(value)
                .ok_or_else(|| format!("data.{key}: not base64 (stringData takes plain text)"))?
                .len();
        }
        if self.secret_type.is_empty() || self.secret_type.len() > 253 {
            return Err("type: give one of 1-253 characters (Opaque by default)".into());
        }
        if self.secret_type == DOCKER_CONFIG_SECRET_TYPE
            && !self.data.contains_key(DOCKER_CONFIG_KEY)
        {
            return Err(format!(
                "a {DOCKER_CONFIG_SECRET_TYPE} secret has the key {DOCKER_CONFIG_KEY} (a Docker config.json with \"auths\"); it is missing (flotilla create secret docker-registry NAME --docker-server … --docker-username … --docker-password …)"
            ));
        }
        if self.secret_type == TLS_SECRET_TYPE {
            for key in [TLS_CERT_KEY, TLS_KEY_KEY] {
                if !self.data.contains_key(key) {
                    return Err(format!(
                        "a {TLS_SECRET_TYPE} secret has the keys {TLS_CERT_KEY} (PEM certificate chain) and {TLS_KEY_KEY} (PEM private key); {key} is missing (flotilla create secret tls NAME --cert FILE --key FILE)"
                    ));
                }
            }
        }
        check_size(total)
    }

    /// The value of `key`, as bytes.
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        base64_decode(self.data.get(key)?)
    }

    /// Every value, by key.
    pub fn values(&self) -> BTreeMap<String, Vec<u8>> {
        self.data
            .keys()
            .filter_map(|k| Some((k.clone(), self.value(k)?)))
            .collect()
    }
}

/// The values, by key, of a stored Config or Secret (`kind`), or `None`
/// if it does not decode as one.
pub fn values_of(kind: &str, object: serde_json::Value) -> Option<BTreeMap<String, Vec<u8>>> {
    if kind == "Secret" {
        serde_json::from_value::<Secret>(object)
            .ok()
            .map(|s| s.values())
    } else {
        serde_json::from_value::<Config>(object)
            .ok()
            .map(|c| c.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_values_and_sizes_are_checked() {
        for bad in ["", ".", "..", "a/b", "a b", &"k".repeat(254)] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        check_key("app.properties").unwrap();
        let mut config = Config::default();
        config.data.insert("mode".into(), "fast".into());
        config
            .binary_data
            .insert("logo".into(), base64_encode(&[0, 1, 2]));
        config.validate().unwrap();
        assert_eq!(config.value("logo"), Some(vec![0, 1, 2]));
        assert_eq!(config.value("mode"), Some(b"fast".to_vec()));
        config
            .binary_data
            .insert("mode".into(), base64_encode(b"x"));
        assert!(config.validate().unwrap_err().contains("in data too"));
        config.binary_data.clear();
        config.data.insert("big".into(), "x".repeat(MAX_DATA_BYTES));
        assert!(config.validate().unwrap_err().contains("more than"));
    }

    #[test]
    fn string_data_is_folded_into_data() {
        let mut secret = Secret {
            secret_type: OPAQUE.into(),
            ..Secret::default()
        };
        secret.data.insert("password".into(), base64_encode(b"old"));
        secret
            .string_data
            .insert("password".into(), "s3cret".into());
        secret.normalise().unwrap();
        assert!(secret.string_data.is_empty());
        assert_eq!(secret.value("password"), Some(b"s3cret".to_vec()));
        secret.data.insert("bad".into(), "%%%".into());
        assert!(secret.normalise().unwrap_err().contains("not base64"));
    }
}
