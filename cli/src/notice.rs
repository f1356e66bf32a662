//! What the long-running commands tell their operator on stderr (joined,
//! listening, where the config went): plain lines, or — under
//! `--log-format json` — JSON lines shaped like the logs around them, so a
//! log collector reads one format.

use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Writes notices as JSON lines from now on.
pub fn use_json() {
    JSON.store(true, Ordering::Relaxed);
}

/// Tells the operator `message`.
pub fn say(message: impl std::fmt::Display) {
    if JSON.load(Ordering::Relaxed) {
        let line = serde_json::json!({
            "timestamp": flotilla_spec::meta::now_rfc3339_millis(),
            "level": "INFO",
            "fields": {"message": message.to_string()},
            "target": "flotilla",
        });
        eprintln!("{line}");
    } else {
        eprintln!("{message}");
    }
}
