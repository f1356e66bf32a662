//! List and watch selectors (`fieldSelector`, `labelSelector`, as the API
//! decodes them from a query): any query, no panic; a selector that parses
//! can be matched against any object.
#![no_main]

use std::collections::HashMap;

use flotilla_control_plane::api::{Filter, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (query, object) = input;
    let params: HashMap<String, String> = serde_urlencoded_like(query);
    let Ok(filter) = Filter::from_params(Kind::Instance, None, &params) else {
        return;
    };
    let object = serde_json::from_str(object).unwrap_or(serde_json::Value::Null);
    let _ = filter.matches(&object);
});

/// `a=b&c=d` split as a query string (what the handlers see after decoding).
fn serde_urlencoded_like(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
