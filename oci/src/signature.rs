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
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
use serde_json::{json, Value};

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

/// Whether `payload` is a signing payload for manifest `digest`.
pub fn payload_names(payload: &[u8], digest: &str) -> bool {
    serde_json::from_slice::<Value>(payload).is_ok_and(|p| {
        p["critical"]["type"] == PAYLOAD_TYPE
            && p["critical"]["image"]["docker-manifest-digest"] == digest
    })
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
