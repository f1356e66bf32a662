//! Reading manifests: YAML (one or many `---` documents) or JSON, into typed
//! resources, with the path of every problem.

use serde::de::DeserializeOwned;

use crate::meta::{API_VERSION, DEFAULT_NAMESPACE};
use crate::validate::{validate_workload, FieldError, ValidationErrors};
use crate::workload::Workload;

/// A manifest that cannot be accepted.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML/JSON at all.
    #[error("document {index}: not valid YAML or JSON: {message}")]
    Syntax {
        /// 1-based document number.
        index: usize,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A kind this API does not have, or one users cannot create.
    #[error("document {index}: {message}")]
    Kind {
        /// 1-based document number.
        index: usize,
        /// What was wrong.
        message: String,
    },
    /// Wrong shape: unknown field, wrong type.
    #[error("document {index}: {error}")]
    Shape {
        /// 1-based document number.
        index: usize,
        /// Where and what.
        error: FieldError,
    },
    /// Right shape, bad values.
    #[error("document {index} ({kind} {name}): {errors}")]
    Invalid {
        /// 1-based document number.
        index: usize,
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// Every problem.
        errors: ValidationErrors,
    },
}

/// A resource users may submit.
#[derive(Debug, Clone, PartialEq)]
// Few and short-lived (one per document applied): boxing the workload
// would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Manifest {
    /// A Workload.
    Workload(Workload),
    /// A ModulePolicy (cluster-scoped).
    ModulePolicy(crate::policy::ModulePolicy),
    /// A Role (namespaced).
    Role(crate::rbac::Role),
    /// A RoleBinding (namespaced).
    RoleBinding(crate::rbac::RoleBinding),
    /// A ResourceQuota (namespaced).
    ResourceQuota(crate::quota::ResourceQuota),
    /// A LimitRange (namespaced).
    LimitRange(crate::quota::LimitRange),
    /// A DisruptionBudget (namespaced).
    DisruptionBudget(crate::disruption::DisruptionBudget),
    /// A Job (namespaced).
    Job(crate::job::Job),
}

/// Parses every document in `text` (YAML or JSON), checking shape and values.
pub fn parse_manifests(text: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value: serde_json::Value =
            serde::Deserialize::deserialize(document).map_err(|e| ManifestError::Syntax {
                index,
                message: e.to_string(),
            })?;
        if value.is_null() {
            continue; // an empty document, e.g. a trailing `---`
        }
        out.push(parse_one(index, value)?);
    }
    Ok(out)
}

/// Parses one JSON value as a resource a user may submit.
pub fn parse_one(index: usize, value: serde_json::Value) -> Result<Manifest, ManifestError> {
    let kind_error = |message: String| ManifestError::Kind { index, message };
    let api_version = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if api_version != API_VERSION {
        return Err(kind_error(format!(
            "apiVersion {api_version:?} is not served (use {API_VERSION})"
        )));
    }
    match value
        .get("kind")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
    {
        "Workload" => {
            let mut workload: Workload = typed(index, value)?;
            if workload.metadata.namespace.is_empty() {
                workload.metadata.namespace = DEFAULT_NAMESPACE.to_string();
            }
            validate_workload(&workload).map_err(|errors| ManifestError::Invalid {
                index,
                kind: "Workload".into(),
                name: workload.metadata.name.clone(),
                errors,
            })?;
            Ok(Manifest::Workload(workload))
        }
        "ModulePolicy" => {
            let policy: crate::policy::ModulePolicy = typed(index, value)?;
            policy.spec.validate().map_err(kind_error)?;
            Ok(Manifest::ModulePolicy(policy))
        }
        "Role" => namespaced(index, value, crate::rbac::RoleSpec::validate).map(Manifest::Role),
        "RoleBinding" => namespaced(index, value, crate::rbac::RoleBindingSpec::validate)
            .map(Manifest::RoleBinding),
        "ResourceQuota" => namespaced(index, value, crate::quota::ResourceQuotaSpec::validate)
            .map(Manifest::ResourceQuota),
        "LimitRange" => namespaced(index, value, crate::quota::LimitRangeSpec::validate)
            .map(Manifest::LimitRange),
        "DisruptionBudget" => namespaced(
            index,
            value,
            crate::disruption::DisruptionBudgetSpec::validate,
        )
        .map(Manifest::DisruptionBudget),
        "Job" => {
            let mut job: crate::job::Job = typed(index, value)?;
            if job.metadata.namespace.is_empty() {
                job.metadata.namespace = DEFAULT_NAMESPACE.to_string();
            }
            let invalid = |errors| ManifestError::Invalid {
                index,
                kind: "Job".into(),
                name: job.metadata.name.clone(),
                errors,
            };
            // Its template is checked as a Workload's spec is.
            let as_workload = Workload {
                api_version: API_VERSION.into(),
                kind: "Workload".into(),
                metadata: job.metadata.clone(),
                spec: job.spec.template.clone(),
                status: None,
            };
            validate_workload(&as_workload).map_err(invalid)?;
            job.spec.validate().map_err(kind_error)?;
            Ok(Manifest::Job(job))
        }
        "Instance" | "Node" | "Event" => Err(kind_error(
            "Instances, Nodes and Events are made by Flotilla itself; apply a Workload instead"
                .into(),
        )),
        other => Err(kind_error(format!(
            "unknown kind {other:?} (apply takes Workload, ModulePolicy, Role, RoleBinding, ResourceQuota, LimitRange, DisruptionBudget and Job; `flotilla create` makes Configs and Secrets)"
        ))),
    }
}

/// A namespaced resource other than a Workload: decoded, its namespace
/// defaulted, its spec checked by `validate`.
fn namespaced<Spec, Status>(
    index: usize,
    value: serde_json::Value,
    validate: impl Fn(&Spec) -> Result<(), String>,
) -> Result<crate::meta::Resource<Spec, Status>, ManifestError>
where
    crate::meta::Resource<Spec, Status>: DeserializeOwned,
{
    let mut resource: crate::meta::Resource<Spec, Status> = typed(index, value)?;
    if resource.metadata.namespace.is_empty() {
        resource.metadata.namespace = DEFAULT_NAMESPACE.to_string();
    }
    validate(&resource.spec).map_err(|message| ManifestError::Kind { index, message })?;
    Ok(resource)
}

/// Deserialises with the path of the first problem.
pub fn typed<T: DeserializeOwned>(
    index: usize,
    value: serde_json::Value,
) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|e| ManifestError::Shape {
        index,
        error: FieldError {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICKER: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: ticker, namespace: default, labels: {app: ticker}}
spec:
  module: {source: "file:../target/sample-modules/sleeper.wasm"}
  replicas: 3
  args: ["500"]
  resources: {requests: {memory: 16Mi, cpu: 50m}, limits: {memory: 32Mi, cpu: 100m}}
  restartPolicy: {policy: Always, backoff: {initial: 1s, max: 60s, resetAfter: 10m}}
"#;

    #[test]
    fn the_issue_example_parses() {
        let docs = parse_manifests(TICKER).unwrap();
        let Manifest::Workload(w) = &docs[0] else {
            panic!("not a workload")
        };
        assert_eq!(w.spec.replicas, 3);
        assert_eq!(w.spec.resources.limits.memory.as_deref(), Some("32Mi"));
    }

    #[test]
    fn several_documents_and_json() {
        let two = format!(
            "{TICKER}\n---\n{}\n---\n",
            TICKER.replace("ticker", "other")
        );
        assert_eq!(parse_manifests(&two).unwrap().len(), 2);
        let json = r#"{"apiVersion":"flotilla.dev/v1","kind":"Workload","metadata":{"name":"j"},"spec":{"module":{"source":"file:x.wasm"}}}"#;
        let Manifest::Workload(w) = &parse_manifests(json).unwrap()[0] else {
            panic!("not a workload")
        };
        assert_eq!(
            (w.metadata.namespace.as_str(), w.spec.replicas),
            ("default", 1)
        );
    }

    #[test]
    fn unknown_field_has_its_path() {
        let bad = TICKER.replace("limits: {memory: 32Mi", "limits: {memry: 32Mi");
        let e = parse_manifests(&bad).unwrap_err().to_string();
        assert!(
            e.contains("spec.resources.limits") && e.contains("unknown field `memry`"),
            "{e}"
        );
    }

    #[test]
    fn bad_quantity_has_path_and_hint() {
        let bad = TICKER.replace("memory: 32Mi", "memory: 64Mb");
        let e = parse_manifests(&bad).unwrap_err().to_string();
        assert!(
            e.contains(r#"spec.resources.limits.memory: "64Mb" is not a memory quantity"#),
            "{e}"
        );
        assert!(e.contains("64Mi"), "{e}");
    }

    #[test]
    fn env_from_and_config_sources_are_checked() {
        let parse = |extra: &str| {
            let text = TICKER.replace("  replicas: 3\n", &format!("  replicas: 3\n{extra}\n"));
            parse_manifests(&text).map_err(|e| e.to_string())
        };
        let e = parse("  envFrom: [{configRef: {name: a}, secretRef: {name: b}}]").unwrap_err();
        assert!(
            e.contains("spec.envFrom[0]") && e.contains("exactly one"),
            "{e}"
        );
        let e = parse("  envFrom: [{configRef: {name: Bad_Name}}]").unwrap_err();
        assert!(e.contains("spec.envFrom[0]"), "{e}");
        let e = parse("  envFrom: [{configRef: {name: a}, prefix: 'A='}]").unwrap_err();
        assert!(e.contains("spec.envFrom[0].prefix"), "{e}");
        let e = parse("  config: {from: [{}]}").unwrap_err();
        assert!(e.contains("spec.config.from[0]"), "{e}");
        let many = vec!["{configRef: a}"; 33].join(", ");
        let e = parse(&format!("  config: {{from: [{many}]}}")).unwrap_err();
        assert!(e.contains("at most 32"), "{e}");
        let ok = parse("  envFrom: [{secretRef: {name: db, optional: true}, prefix: DB_}]\n  config: {from: [{configRef: app}, {secretRef: db}]}")
            .unwrap();
        let crate::manifest::Manifest::Workload(w) = &ok[0] else {
            panic!("not a workload")
        };
        assert_eq!(w.spec.references("Secret"), ["db"]);
        assert_eq!(w.spec.references("Config"), ["app"]);
        assert_eq!(
            w.spec.capabilities().into_iter().collect::<Vec<_>>(),
            ["wasi:config/store"]
        );
    }

    #[test]
    fn http_fields_are_checked_against_the_execution() {
        let error = |extra: &str| {
            let text = TICKER.replace("  replicas: 3\n", &format!("  replicas: 3\n{extra}\n"));
            parse_manifests(&text).unwrap_err().to_string()
        };
        let e = error("  routes: [{host: a.local}]");
        assert!(
            e.contains("spec.routes") && e.contains("execution: http"),
            "{e}"
        );
        let e = error("  probes: {liveness: {httpGet: {path: /}}}");
        assert!(
            e.contains("spec.probes.liveness.httpGet") && e.contains("watchdog"),
            "{e}"
        );
        let e = error("  execution: http\n  probes: {readiness: {watchdog: {}}}");
        assert!(
            e.contains("spec.probes.readiness.watchdog") && e.contains("httpGet"),
            "{e}"
        );
        let e = error("  probes: {startup: {period: 1s}}");
        assert!(e.contains("exactly one handler"), "{e}");
        let e = error("  execution: http\n  routes: [{host: a.local, pathPrefix: api}]");
        assert!(e.contains("spec.routes[0].pathPrefix"), "{e}");
        let e = error("  execution: http\n  grants: {hosts: [example.com]}");
        assert!(
            e.contains("spec.grants.hosts[0]") && e.contains("host:port"),
            "{e}"
        );
        let e = error("  execution: tcp");
        assert!(e.contains("spec.execution"), "{e}");
    }

    #[test]
    fn config_references_and_rollout_settings_are_checked() {
        let error = |extra: &str| {
            let text = TICKER.replace("  replicas: 3\n", &format!("  replicas: 3\n{extra}\n"));
            parse_manifests(&text).map(drop).map_err(|e| e.to_string())
        };
        for (extra, expected) in [
            ("  env: [{name: A, value: x, valueFrom: {configKeyRef: {name: c, key: k}}}]", "not both"),
            ("  env: [{name: A, valueFrom: {}}]", "exactly one"),
            ("  env: [{name: A, valueFrom: {secretKeyRef: {name: s, key: a/b}}}]", "spec.env[0].valueFrom.key"),
            ("  files: [{guestPath: etc/app, config: c}]", "spec.files[0].guestPath"),
            ("  files: [{guestPath: /etc/../x, config: c}]", "spec.files[0].guestPath"),
            ("  files: [{guestPath: /etc/app, config: c, secret: s}]", "exactly one"),
            ("  files: [{guestPath: /etc/app, secret: s, items: [{key: k, path: ../k}]}]", "spec.files[0].items[0].path"),
            ("  minReadySeconds: 700", "spec.minReadySeconds"),
            ("  strategy: {type: Canary}", "spec.strategy.canary"),
            ("  strategy: {canary: {steps: [{setWeight: 5}]}}", "only type: Canary"),
            ("  strategy: {type: Canary, canary: {steps: [{setWeight: 5, pause: {}}]}}", "steps[0]"),
            ("  strategy: {type: Canary, canary: {steps: [{pause: {duration: 5x}}]}}", "steps[0]"),
            ("  strategy: {type: Canary, canary: {steps: [{setWeight: 5}], analysis: {maxErrorRate: 2}}}", "maxErrorRate"),
        ] {
            let e = error(extra).expect_err(extra);
            assert!(e.contains(expected), "{extra}: {e}");
        }
        for good in [
            "  env: [{name: A, valueFrom: {secretKeyRef: {name: s, key: k, optional: true}}}]",
            "  files: [{guestPath: /etc/app, config: c, items: [{key: k, path: conf/app.toml}]}]",
            "  strategy: {type: Canary, canary: {steps: [{setWeight: 10}, {pause: {duration: 30s}}, {pause: {}}], analysis: {maxErrorRate: 0.5%}}}",
        ] {
            error(good).expect(good);
        }
    }

    #[test]
    fn busy_loops_and_overflows_are_refused() {
        let error = |extra: &str| {
            let text = TICKER.replace("  replicas: 3\n", &format!("  replicas: 3\n{extra}\n"));
            parse_manifests(&text).map(drop).map_err(|e| e.to_string())
        };
        let e = error("  probes: {liveness: {watchdog: {}, period: 0s}}").unwrap_err();
        assert!(
            e.contains("spec.probes.liveness.period") && e.contains("1s or more"),
            "{e}"
        );
        let e = error("  probes: {startup: {watchdog: {}, period: 500ms}}").unwrap_err();
        assert!(e.contains("spec.probes.startup.period"), "{e}");
        let e = error("  probes: {startup: {watchdog: {}, period: 100000000000h, failureThreshold: 4000000000}}")
            .unwrap_err();
        assert!(e.contains("spec.probes.startup.failureThreshold"), "{e}");
        assert!(error("  probes: {liveness: {watchdog: {}, period: 1s}}").is_ok());
        let initial =
            |t: &str| TICKER.replace("backoff: {initial: 1s", &format!("backoff: {{initial: {t}"));
        assert!(TICKER.contains("backoff: {initial: 1s"));
        let e = parse_manifests(&initial("0s")).unwrap_err().to_string();
        assert!(
            e.contains("spec.restartPolicy.backoff.initial") && e.contains("10ms"),
            "{e}"
        );
        assert!(parse_manifests(&initial("10ms")).is_ok());
    }

    #[test]
    fn bad_documents_are_named() {
        assert!(matches!(
            parse_manifests("a: [1, 2"),
            Err(ManifestError::Syntax { .. })
        ));
        let e = parse_manifests(&TICKER.replace("kind: Workload", "kind: Pod"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown kind \"Pod\""), "{e}");
        let e = parse_manifests(&TICKER.replace("name: ticker", "name: Ticker_1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("metadata.name"), "{e}");
        let e = parse_manifests(&TICKER.replace("replicas: 3", "replicas: -1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec.replicas"), "{e}");
    }
}
