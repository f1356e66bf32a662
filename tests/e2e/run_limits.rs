//! Memory, CPU and wall-clock limits, measured.

use crate::support::*;

const MIB: u64 = 1 << 20;

#[test]
fn hog_is_oom_killed_and_never_exceeds_its_limit() {
    let r = run_json(&sample("hog.wasm"), &["--memory", "32Mi"], &[]);
    assert_eq!(r.reason(), "OOMKilled", "{}", r.json);
    assert_eq!(r.code, 137);
    let peak = r.json["peakMemoryBytes"].as_u64().unwrap();
    assert!(peak <= 32 * MIB, "peak {peak}");
    assert!(peak > 16 * MIB, "the hog got far: peak {peak}");
    assert!(
        r.stdout().contains("allocation failed after"),
        "{}",
        r.stdout()
    );
}

#[test]
fn memory_limit_is_exact_to_the_page() {
    let r = run_json(&sample("memory-grower.wat"), &["--memory", "1Mi"], &[]);
    assert_eq!(r.reason(), "OOMKilled", "{}", r.json);
    assert_eq!(r.json["peakMemoryBytes"].as_u64(), Some(MIB));
}

#[test]
fn tables_count_against_the_memory_limit() {
    let r = run_json(&sample("table-grower.wat"), &["--memory", "128Ki"], &[]);
    assert_eq!(r.reason(), "OOMKilled", "{}", r.json);
    let peak = r.json["peakMemoryBytes"].as_u64().unwrap();
    // 64 KiB of linear memory plus 8 bytes per table element.
    assert!(peak <= 128 * 1024 && peak > 120 * 1024, "peak {peak}");
    let message = r.json["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("memory limit of 131072 bytes"),
        "{message}"
    );
}

#[test]
fn a_table_growth_refused_by_the_engines_cap_is_oom_killed_and_named() {
    // No workload limit: the per-table cap refuses (wasmtime's default of
    // 20,000 elements used to end this as a plain `Trap: unreachable`).
    let r = run_json(&sample("table-grower.wat"), &["--memory", "1Gi"], &[]);
    assert_eq!(r.reason(), "OOMKilled", "{}", r.json);
    assert_eq!(r.code, 137);
    let message = r.json["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("per-table cap of 1048576 elements"),
        "{message}"
    );
    // It got past the old cap: 8 bytes per element.
    assert!(r.json["peakMemoryBytes"].as_u64().unwrap() > 8 * 20_000);
}

#[test]
fn initial_memory_over_the_limit_is_oom_at_start() {
    let r = run_json(&sample("big-memory.wat"), &["--memory", "32Mi"], &[]);
    assert_eq!(r.reason(), "OOMKilled", "{}", r.json);
    let r = run_json(&sample("big-memory.wat"), &["--memory", "64Mi"], &[]);
    assert_eq!(r.reason(), "Completed", "{}", r.json);
}

/// CPU-seconds per wall-second of a guest that never stops spinning.
fn cpu_share(module: &str, cpu: &str) -> f64 {
    let r = run_json(&sample(module), &["--cpu", cpu, "--timeout", "2s"], &[]);
    assert_eq!(r.reason(), "DeadlineExceeded", "{}", r.json);
    r.f64("cpuSeconds") / r.f64("wallSeconds")
}

#[test]
fn cpu_quota_throttles_a_busy_loop_to_its_share() {
    let _serial = timing_lock();
    for module in ["spinner.wasm", "loop.wat"] {
        let share = cpu_share(module, "250m");
        assert!(
            (0.20..=0.30).contains(&share),
            "{module} at 250m used {share:.3} CPU-s/s"
        );
    }
    let share = cpu_share("spinner.wasm", "500m");
    assert!(
        (0.45..=0.55).contains(&share),
        "spinner at 500m used {share:.3} CPU-s/s"
    );
}

#[test]
fn unlimited_spinner_uses_a_whole_core() {
    let _serial = timing_lock();
    let r = run_json(&sample("spinner.wasm"), &["--timeout", "1s"], &[]);
    assert_eq!(r.reason(), "DeadlineExceeded");
    let share = r.f64("cpuSeconds") / r.f64("wallSeconds");
    // A loaded 2-core machine may steal some; a throttled run would be far lower.
    assert!(share > 0.6, "unlimited spinner used {share:.3} CPU-s/s");
}

#[test]
fn timeout_ends_within_200ms_of_the_deadline() {
    let _serial = timing_lock();
    // A pure-wasm loop (only epochs can stop it), a busy Rust loop, and a
    // guest asleep in a host call.
    for (module, args) in [
        ("loop.wat", vec![]),
        ("spinner.wasm", vec![]),
        ("sleeper.wasm", vec!["50"]),
    ] {
        let started = std::time::Instant::now();
        let r = run_json(&sample(module), &["--timeout", "500ms"], &args);
        let outside = started.elapsed().as_secs_f64();
        assert_eq!(r.reason(), "DeadlineExceeded", "{module}: {}", r.json);
        assert_eq!(r.code, 124);
        let wall = r.f64("wallSeconds");
        assert!(
            (0.5..0.7).contains(&wall),
            "{module}: ended {wall:.3}s after start"
        );
        assert!(
            outside < 2.0,
            "{module}: the whole process took {outside:.3}s"
        );
    }
}
