//! The dashboard in a real browser: Debian's headless Chromium, driven by
//! npm's `playwright-core` (`tests/ui/dashboard.mjs`, installed by the setup
//! script) against `flotilla up`. It signs in (a wrong token refused), sees a
//! workload applied from the CLI within 2 s, a crash loop's restarts and
//! reason, a log line as the guest writes it, a rollout's progress and an
//! http workload's request graph, and photographs the fleet and workload
//! pages. The server's side of the pages is checked here too: the assets
//! need no token, carry a strict content policy, and the usage history
//! answers only with a credential.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{Cluster, Who};

const MANIFESTS: [(&str, &str); 5] = [
    (
        "ticker.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: ticker}
spec:
  module: {source: "file:MODULES/sleeper.wasm"}
  args: ["300"]
  resources: {limits: {memory: 16Mi, cpu: 100m}}
"#,
    ),
    (
        "crasher.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: crasher}
spec:
  module: {source: "file:MODULES/exit-code.wasm"}
  args: ["3"]
  restartPolicy: {backoff: {initial: 100ms, max: 300ms}}
"#,
    ),
    (
        "roller-v1.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: roller}
spec:
  module: {source: "file:MODULES/sleeper.wasm"}
  args: ["1000"]
  replicas: 2
  minReadySeconds: 2
"#,
    ),
    (
        "roller-v2.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: roller}
spec:
  module: {source: "file:MODULES/sleeper.wasm"}
  args: ["900"]
  replicas: 2
  minReadySeconds: 2
"#,
    ),
    (
        "hello.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: hello}
spec:
  module: {source: "file:MODULES/wagi-hello.wasm"}
  execution: http
  routes: [{host: hello.local, pathPrefix: /}]
  resources: {limits: {memory: 32Mi, cpu: 500m}}
"#,
    ),
];

/// What the browser test needs, or why it cannot run here.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let chromium = PathBuf::from("/usr/bin/chromium");
    if !chromium.exists() {
        return Err("no /usr/bin/chromium (scripts/setup.sh installs Debian's chromium)".into());
    }
    let ui = crate::support::root().join("tests/ui");
    if !ui.join("node_modules/playwright-core").exists() {
        return Err(
            "no tests/ui/node_modules/playwright-core (scripts/setup.sh runs npm ci there)".into(),
        );
    }
    Ok((chromium, ui))
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 10_000 && b.starts_with(b"\x89PNG"))
}

#[test]
fn the_dashboard_signs_in_follows_the_fleet_by_watch_and_refuses_a_wrong_token() {
    let (chromium, ui) = match browser() {
        Ok(found) => found,
        Err(why) => {
            crate::support::cannot_run(&why);
            return;
        }
    };
    let c = Cluster::start_up_with(&["--usage-interval", "1s"]);

    // The server's side: the page needs no token, the data does.
    let admin = c.token();
    let (status, page) = c.raw("GET", "/ui/", &Who::Nobody, "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("app.js"), "{page}");
    let headers = Command::new("curl")
        .args(["-sk", "-D", "-", "-o", "/dev/null"])
        .arg(format!("https://127.0.0.1:{}/ui/app.js", c.port))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&headers.stdout).to_lowercase();
    assert!(
        headers.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{headers}"
    );
    assert!(
        headers.contains("x-content-type-options: nosniff"),
        "{headers}"
    );
    let usage = "/apis/flotilla.dev/v1/namespaces/default/workloads/hello/usage";
    assert_eq!(c.raw("GET", usage, &Who::Nobody, "").0, 401);
    assert_eq!(
        c.raw("GET", usage, &Who::Token(&admin), "").0,
        404,
        "no such workload yet"
    );

    let node = flotilla_trust::Identity::load(&c.data_dir().join("agent/pki"), "node")
        .unwrap()
        .unwrap();
    assert_eq!(c.raw("GET", usage, &Who::Node(&node), "").0, 403);
    // `flotilla dashboard` names the page and makes a view token that
    // expires by itself.
    let shown = c.ok(&["dashboard", "--ttl", "1h"]);
    assert!(
        shown.contains(&format!("Dashboard: https://127.0.0.1:{}/ui/", c.port)),
        "{shown}"
    );
    let view = shown
        .lines()
        .skip_while(|l| !l.starts_with("Sign in with this view token"))
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string();
    let tokens = c.ok(&["token", "list"]);
    let id = view.split('.').next().unwrap_or_default();
    let row = tokens
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_default();
    assert!(
        !id.is_empty() && row.contains(" view ") && !row.contains("never"),
        "{shown}\n{tokens}"
    );
    // Markup in a message (users and guests write messages): the page
    // must show it as text.
    let injected = serde_json::json!({
        "apiVersion": "flotilla.dev/v1", "kind": "Event",
        "metadata": {"name": "injected", "namespace": "default"},
        "spec": {
            "involvedObject": {"kind": "Workload", "namespace": "default", "name": "hello"},
            "type": "Warning", "reason": "Injected", "source": "test",
            "message": "<img src=x onerror=\"window.injected=1\"><b>bold</b>",
            "timestamp": flotilla_spec::meta::now_rfc3339(),
        }
    });
    let (status, body) = c.raw(
        "POST",
        "/apis/flotilla.dev/v1/namespaces/default/events",
        &Who::Token(&admin),
        &injected.to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let manifests = c.dir.path().join("manifests");
    let screenshots = c.dir.path().join("screenshots");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::create_dir_all(&screenshots).unwrap();
    for (name, body) in MANIFESTS {
        let path = c.manifest(name, body);
        std::fs::rename(path, manifests.join(name)).unwrap();
    }

    // The http workload runs first, and is asked all along, so its graph
    // has requests to show.
    c.ok(&[
        "apply",
        "-f",
        manifests.join("hello.yaml").to_str().unwrap(),
    ]);
    crate::http::ready(&c, "hello", 1);
    let ingress = crate::http::ingress_of(&c, "node-1");
    let done = Arc::new(AtomicBool::new(false));
    let load = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut answered = 0;
            while !done.load(Ordering::Relaxed) {
                let (status, _) =
                    crate::http::request(&ingress, "GET", "hello.local", "/env/HOME", "");
                answered += usize::from(status == 200);
                std::thread::sleep(Duration::from_millis(40));
            }
            answered
        })
    };

    let out = Command::new("node")
        .arg(ui.join("dashboard.mjs"))
        .current_dir(&ui)
        .env("FLOTILLA_URL", format!("https://127.0.0.1:{}", c.port))
        .env("FLOTILLA_BIN", env!("CARGO_BIN_EXE_flotilla"))
        .env("FLOTILLA_CONFIG", c.config())
        .env("VIEW_TOKEN", view.trim())
        .env("MANIFESTS", &manifests)
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    done.store(true, Ordering::Relaxed);
    let answered = load.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed (screenshot: {}):\n{stdout}\n{}\nserver log:\n{}",
        screenshots.join("failure.png").display(),
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    assert!(stdout.contains("dashboard: all steps passed"), "{stdout}");
    assert!(
        answered > 10,
        "the http workload answered {answered} requests"
    );
    for shot in ["fleet.png", "workload.png"] {
        assert!(
            is_png(&screenshots.join(shot)),
            "{shot} is not a screenshot"
        );
    }
    // To refresh the README's pictures: FLOTILLA_SCREENSHOTS=docs/screenshots.
    if let Ok(keep) = std::env::var("FLOTILLA_SCREENSHOTS") {
        let keep = crate::support::root().join(keep);
        std::fs::create_dir_all(&keep).unwrap();
        for shot in ["fleet.png", "workload.png"] {
            std::fs::copy(screenshots.join(shot), keep.join(shot)).unwrap();
        }
    }

    // The history the graphs drew: the server's own numbers.
    let (status, body) = c.raw("GET", usage, &Who::Token(view.trim()), "");
    assert_eq!(status, 200, "{body}");
    let history: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(history["intervalSeconds"], 1);
    let points = history["points"].as_array().unwrap();
    assert!(
        points.iter().any(
            |p| p["requestsPerSecond"].as_f64().unwrap_or_default() > 1.0
                && p["latencyP50Seconds"].as_f64().is_some()
        ),
        "{body}"
    );
}
