//! Whatever a user or a newer client sends, the parsers answer with a value
//! or an error — never a panic (property tests over arbitrary and mutated input).

use flotilla_spec::manifest::parse_manifests;
use flotilla_spec::quantity::format_memory_bytes;
use flotilla_spec::{parse_cpu_millis, parse_duration, parse_memory_bytes};
use proptest::prelude::*;

const TICKER: &str = r#"apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: ticker, namespace: default, labels: {app: ticker}}
spec:
  module: {source: "file:sleeper.wasm"}
  replicas: 3
  args: ["500"]
  resources: {requests: {memory: 16Mi, cpu: 50m}, limits: {memory: 32Mi, cpu: 100m, timeout: 1h}}
  restartPolicy: {policy: Always, backoff: {initial: 1s, max: 60s, resetAfter: 10m}}
  probes:
    liveness: {watchdog: {}, period: 1s, timeout: 3s, failureThreshold: 3}
  execution: daemon
"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn quantities_never_panic(text in "\\PC{0,24}") {
        let _ = parse_memory_bytes(&text);
        let _ = parse_cpu_millis(&text);
        let _ = parse_duration(&text);
    }

    #[test]
    fn quantities_of_digits_and_units_never_panic(number in "[0-9.]{1,30}", unit in "(|m|Ki|Mi|Gi|Ti|k|M|G|T|ms|us|ns|h|s)") {
        let text = format!("{number}{unit}");
        let _ = parse_memory_bytes(&text);
        let _ = parse_cpu_millis(&text);
        let _ = parse_duration(&text);
    }

    #[test]
    fn memory_quantities_round_trip(bytes in any::<u64>()) {
        let text = format_memory_bytes(bytes);
        if let Ok(parsed) = parse_memory_bytes(&text) {
            prop_assert_eq!(parsed, bytes, "{}", text);
        }
    }

    #[test]
    fn arbitrary_documents_never_panic(text in "\\PC{0,200}") {
        let _ = parse_manifests(&text);
    }

    /// A valid manifest with a few bytes replaced: the parser and the
    /// validation see near-valid input, where bugs hide.
    #[test]
    fn mutated_manifests_never_panic(edits in prop::collection::vec((0usize..TICKER.len(), any::<char>()), 1..6)) {
        let mut chars: Vec<char> = TICKER.chars().collect();
        for (at, c) in edits {
            let at = at % chars.len();
            chars[at] = c;
        }
        let text: String = chars.into_iter().collect();
        let _ = parse_manifests(&text);
    }

    /// Numbers anywhere a number goes, including ones that overflow.
    #[test]
    fn extreme_numbers_never_panic(replicas in any::<i64>(), threshold in any::<u64>(), period in "[0-9]{1,25}(ms|s|h)") {
        let text = TICKER
            .replace("replicas: 3", &format!("replicas: {replicas}"))
            .replace("failureThreshold: 3", &format!("failureThreshold: {threshold}"))
            .replace("period: 1s", &format!("period: {period}"));
        let _ = parse_manifests(&text);
    }
}
