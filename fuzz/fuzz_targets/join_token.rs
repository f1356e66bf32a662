//! Join tokens (`flotilla agent --join-token`, `FL10<CA sha256>::<secret>`):
//! any text, no panic; one that parses prints as itself, and its secret
//! never shows in debug output (logs).
#![no_main]

use flotilla_trust::JoinToken;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(token) = text.parse::<JoinToken>() else {
        return;
    };
    let printed = token.to_string();
    let again: JoinToken = printed
        .parse()
        .unwrap_or_else(|e| panic!("{printed:?}, printed from {text:?}, does not parse: {e}"));
    assert_eq!(again, token);
    assert_eq!(token.ca_hash.len(), 64);
    assert!(!token.secret.is_empty());
    assert_eq!(
        format!("{token:?}"),
        format!("JoinToken {{ ca_hash: {:?}, .. }}", token.ca_hash),
        "debug output shows only the CA hash"
    );
});
