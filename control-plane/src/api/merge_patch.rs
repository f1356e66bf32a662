//! RFC 7386 JSON merge patches (`PATCH` with
//! `application/merge-patch+json`, what `kubectl patch --type merge` sends):
//! objects merge key by key, `null` removes a key, anything else replaces.

use serde_json::{json, Value};

/// Applies merge patch `patch` to `target`. Applying the same patch again
/// changes nothing. Recursion is bounded by the depth of `patch`, which the
/// JSON parser already bounds (128 levels).
pub fn apply(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(fields) = target {
        for (key, value) in patch {
            if value.is_null() {
                fields.remove(key);
            } else {
                apply(fields.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_merge_and_null_removes() {
        let mut target = json!({"spec": {"replicas": 3, "args": ["a"], "env": [1]}, "kind": "W"});
        apply(
            &mut target,
            &json!({"spec": {"replicas": 5, "args": ["b", "c"], "env": null}}),
        );
        assert_eq!(
            target,
            json!({"spec": {"replicas": 5, "args": ["b", "c"]}, "kind": "W"})
        );
    }

    #[test]
    fn a_patch_that_is_not_an_object_replaces_the_target() {
        let mut target = json!({"a": 1});
        apply(&mut target, &json!([1, 2]));
        assert_eq!(target, json!([1, 2]));
        apply(&mut target, &json!({"b": {"c": null, "d": 2}}));
        assert_eq!(target, json!({"b": {"d": 2}}));
    }
}
