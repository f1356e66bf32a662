//! What a namespace may consume: a ResourceQuota refuses the workload,
//! the scale and the object that would pass its caps (403 naming the
//! quota, the used and the asked) and admits them once there is room; a
//! LimitRange fills in unset limits and refuses what is outside its
//! bounds; tenants read both and write neither — against a real
//! `flotilla up`.

use std::time::Duration;

use serde_json::Value;

use crate::cluster::*;
use crate::tenancy::{binding, role, running, scale, token, workload, As};

/// A sleeper in team-a limited to `memory` (none: no `resources`).
fn sleeper(name: &str, replicas: u32, memory: Option<&str>) -> String {
    let resources = memory
        .map(|m| format!("\n  resources: {{limits: {{memory: {m}}}}}"))
        .unwrap_or_default();
    workload(
        name,
        "team-a",
        &format!(
            r#"  module: {{source: "file:MODULES/sleeper.wasm"}}
  args: ["100000"]
  replicas: {replicas}{resources}"#
        ),
    )
}

fn quota_status(c: &Cluster) -> Value {
    let quota: Value = serde_json::from_str(&c.ok(&[
        "get",
        "resourcequota",
        "compute",
        "-n",
        "team-a",
        "-o",
        "json",
    ]))
    .unwrap();
    quota["status"].clone()
}

const QUOTA: &str = r#"
apiVersion: flotilla.dev/v1
kind: ResourceQuota
metadata: {name: compute, namespace: team-a}
spec:
  hard: {requests.memory: 64Mi, count/workloads: "4", count/configs: "1"}
---
apiVersion: flotilla.dev/v1
kind: LimitRange
metadata: {name: limits, namespace: team-a}
spec:
  limits:
  - type: Instance
    default: {memory: 16Mi}
    max: {memory: 48Mi}
"#;

#[test]
fn a_quota_and_a_limit_range_bound_what_a_namespace_deploys() {
    let c = Cluster::start();
    // A workload from before the quota and the range, without resources.
    c.apply("old.yaml", &sleeper("old", 1, None));
    c.wait_until("old runs", Duration::from_secs(30), || {
        !running(&c, "team-a", "old").is_empty()
    });
    let old_instance = running(&c, "team-a", "old")[0]["metadata"]["name"].clone();
    let applied = c.apply("quota.yaml", QUOTA);
    assert!(
        applied.contains("resourcequota.flotilla.dev/compute created")
            && applied.contains("limitrange.flotilla.dev/limits created"),
        "{applied}"
    );
    let edit = As::new(
        &c,
        &token(&c, &["--role", "edit", "--namespace", "team-a"]),
        "edit",
    );
    let apply = |who: &As, file: &str, body: &str| {
        let path = c.manifest(file, body);
        who.cli(&["apply", "-f", path.to_str().unwrap()])
    };

    // The tenant reads both and writes neither, whatever it holds: edit
    // does not grant them, and a Role of every verb on every resource
    // does not either.
    edit.ok(&["get", "resourcequotas", "-n", "team-a"]);
    edit.ok(&["get", "limitranges", "-n", "team-a"]);
    let raised = QUOTA.replace("64Mi", "1Gi");
    let stderr = failed(
        apply(&edit, "raise.yaml", &raised),
        &["apply", "raise.yaml"],
    );
    assert!(
        stderr.contains("may not create resourcequotas in namespace team-a"),
        "{stderr}"
    );
    let all_token = token(&c, &["--role", "none"]);
    c.apply(
        "all.yaml",
        &format!(
            "{}---{}",
            role("all", "[{verbs: ['*'], resources: ['*']}]"),
            binding("all", "Role/all", &all_token)
        ),
    );
    let all = As::new(&c, &all_token, "all");
    let stderr = failed(apply(&all, "raise.yaml", &raised), &["apply", "raise.yaml"]);
    assert!(
        stderr.contains("quotas and limit ranges are set by cluster admins"),
        "{stderr}"
    );
    let args = ["delete", "resourcequota", "compute", "-n", "team-a"];
    let stderr = failed(all.cli(&args), &args);
    assert!(stderr.contains("set by cluster admins"), "{stderr}");

    // It may still be scaled: what it was admitted with is kept (no
    // default written in, so no new template and no restart; no "must
    // specify" after the fact).
    edit.ok(&scale("old", "2", "team-a"));
    let old: Value =
        serde_json::from_str(&c.ok(&["get", "workload", "old", "-n", "team-a", "-o", "json"]))
            .unwrap();
    assert!(
        old["spec"]["resources"]["limits"]["memory"].is_null(),
        "{old}"
    );
    c.wait_until("old's 2 replicas run", Duration::from_secs(30), || {
        running(&c, "team-a", "old").len() == 2
    });
    assert!(
        running(&c, "team-a", "old")
            .iter()
            .any(|i| i["metadata"]["name"] == old_instance),
        "the first replica was replaced"
    );

    // A workload that sets no limit gets the range's default.
    let out = apply(&edit, "a.yaml", &sleeper("a", 1, None));
    succeeded(out, &["apply", "a.yaml"]);
    let a: Value =
        serde_json::from_str(&c.ok(&["get", "workload", "a", "-n", "team-a", "-o", "json"]))
            .unwrap();
    assert_eq!(a["spec"]["resources"]["limits"]["memory"], "16Mi", "{a}");
    assert_eq!(a["spec"]["resources"]["requests"]["memory"], "16Mi", "{a}");
    // One over the range's max is refused, naming it.
    let stderr = failed(
        apply(&edit, "huge.yaml", &sleeper("huge", 1, Some("49Mi"))),
        &["apply", "huge.yaml"],
    );
    assert!(
        stderr.contains("spec.resources.limits.memory: 49Mi is more than 48Mi, the most limit range limits allows per instance"),
        "{stderr}"
    );

    // 16Mi + 32Mi = 48Mi fits; 17Mi more would reach 65Mi.
    succeeded(
        apply(&edit, "b.yaml", &sleeper("b", 1, Some("32Mi"))),
        &["apply", "b.yaml"],
    );
    let stderr = failed(
        apply(&edit, "c.yaml", &sleeper("c", 1, Some("17Mi"))),
        &["apply", "c.yaml"],
    );
    assert!(
        stderr.contains("exceeded quota: compute, requested: requests.memory=17Mi, used: requests.memory=48Mi, limited: requests.memory=64Mi"),
        "{stderr}"
    );
    // As the API says it: 403, even to an admin.
    let body = serde_json::json!({
        "apiVersion": "flotilla.dev/v1", "kind": "Workload",
        "metadata": {"name": "c", "namespace": "team-a"},
        "spec": {"module": a["spec"]["module"], "resources": {"limits": {"memory": "17Mi"}}}
    });
    let (code, answer) = c.raw(
        "POST",
        "/apis/flotilla.dev/v1/namespaces/team-a/workloads",
        &Who::Token(&c.token()),
        &body.to_string(),
    );
    assert!(
        code == 403 && answer.contains("exceeded quota: compute"),
        "{code} {answer}"
    );
    let listed = c.ok(&["get", "workloads", "-n", "team-a"]);
    assert!(
        !listed.contains("c "),
        "a refused workload is not stored: {listed}"
    );
    // The status counts what is declared.
    c.wait_until(
        "the quota's status shows 48Mi used",
        Duration::from_secs(20),
        || quota_status(&c)["used"]["requests.memory"] == "48Mi",
    );
    let status = quota_status(&c);
    assert_eq!(status["hard"]["requests.memory"], "64Mi", "{status}");
    assert_eq!(status["used"]["count/workloads"], "3", "{status}");
    let table = edit.ok(&["get", "resourcequota", "-n", "team-a"]);
    assert!(table.contains("requests.memory: 48Mi/64Mi"), "{table}");

    // A scale stops at the quota too, and says so in an Event.
    edit.ok(&scale("a", "2", "team-a"));
    let stderr = failed(
        edit.cli(&scale("a", "3", "team-a")),
        &scale("a", "3", "team-a"),
    );
    assert!(stderr.contains("exceeded quota: compute"), "{stderr}");
    c.wait_until(
        "an ExceededQuota event on workload a",
        Duration::from_secs(20),
        || {
            let events = c.ok(&["get", "events", "-n", "team-a"]);
            events.contains("ExceededQuota")
                && events.contains("a change to 3 replicas was refused")
        },
    );
    let a: Value =
        serde_json::from_str(&c.ok(&["get", "workload", "a", "-n", "team-a", "-o", "json"]))
            .unwrap();
    assert_eq!(
        a["spec"]["replicas"], 2,
        "the refused scale changed nothing"
    );

    // Room made, the same workload is admitted.
    edit.ok(&["delete", "workload", "b", "-n", "team-a"]);
    succeeded(
        apply(&edit, "c.yaml", &sleeper("c", 1, Some("17Mi"))),
        &["apply", "c.yaml"],
    );
    c.wait_until("c runs", Duration::from_secs(30), || {
        !running(&c, "team-a", "c").is_empty()
    });
    c.wait_until(
        "the quota's status shows 49Mi used",
        Duration::from_secs(20),
        || quota_status(&c)["used"]["requests.memory"] == "49Mi",
    );

    // Counted objects: one Config, not two.
    edit.ok(&[
        "create",
        "config",
        "one",
        "-n",
        "team-a",
        "--from-literal",
        "k=v",
    ]);
    let args = [
        "create",
        "config",
        "two",
        "-n",
        "team-a",
        "--from-literal",
        "k=v",
    ];
    let stderr = failed(edit.cli(&args), &args);
    assert!(stderr.contains("count/configs=1"), "{stderr}");

    // Without a default, a capped resource must be set.
    c.ok(&["delete", "limitrange", "limits", "-n", "team-a"]);
    let stderr = failed(
        apply(&edit, "d.yaml", &sleeper("d", 1, None)),
        &["apply", "d.yaml"],
    );
    assert!(
        stderr.contains("failed quota: compute: must specify requests.memory"),
        "{stderr}"
    );
    // Another namespace is not this quota's.
    c.apply(
        "big.yaml",
        &sleeper("big", 1, Some("1Gi")).replace("team-a", "team-b"),
    );
}
