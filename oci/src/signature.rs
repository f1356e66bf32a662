//! Module signatures, as cosign makes them with a key — so `cosign sign
//! --key` and `cosign verify --key` interoperate with `flotilla sign` and
//! with the control plane's checks, without the OCI referrers API:
//!
//! - the signature of manifest `sha256:HEX` lives in the same repository
//!   under the tag `sha256-HEX.sig`;
//! - each of that manifest's layers (`application/vnd.dev.cosign.simplesigning.v1+json`)
//!   is a "simple signing" payload naming the manifest digest, with the
//!   base64 DER ECDSA P-256/SHA-256 signature of the payload in the
//!   annotation `dev.cosignproject.cosign/signature`.
//!
//! Keys: PEM, ECDSA P-256 — PKCS#8 private keys (`openssl genpkey
//! -algorithm EC -pkeyopt ec_paramgen_curve:P-256`; cosign's own encrypted
//! key files are not read) and SubjectPublicKeyInfo public keys (what
//! `cosign generate-key-pair` writes as `cosign.pub`).

use base64::Engine;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

use crate::OciError;

/// The media type of a signature layer.
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation that carries a layer's signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Largest payload read (they are a few hundred bytes).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Most signatures of one manifest looked at.
pub const MAX_SIGNATURES: usize = 16;
const PAYLOAD_TYPE: &str = "cosign container image signature";

/// The tag under which manifest `digest`'s signatures live.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// The simple-signing payload for manifest `digest` of `repository`
/// (`REGISTRY/REPOSITORY`).
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": null,
    })
    .to_string()
    .into_bytes()
}

/// The repository (`REGISTRY/REPOSITORY`) a signing payload names.
pub fn payload_identity(payload: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(payload).ok().and_then(|p| {
        p["critical"]["identity"]["docker-reference"]
            .as_str()
            .map(str::to_string)
    })
}

/// Whether `payload` is a signing payload for manifest `digest`.
pub fn payload_names(payload: &[u8], digest: &str) -> bool {
    serde_json::from_slice::<Value>(payload).is_ok_and(|p| {
        p["critical"]["type"] == PAYLOAD_TYPE
            && p["critical"]["image"]["docker-manifest-digest"] == digest
    })
}

/// One signature as cosign stores it: a payload and, from the layer's
/// annotation, its signature (base64 of DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The simple-signing payload.
    pub payload: Vec<u8>,
    /// Its signature, base64 of DER.
    pub signature: String,
}

impl Signed {
    /// `key`'s signature of manifest `digest` in repository `place`
    /// (`REGISTRY/REPOSITORY`).
    pub fn by(key: &PrivateKey, place: &str, digest: &str) -> Self {
        let payload = payload(place, digest);
        let signature = key.sign(&payload);
        Self { payload, signature }
    }

    /// Its layer in a signature manifest.
    pub fn layer(&self) -> OciDescriptor {
        OciDescriptor {
            media_type: SIGNATURE_MEDIA_TYPE.to_string(),
            digest: format!("sha256:{}", hex::encode(Sha256::digest(&self.payload))),
            size: i64::try_from(self.payload.len()).unwrap_or(i64::MAX),
            annotations: Some(BTreeMap::from([(
                SIGNATURE_ANNOTATION.to_string(),
                self.signature.clone(),
            )])),
            ..Default::default()
        }
    }
}

/// The config blob cosign writes for a signature manifest of `layers`.
pub fn manifest_config(layers: &[OciDescriptor]) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    json!({
        "architecture": "", "os": "", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes()
}

/// A signature manifest of `layers` with `config` (from [`manifest_config`]).
pub fn manifest(layers: Vec<OciDescriptor>, config: &[u8]) -> OciImageManifest {
    let mut manifest = OciImageManifest::default();
    manifest.config.media_type = oci_client::manifest::IMAGE_CONFIG_MEDIA_TYPE.to_string();
    manifest.config.digest = format!("sha256:{}", hex::encode(Sha256::digest(config)));
    manifest.config.size = i64::try_from(config.len()).unwrap_or(i64::MAX);
    manifest.layers = layers;
    manifest
}

/// The signatures that `layers` of a signature manifest carry, each
/// payload read by `read` (`None` for one that cannot be read): at most
/// [`MAX_SIGNATURES`], each payload checked against its layer's digest and
/// no larger than [`MAX_PAYLOAD_BYTES`]. One that fails is one signature
/// fewer.
pub fn from_layers<'a>(
    layers: impl IntoIterator<Item = &'a OciDescriptor>,
    mut read: impl FnMut(&OciDescriptor) -> Option<Vec<u8>>,
) -> Vec<Signed> {
    let mut found = Vec::new();
    for layer in layers
        .into_iter()
        .filter(|l| l.media_type == SIGNATURE_MEDIA_TYPE)
        .take(MAX_SIGNATURES)
    {
        let Some(signature) = layer
            .annotations
            .as_ref()
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
        else {
            continue;
        };
        if usize::try_from(layer.size).map_or(true, |size| size > MAX_PAYLOAD_BYTES) {
            continue;
        }
        let Some(payload) = read(layer) else {
            continue;
        };
        if payload.len() > MAX_PAYLOAD_BYTES
            || format!("sha256:{}", hex::encode(Sha256::digest(&payload))) != layer.digest
        {
            continue;
        }
        found.push(Signed {
            payload,
            signature: signature.clone(),
        });
    }
    found
}

/// Checks that one of `signatures` (`None`: the module has no signature
/// manifest at all) signs manifest `digest` of `reference` with one of
/// `keys`; `policy` names who asks, for the refusal. With `identities`,
/// the signature must also name one of these repositories
/// (`REGISTRY/REPOSITORY`): where no registry vouches for which repository
/// a manifest is in (a bundle), a signature made for one repository is not
/// taken for another.
pub fn verify(
    reference: &str,
    policy: &str,
    digest: &str,
    signatures: Option<&[Signed]>,
    keys: &[PublicKey],
    identities: Option<&[String]>,
) -> Result<(), OciError> {
    let unsigned = |why: String| OciError::Unsigned {
        reference: reference.to_string(),
        policy: policy.to_string(),
        why,
    };
    let Some(signatures) = signatures else {
        return Err(unsigned(format!(
            "the module is not signed (no signature manifest {} in its repository or bundle; sign it with flotilla sign or cosign sign --key)",
            signature_tag(digest)
        )));
    };
    let named = |s: &Signed| {
        identities.is_none_or(|places| {
            payload_identity(&s.payload).is_some_and(|place| places.contains(&place))
        })
    };
    if signatures.iter().take(MAX_SIGNATURES).any(|s| {
        payload_names(&s.payload, digest)
            && named(s)
            && keys.iter().any(|k| k.verifies(&s.payload, &s.signature))
    }) {
        return Ok(());
    }
    Err(unsigned(format!(
        "none of the {} signatures under {} is by a key of the policy for this manifest{}: sign it with the private half of one of the policy's keys (flotilla sign {reference} --key KEY)",
        signatures.len(),
        signature_tag(digest),
        match identities {
            Some(places) => format!(" and names its repository ({})", places.join(" or ")),
            None => String::new(),
        }
    )))
}

/// A key that signatures are checked with.
#[derive(Debug, Clone)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// From PEM (`-----BEGIN PUBLIC KEY-----`, ECDSA P-256).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(Self)
            .map_err(|e| format!("not an ECDSA P-256 public key in PEM (BEGIN PUBLIC KEY): {e}"))
    }

    /// Whether `signature` (base64 of DER) signs `payload` with this key.
    pub fn verifies(&self, payload: &[u8], signature: &str) -> bool {
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
            return false;
        };
        let Ok(signature) = Signature::from_der(&der) else {
            return false;
        };
        self.0.verify(payload, &signature).is_ok()
    }
}

/// A key that signs.
pub struct PrivateKey(SigningKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl PrivateKey {
    /// From PEM (`-----BEGIN PRIVATE KEY-----`, PKCS#8, ECDSA P-256).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        SigningKey::from_pkcs8_pem(pem.trim()).map(Self).map_err(|_| {
            "not an unencrypted ECDSA P-256 private key in PKCS#8 PEM (BEGIN PRIVATE KEY; make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`)".to_string()
        })
    }

    /// The signature of `payload`: base64 of DER.
    pub fn sign(&self, payload: &[u8]) -> String {
        let signature: Signature = self.0.sign(payload);
        let der: DerSignature = signature.to_der();
        base64::engine::general_purpose::STANDARD.encode(der.as_bytes())
    }

    /// Its public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only_and_for_its_payload_only() {
        let key = PrivateKey(SigningKey::from_slice(&[7u8; 32]).unwrap());
        let other = PrivateKey(SigningKey::from_slice(&[9u8; 32]).unwrap());
        let digest = format!("sha256:{}", "a".repeat(64));
        let body = payload("localhost:5000/app", &digest);
        assert!(payload_names(&body, &digest));
        assert!(!payload_names(&body, &format!("sha256:{}", "b".repeat(64))));
        let signature = key.sign(&body);
        assert!(key.public().verifies(&body, &signature));
        assert!(!other.public().verifies(&body, &signature));
        let mut changed = body.clone();
        changed[10] ^= 1;
        assert!(!key.public().verifies(&changed, &signature));
        assert!(!key.public().verifies(&body, "not base64!"));
        assert_eq!(
            signature_tag(&digest),
            format!("sha256-{}.sig", "a".repeat(64))
        );
        assert!(PublicKey::from_pem("nonsense").is_err());
        assert!(PrivateKey::from_pem("nonsense")
            .unwrap_err()
            .contains("PKCS#8"));
    }
}
