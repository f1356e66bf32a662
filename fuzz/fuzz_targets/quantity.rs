//! Quantities (`64Mi`, `250m`, `1h30m`): any text, no panic, no overflow;
//! a byte count formats to text that parses back to the same count.
#![no_main]

use flotilla_spec::quantity::format_memory_bytes;
use flotilla_spec::{parse_cpu_millis, parse_duration, parse_memory_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(bytes) = parse_memory_bytes(text) {
        let formatted = format_memory_bytes(bytes);
        assert_eq!(
            parse_memory_bytes(&formatted).ok(),
            Some(bytes),
            "{text:?} → {formatted:?}"
        );
    }
    let _ = parse_cpu_millis(text);
    let _ = parse_duration(text);
});
