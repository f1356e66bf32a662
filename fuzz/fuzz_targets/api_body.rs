//! What the API admits: any body for any kind, created, then changed by any
//! merge patch. No panic; what is admitted has the server's metadata and
//! admits again; a merge patch applied twice is the patch applied once;
//! a replace keeps the stored object's identity.
#![no_main]

use std::sync::OnceLock;

use flotilla_control_plane::api::admission::{for_create, for_replace};
use flotilla_control_plane::api::{merge_patch, Kind};
use flotilla_control_plane::store::BlobStore;
use flotilla_spec::kinds::KINDS;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn blobs() -> &'static BlobStore {
    static BLOBS: OnceLock<(tempfile::TempDir, BlobStore)> = OnceLock::new();
    &BLOBS
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary folder");
            let blobs = BlobStore::open(dir.path()).expect("a blob store");
            (dir, blobs)
        })
        .1
}

/// Splits the body from the patch: no byte of JSON text is 0xFF.
const SEPARATOR: u8 = 0xFF;

// A kind's index, the body, 0xFF, the patch (a shape seeds can be written in).
fuzz_target!(|input: &[u8]| {
    let Some((&which, rest)) = input.split_first() else {
        return;
    };
    let kind: Kind = KINDS[usize::from(which) % KINDS.len()].kind;
    let mut parts = rest.splitn(2, |b| *b == SEPARATOR);
    let (body, patch) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or(b"{}"),
    );
    let (Ok(body), Ok(patch)) = (
        serde_json::from_slice::<Value>(body),
        serde_json::from_slice::<Value>(patch),
    ) else {
        return;
    };
    let namespace = if kind.namespaced() { "default" } else { "" };

    let mut once = body.clone();
    merge_patch::apply(&mut once, &patch);
    let mut twice = once.clone();
    merge_patch::apply(&mut twice, &patch);
    assert_eq!(once, twice, "a merge patch applied twice differs from once");

    let Ok(created) = for_create(kind, namespace, body, blobs()) else {
        return;
    };
    let meta = &created["metadata"];
    assert!(meta["uid"].is_string() && meta["creationTimestamp"].is_string());
    assert_eq!(meta["generation"], 1);
    let name = meta["name"]
        .as_str()
        .expect("an admitted object has a name");
    let Ok((replaced, _)) = for_replace(kind, namespace, name, once, &created, blobs()) else {
        return;
    };
    assert_eq!(replaced["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(replaced["metadata"]["name"], created["metadata"]["name"]);
    assert_eq!(replaced.get("status"), created.get("status"));
});
