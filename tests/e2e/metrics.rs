//! Metrics scraped by a real Prometheus (Debian's `prometheus`, started here
//! on loopback with a generated config, the scrape authorized by a `view`
//! token): PromQL through its HTTP API returns the CPU, memory and restart
//! series of running workloads, and `rate(cpu)` of a spinning guest held to
//! 250m reads about 0.25. A node refuses its metrics to anyone but the
//! control plane; the API refuses them without a token.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{free_port, Cluster, Who};

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const WORKLOADS: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: spin}
spec:
  module: {source: "file:MODULES/spinner.wasm"}
  resources: {limits: {cpu: 250m, memory: 16Mi}}
---
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: crasher}
spec:
  module: {source: "file:MODULES/exit-code.wasm"}
  args: ["3"]
  restartPolicy: {backoff: {initial: 100ms, max: 200ms}}
"#;

/// The first sample's value of a PromQL query, once it has one.
fn query(port: u16, promql: &str) -> Option<f64> {
    let path = format!(
        "/api/v1/query?query={}",
        percent_encoding::utf8_percent_encode(promql, percent_encoding::NON_ALPHANUMERIC)
    );
    let address = format!("127.0.0.1:{port}");
    // Not listening yet: no answer.
    std::net::TcpStream::connect(&address).ok()?;
    let (status, body) = crate::http::request(&address, "GET", "127.0.0.1", &path, "");
    if status != 200 {
        return None;
    }
    let answer: Value = serde_json::from_str(&body).ok()?;
    answer["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}

#[test]
fn prometheus_scrapes_cpu_memory_and_restarts_and_a_250m_spinner_reads_a_quarter_core() {
    // A CPU share is measured: not beside another timing test's spinners.
    let _serial = crate::support::timing_lock();
    let Ok(prometheus) = which("prometheus") else {
        crate::support::cannot_run("no prometheus binary (Debian's prometheus)");
        return;
    };
    let c = Cluster::start();
    c.apply("workloads.yaml", WORKLOADS);
    let view = c.ok(&["token", "create", "--role", "view"]);
    let token_file = c.dir.path().join("view-token");
    std::fs::write(&token_file, view.trim()).unwrap();
    let ca = c.data_dir().join("pki/ca.crt");
    let target = format!("127.0.0.1:{}", c.port);
    let job = |name: &str, path: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    metrics_path: {path}\n    scrape_interval: 1s\n    tls_config: {{ca_file: {}, server_name: localhost}}\n    authorization: {{credentials_file: {}}}\n    static_configs: [{{targets: ['{target}']}}]\n",
            ca.display(),
            token_file.display()
        )
    };
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n{}{}",
        job("flotilla", "/metrics"),
        job("node-1", "/apis/flotilla.dev/v1/nodes/node-1/metrics")
    );
    let config_file = c.dir.path().join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let port = free_port();
    let log = std::fs::File::create(c.dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Prometheus(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                c.dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let spin = r#"{workload="spin",namespace="default",node="node-1"}"#;
    // A quarter core, measured over 10 s of scrapes once the spinner has
    // run for 20 (the quota is a token bucket: over any window past its
    // start the guest gets just its share).
    c.wait_until(
        "Prometheus has 20 s of the spinner",
        Duration::from_secs(90),
        || {
            query(
                port,
                &format!("count_over_time(flotilla_instance_cpu_usage_seconds_total{spin}[20s])"),
            )
            .is_some_and(|n| n >= 18.0)
        },
    );
    let rate = query(
        port,
        &format!("rate(flotilla_instance_cpu_usage_seconds_total{spin}[10s])"),
    );
    let throttled = query(
        port,
        &format!("rate(flotilla_instance_cpu_throttled_seconds_total{spin}[10s])"),
    );
    assert!(
        throttled.is_some_and(|t| t > 0.3),
        "held back most of the time: {throttled:?}"
    );
    let rate = rate.unwrap();
    eprintln!("spinner at 250m: cpu rate {rate:.3} over 10 s");
    assert!((0.2..=0.3).contains(&rate), "rate {rate}, wanted ≈ 0.25");
    let memory = query(port, &format!("flotilla_instance_memory_bytes{spin}")).unwrap();
    assert!(memory > 0.0, "{memory}");
    assert_eq!(
        query(port, &format!("flotilla_instance_memory_limit_bytes{spin}")),
        Some(16.0 * 1024.0 * 1024.0)
    );
    c.wait_until(
        "the crasher's restarts are counted",
        Duration::from_secs(30),
        || {
            query(
                port,
                r#"flotilla_instance_restarts_total{workload="crasher",reason="Error"}"#,
            )
            .is_some_and(|n| n >= 2.0)
        },
    );
    // The workloads were applied (POSTed) through the API: counted.
    assert!(
        query(
            port,
            r#"sum(flotilla_apiserver_request_duration_seconds_count{resource="workloads",verb="POST"})"#
        )
        .is_some_and(|n| n >= 2.0),
        "the two POSTs of workloads.yaml"
    );
    assert_eq!(
        query(
            port,
            r#"flotilla_node_capacity_cpu_millicores{node="node-1"}"#
        )
        .map(|v| v > 0.0),
        Some(true)
    );

    // Without a token, or with a node's certificate: refused.
    let path = "/apis/flotilla.dev/v1/nodes/node-1/metrics";
    assert_eq!(c.raw("GET", path, &Who::Nobody, "").0, 401);
    let node = flotilla_trust::Identity::load(&c.data_dir().join("agent/pki"), "node")
        .unwrap()
        .unwrap();
    assert_eq!(c.raw("GET", "/metrics", &Who::Node(&node), "").0, 403);
    assert_eq!(c.raw("GET", path, &Who::Token(view.trim()), "").0, 200);
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn logs_are_json_lines_on_request_and_never_carry_colour_codes_in_files() {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let _json = crate::fleet::agent_with(
        &c,
        "json-a",
        join.trim(),
        "256Mi",
        &["--log-format", "json"],
    );
    let _text = crate::fleet::agent(&c, "text-b", join.trim(), "256Mi");
    c.wait_until("both nodes are Ready", Duration::from_secs(15), || {
        crate::cluster::ready_nodes(&c) == 2
    });
    let mut lines = Vec::new();
    c.wait_until("the json agent logged", Duration::from_secs(15), || {
        lines = crate::fleet::read_agent_log(&c, "json-a")
            .lines()
            .map(str::to_string)
            .collect();
        !lines.is_empty()
    });
    for line in &lines {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            entry["level"].is_string() && entry["fields"].is_object(),
            "{line}"
        );
    }
    let text = crate::fleet::read_agent_log(&c, "text-b");
    assert!(!text.is_empty() && !text.contains('\u{1b}'), "{text:?}");
}

#[test]
fn top_shows_a_250m_spinner_at_about_250_millicores() {
    // A CPU share is measured: not beside another timing test's spinners.
    let _serial = crate::support::timing_lock();
    let c = Cluster::start();
    c.apply("workloads.yaml", WORKLOADS);
    c.wait_until("the spinner runs", Duration::from_secs(30), || {
        c.items("instances")
            .iter()
            .any(|i| i["spec"]["workload"] == "spin" && i["status"]["phase"] == "Running")
    });
    // Past its first period's burst, a second's use is its quota.
    std::thread::sleep(Duration::from_secs(1));
    let millicores = |table: &str, name: &str| -> Option<u64> {
        let row = table.lines().find(|l| l.trim_start().starts_with(name))?;
        row.split_whitespace()
            .find_map(|cell| cell.strip_suffix('m')?.parse().ok())
    };
    let instances = c.ok(&["top", "instances"]);
    let spin = millicores(&instances, "spin-").unwrap_or_else(|| panic!("{instances}"));
    assert!((180..=320).contains(&spin), "{instances}");
    assert!(instances.contains("node-1"), "{instances}");
    let workloads = c.ok(&["top", "workloads"]);
    assert!(
        millicores(&workloads, "spin").is_some_and(|m| (180..=320).contains(&m)),
        "{workloads}"
    );
    let nodes = c.ok(&["top", "nodes"]);
    assert!(nodes.contains("node-1") && nodes.contains('%'), "{nodes}");
    let elsewhere = c.ok(&["top", "instances", "-n", "other"]);
    assert!(!elsewhere.contains("spin-"), "{elsewhere}");

    // An http replica's answers, by status code, in the node's metrics.
    c.apply(
        "hello.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: hello}
spec:
  module: {source: "file:MODULES/http-hello.component.wasm"}
  execution: http
  routes: [{host: hello.local, pathPrefix: /}]
"#,
    );
    crate::http::ready(&c, "hello", 1);
    let ingress = crate::http::ingress_of(&c, "node-1");
    for _ in 0..3 {
        assert_eq!(
            crate::http::request(&ingress, "GET", "hello.local", "/", "").0,
            200
        );
    }
    let (code, text) = c.raw(
        "GET",
        "/apis/flotilla.dev/v1/nodes/node-1/metrics",
        &Who::Token(&c.token()),
        "",
    );
    assert_eq!(code, 200, "{text}");
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("flotilla_http_requests_total") && l.contains(r#"workload="hello""#)
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(r#"code="200""#) && line.ends_with(" 3"),
        "{line}"
    );
    // One fresh instance per request, and the replica's usage is theirs.
    let value_of = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(r#"workload="hello""#))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    };
    assert_eq!(
        value_of("flotilla_http_instances_created_total"),
        Some(3.0),
        "{text}"
    );
    assert!(
        value_of("flotilla_instance_cpu_usage_seconds_total").is_some_and(|s| s > 0.0),
        "{text}"
    );

    // The server's own view of the node and of its scheduler and store.
    let (code, text) = c.raw("GET", "/metrics", &Who::Token(&c.token()), "");
    assert_eq!(code, 200, "{text}");
    let number = |prefix: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    // The spinner's 250m (requests default to limits); the others ask none.
    assert_eq!(
        number(r#"flotilla_node_allocated_cpu_millicores{node="node-1"}"#),
        250.0
    );
    assert!(number(r#"flotilla_node_instances_by_phase{node="node-1",phase="Running"}"#) >= 2.0);
    let age = number(r#"flotilla_node_heartbeat_age_seconds{node="node-1"}"#);
    assert!((0.0..10.0).contains(&age), "heartbeat {age} s ago");
    let scheduled = number(r#"flotilla_scheduler_decisions_total{result="scheduled"}"#);
    assert!(
        scheduled >= 3.0,
        "spin, crasher and hello placed: {scheduled}"
    );
    assert!(number("flotilla_scheduler_round_duration_seconds_count") >= 1.0);
    assert!(
        number(r#"flotilla_store_operation_duration_seconds_count{operation="update"}"#) >= 1.0
    );
    assert!(
        number("flotilla_apiserver_open_streams") >= 1.0,
        "the agent's watches"
    );
}
