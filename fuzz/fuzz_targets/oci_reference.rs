//! `oci://` module references (`spec.module.source`, `flotilla push`): any
//! text, no panic; a reference that parses prints as one that parses to the
//! same reference, and pinning it to a digest names that digest.
#![no_main]

use flotilla_oci::ModuleRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|source: &str| {
    let Ok(reference) = ModuleRef::parse(source) else {
        return;
    };
    let printed = reference.to_string();
    let again = ModuleRef::parse(&printed)
        .unwrap_or_else(|e| panic!("{printed:?}, printed from {source:?}, does not parse: {e}"));
    assert_eq!(again, reference, "{source:?} printed as {printed:?}");
    let _ = reference.is_loopback();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let pinned = reference.pinned(&digest);
    assert_eq!(pinned.digest(), Some(digest.as_str()));
    assert_eq!(pinned.tag(), reference.tag());
    assert_eq!(reference.at_digest(&digest).digest(), Some(digest.as_str()));
});
