//! The CNCF Wasm OCI artifact layout: what a manifest of a Wasm module
//! holds, written on push and checked on pull.

use oci_client::manifest::{OciDescriptor, OciImageManifest};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{ModuleRef, OciError};

/// The config's media type: this artifact is a Wasm module.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The one layer's media type: the module's bytes, as they are.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// Manifest annotations Flotilla writes (the OCI image spec's keys).
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// Where the module's source code lives.
pub const ANNOTATION_SOURCE: &str = "org.opencontainers.image.source";
/// The module's version.
pub const ANNOTATION_VERSION: &str = "org.opencontainers.image.version";

/// The Wasm config (`application/vnd.wasm.config.v0+json`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// When it was pushed (RFC 3339).
    pub created: String,
    /// Always `wasm`.
    pub architecture: &'static str,
    /// `wasip2` for a component, `wasip1` for a core module.
    pub os: &'static str,
    /// The layers' digests.
    pub layer_digests: Vec<String>,
}

/// Whether `bytes` are a component (version 0x0d, layer 1) rather than a
/// core module (version 1).
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.get(4..8) == Some(&[0x0d, 0x00, 0x01, 0x00])
}

/// The config for a module of these bytes, whose layer has `digest`.
pub fn config_for(bytes: &[u8], digest: &str, created: &str) -> WasmConfig {
    WasmConfig {
        created: created.to_string(),
        architecture: "wasm",
        os: if is_component(bytes) {
            "wasip2"
        } else {
            "wasip1"
        },
        layer_digests: vec![digest.to_string()],
    }
}

/// The module's layer in `manifest`, once the manifest is checked to be a
/// Wasm artifact of at most `max_bytes`.
pub fn module_layer(
    reference: &ModuleRef,
    manifest: &OciImageManifest,
    max_bytes: u64,
) -> Result<OciDescriptor, OciError> {
    let not_wasm = |why: String| OciError::NotWasm {
        reference: reference.to_string(),
        why,
    };
    if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(not_wasm(format!(
            "its config is {:?}, not {WASM_CONFIG_MEDIA_TYPE:?} (push Wasm with flotilla push, wkg or oras, not as a container image)",
            manifest.config.media_type
        )));
    }
    let wasm: Vec<&OciDescriptor> = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == WASM_LAYER_MEDIA_TYPE)
        .collect();
    let [layer] = wasm.as_slice() else {
        return Err(not_wasm(format!(
            "it has {} layers of type {WASM_LAYER_MEDIA_TYPE:?}, not one",
            wasm.len()
        )));
    };
    // (It names a file in the blob store: nothing but hex.)
    let hex = layer.digest.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(not_wasm(format!(
            "its layer's digest {:?} is not a sha256 digest",
            layer.digest
        )));
    }
    // Other places to fetch it from would be hosts the registry chose,
    // reached without it: never.
    if layer.urls.as_ref().is_some_and(|urls| !urls.is_empty()) {
        return Err(not_wasm(
            "its layer names other URLs to fetch it from (a foreign layer); Flotilla fetches modules from the registry only".into(),
        ));
    }
    let size = u64::try_from(layer.size).unwrap_or(u64::MAX);
    if size > max_bytes {
        return Err(not_wasm(format!(
            "the module is {size} bytes, more than the {max_bytes} a module may have"
        )));
    }
    Ok((*layer).clone())
}

/// Largest manifest read (real ones are a few hundred bytes).
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// Largest config blob read.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// A manifest's exact bytes, checked to be a Wasm artifact.
#[derive(Debug, Clone)]
pub struct ParsedManifest {
    /// `sha256:…` of its bytes.
    pub digest: String,
    /// Its config's descriptor.
    pub config: OciDescriptor,
    /// The module's layer.
    pub layer: OciDescriptor,
}

/// Parses manifest `bytes`, which `reference` names: a Wasm artifact whose
/// module has at most `max_bytes`, and the manifest `reference` pins, if it
/// pins one.
pub fn parse_manifest(
    reference: &ModuleRef,
    bytes: &[u8],
    max_bytes: u64,
) -> Result<ParsedManifest, OciError> {
    let unusable = |message: String| OciError::Unusable {
        reference: reference.to_string(),
        message,
    };
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(unusable(format!(
            "its manifest is {} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have",
            bytes.len()
        )));
    }
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    if let Some(wanted) = reference.digest().filter(|wanted| *wanted != digest) {
        return Err(OciError::DigestMismatch {
            reference: reference.to_string(),
            expected: wanted.to_string(),
            actual: digest.trim_start_matches("sha256:").to_string(),
        });
    }
    let manifest: OciImageManifest = serde_json::from_slice(bytes)
        .map_err(|e| unusable(format!("its manifest is not an OCI image manifest: {e}")))?;
    let layer = module_layer(reference, &manifest, max_bytes)?;
    Ok(ParsedManifest {
        digest,
        config: manifest.config,
        layer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(config: &str, layers: &[(&str, i64)]) -> OciImageManifest {
        let mut m = OciImageManifest::default();
        m.config.media_type = config.into();
        for (media_type, size) in layers {
            m.layers.push(OciDescriptor {
                media_type: media_type.to_string(),
                digest: format!("sha256:{}", "b".repeat(64)),
                size: *size,
                ..Default::default()
            });
        }
        m
    }

    #[test]
    fn only_a_wasm_artifact_with_one_module_layer_within_the_cap_passes() {
        let r = ModuleRef::parse("oci://localhost:5000/app:v1").unwrap();
        let ok = manifest(WASM_CONFIG_MEDIA_TYPE, &[(WASM_LAYER_MEDIA_TYPE, 100)]);
        assert_eq!(module_layer(&r, &ok, 1000).unwrap().size, 100);
        for (bad, says) in [
            (
                manifest(
                    "application/vnd.oci.image.config.v1+json",
                    &[(WASM_LAYER_MEDIA_TYPE, 1)],
                ),
                "as a container image",
            ),
            (manifest(WASM_CONFIG_MEDIA_TYPE, &[]), "0 layers"),
            (
                manifest(
                    WASM_CONFIG_MEDIA_TYPE,
                    &[(WASM_LAYER_MEDIA_TYPE, 1), (WASM_LAYER_MEDIA_TYPE, 1)],
                ),
                "2 layers",
            ),
            (
                manifest(WASM_CONFIG_MEDIA_TYPE, &[(WASM_LAYER_MEDIA_TYPE, 5000)]),
                "more than the 1000",
            ),
        ] {
            let e = module_layer(&r, &bad, 1000).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn components_and_core_modules_are_told_apart() {
        assert!(is_component(b"\0asm\x0d\x00\x01\x00"));
        assert!(!is_component(b"\0asm\x01\x00\x00\x00"));
        let config = config_for(b"\0asm\x01\x00\x00\x00", "sha256:x", "2026-01-01T00:00:00Z");
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["os"], "wasip1");
        assert_eq!(json["layerDigests"][0], "sha256:x");
    }
}
