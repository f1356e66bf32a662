//! Manifest decode and validation: any text, no panic; what parses
//! serialises and parses again to the same manifests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(manifests) = flotilla_spec::manifest::parse_manifests(text) else {
        return;
    };
    for manifest in manifests {
        let json = match manifest {
            flotilla_spec::manifest::Manifest::Workload(workload) => {
                serde_json::to_string(&workload).expect("a parsed workload serialises")
            }
            flotilla_spec::manifest::Manifest::ModulePolicy(policy) => {
                serde_json::to_string(&policy).expect("a parsed policy serialises")
            }
            flotilla_spec::manifest::Manifest::Role(role) => {
                serde_json::to_string(&role).expect("a parsed role serialises")
            }
            flotilla_spec::manifest::Manifest::RoleBinding(binding) => {
                serde_json::to_string(&binding).expect("a parsed binding serialises")
            }
            flotilla_spec::manifest::Manifest::ResourceQuota(quota) => {
                serde_json::to_string(&quota).expect("a parsed quota serialises")
            }
            flotilla_spec::manifest::Manifest::LimitRange(range) => {
                serde_json::to_string(&range).expect("a parsed limit range serialises")
            }
            flotilla_spec::manifest::Manifest::DisruptionBudget(budget) => {
                serde_json::to_string(&budget).expect("a parsed budget serialises")
            }
            flotilla_spec::manifest::Manifest::Job(job) => {
                serde_json::to_string(&job).expect("a parsed job serialises")
            }
        };
        let again = flotilla_spec::manifest::parse_manifests(&json)
            .unwrap_or_else(|e| panic!("a parsed manifest parses again: {e}\n{json}"));
        assert_eq!(again.len(), 1);
    }
});
