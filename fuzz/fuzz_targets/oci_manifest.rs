//! What a registry or a bundle hands over: manifests and cosign signing
//! payloads. Any bytes, no panic; a manifest is taken only if the
//! reference's digest names it and its one module layer is within the cap;
//! a payload made for a repository and digest names exactly those.
#![no_main]

use flotilla_oci::layout::parse_manifest;
use flotilla_oci::signature::{payload, payload_identity, payload_names};
use flotilla_oci::ModuleRef;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const MAX_MODULE_BYTES: u64 = 1 << 20;

fuzz_target!(|input: (&[u8], &str, &str)| {
    let (bytes, repository, digest) = input;
    let tagged = ModuleRef::parse("oci://localhost:5000/fuzz/app:v1").expect("a valid reference");
    if let Ok(parsed) = parse_manifest(&tagged, bytes, MAX_MODULE_BYTES) {
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        assert_eq!(parsed.digest, actual);
        assert!(parsed.layer.size >= 0 && parsed.layer.size as u64 <= MAX_MODULE_BYTES);
        // Pinned to another digest, the same bytes are refused.
        let other = tagged.at_digest(&format!("sha256:{}", "0".repeat(64)));
        if actual != other.digest().unwrap_or_default() {
            assert!(parse_manifest(&other, bytes, MAX_MODULE_BYTES).is_err());
        }
    }
    // Signing payloads: whatever bytes, no panic.
    let _ = payload_identity(bytes);
    let _ = payload_names(bytes, digest);
    // One made here names what it was made for, whatever the strings.
    let made = payload(repository, digest);
    assert_eq!(payload_identity(&made).as_deref(), Some(repository));
    assert!(payload_names(&made, digest));
});
