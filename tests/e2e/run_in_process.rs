//! The runtime as the agent uses it: one engine, many runs in one process.

use std::sync::Arc;

use flotilla_agent::runtime::{CaptureBuffer, ExitReason, RunSpec, Runtime, RuntimeConfig, Stdio};

use crate::support::*;

/// Open file descriptors other than pipes (other tests in this process spawn
/// children through pipes at any moment).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| !t.to_string_lossy().starts_with("pipe:"))
        })
        .count()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

async fn run_hello(runtime: &Arc<Runtime>, i: usize) {
    let module = runtime.load_file(&sample("hello.wasm")).unwrap();
    let out = CaptureBuffer::new(4096);
    let spec = RunSpec {
        args: vec![i.to_string()],
        stdout: Stdio::Capture(out.clone()),
        ..RunSpec::default()
    };
    let outcome = module.run(spec).await.unwrap();
    assert_eq!(outcome.reason, ExitReason::Completed);
    assert!(out.text().contains(&format!("args=[\"{i}\"]")));
}

#[test]
fn a_thousand_runs_leak_no_fds_or_memory() {
    let _serial = timing_lock();
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 16,
        cache_dir: Some(shared_cache()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    tokio.block_on(async {
        for i in 0..100 {
            run_hello(&runtime, i).await;
        }
    });
    let (fds, rss) = (open_fds(), rss_kib());
    tokio.block_on(async {
        for i in 0..1000 {
            run_hello(&runtime, i).await;
        }
    });
    let (fds_after, rss_after) = (open_fds(), rss_kib());
    assert_eq!(fds_after, fds, "file descriptors leaked");
    // Other tests run in this process at the same time; allow their noise,
    // not a per-run leak (1000 runs x even 4 KiB would be 4 MiB).
    assert!(
        rss_after < rss + 3 * 1024,
        "RSS grew from {rss} KiB to {rss_after} KiB"
    );
}

#[test]
fn runs_share_one_engine_concurrently() {
    let _serial = timing_lock();
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 64,
        cache_dir: Some(shared_cache()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    tokio.block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let runtime = runtime.clone();
                tokio::spawn(async move { run_hello(&runtime, i).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}
