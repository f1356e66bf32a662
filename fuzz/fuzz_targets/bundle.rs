//! Bundles (`flotilla bundle import`): a tar file from anywhere. Any bytes,
//! no panic, and every module handed out is the one its layer names. Half
//! the inputs are made into a well-formed OCI layout around fuzzed
//! `index.json`, manifests and blobs (each stored under its own sha256), so
//! the fuzzer gets past the tar and hash checks to the index and manifests.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use flotilla_oci::bundle::Bundle;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const MAX_MODULE_BYTES: u64 = 1 << 20;

fn scratch() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary folder"))
        .path()
}

/// Splits the parts of a layout: no byte of JSON text is 0xFF.
const SEPARATOR: u8 = 0xFF;

/// `index.json`, then blobs, split at [`SEPARATOR`], in a valid layout.
fn layout(input: &[u8]) -> Vec<u8> {
    let mut parts = input.split(|b| *b == SEPARATOR);
    let index = parts.next().unwrap_or_default();
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes)
            .expect("appending to a Vec");
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", index);
    for blob in parts {
        add(
            &format!("blobs/sha256/{}", hex::encode(Sha256::digest(blob))),
            blob,
        );
    }
    tar.into_inner().expect("a finished tar")
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        layout(rest)
    } else {
        rest.to_vec()
    };
    let path = scratch().join("bundle.tar");
    let mut file = std::fs::File::create(&path).expect("a scratch file");
    file.write_all(&bytes).expect("written");
    drop(file);
    let repository = (mode & 2 != 0).then_some("oci://localhost:5000/fuzz/app");
    let Ok(mut bundle) = Bundle::open(&path, repository, MAX_MODULE_BYTES) else {
        return;
    };
    for entry in bundle.entries.clone() {
        assert!(entry.reference.digest().is_some() || entry.reference.tag().is_some());
        let wanted = format!("sha256:{}", hex::encode(Sha256::digest(&entry.manifest)));
        assert_eq!(entry.manifest_digest, wanted);
        if let Ok(module) = bundle.module(&entry) {
            assert!(module.len() as u64 <= MAX_MODULE_BYTES);
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(&module)));
            assert_eq!(digest, entry.layer.digest);
        }
    }
});
