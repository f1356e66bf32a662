//! The agent's journal decoder (a JSON list of Instances, as the agent
//! reads it back after a restart): any bytes, no panic; what decodes
//! encodes and decodes to the same instances.
#![no_main]

use flotilla_spec::instance::Instance;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(instances) = serde_json::from_slice::<Vec<Instance>>(bytes) else {
        return;
    };
    let encoded = serde_json::to_vec(&instances).expect("decoded instances encode");
    let again: Vec<Instance> = serde_json::from_slice(&encoded).expect("and decode again");
    assert_eq!(again.len(), instances.len());
});
