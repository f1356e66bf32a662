//! Each way a run can end, as `flotilla run` reports it.

use crate::support::*;

#[test]
fn hello_completes_with_its_env_and_args() {
    let r = run_json(
        &sample("hello.wasm"),
        &["--env", "GREETING=hi there"],
        &["a", "b c"],
    );
    assert_eq!(r.reason(), "Completed", "{}", r.json);
    assert_eq!(r.json["exitCode"], 0);
    assert_eq!(r.code, 0);
    assert!(r.stdout().contains("GREETING=hi there"), "{}", r.stdout());
    assert!(
        r.stdout().contains(r#"args=["a", "b c"]"#),
        "{}",
        r.stdout()
    );
}

#[test]
fn plain_output_is_the_guests_own() {
    let out = run_plain(&["run", sample("hello.wasm").to_str().unwrap(), "--", "x"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("Hello from a Flotilla guest!"),
        "{stdout}"
    );
}

#[test]
fn non_zero_exit_is_error_and_passes_the_code_through() {
    let r = run_json(&sample("exit-code.wasm"), &[], &["7"]);
    assert_eq!(r.reason(), "Error");
    assert_eq!(r.json["exitCode"], 7);
    assert_eq!(r.code, 7);
}

#[test]
fn each_trap_kind_is_named() {
    for (arg, kind) in [
        ("unreachable", "unreachable"),
        ("div0", "integer-divide-by-zero"),
        ("oob", "memory-out-of-bounds"),
        ("stack-overflow", "stack-overflow"),
    ] {
        let r = run_json(&sample("trapper.wasm"), &[], &[arg]);
        assert_eq!(r.reason(), "Trap", "{arg}: {}", r.json);
        assert_eq!(r.json["trap"], kind, "{arg}: {}", r.json);
        assert_eq!(r.code, 134, "{arg}");
        assert!(r.json["exitCode"].is_null());
    }
}

#[test]
fn components_run_too() {
    let r = run_json(
        &sample("hello.component.wasm"),
        &["-e", "GREETING=p2"],
        &["z"],
    );
    assert_eq!(r.reason(), "Completed", "{}", r.json);
    assert!(r.stdout().contains("GREETING=p2"), "{}", r.stdout());
    let r = run_json(&sample("exit-code.component.wasm"), &[], &["3"]);
    assert_eq!(r.reason(), "Error", "{}", r.json);
    assert_ne!(r.code, 0);
    let r = run_json(&sample("trapper.component.wasm"), &[], &["unreachable"]);
    assert_eq!(r.reason(), "Trap", "{}", r.json);
    assert_eq!(r.json["trap"], "unreachable");
}

#[test]
fn second_start_uses_the_compile_cache() {
    let cache = tempfile::tempdir().unwrap();
    let run = || {
        let out = flotilla()
            .env("FLOTILLA_CACHE_DIR", cache.path())
            .args([
                "run",
                sample("spinner.wasm").to_str().unwrap(),
                "-o",
                "json",
                "--",
                "10",
            ])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(run()["compileCacheHit"], false);
    assert_eq!(run()["compileCacheHit"], true);
    let mut files: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    // One artefact per module and engine, its keyed digest, the cache's key.
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(
        files[0].ends_with(".cwasm") && files[0].len() > 64,
        "{files:?}"
    );
    assert_eq!(files[1], format!("{}.mac", files[0]), "{files:?}");
    assert_eq!(files[2], "key", "{files:?}");
}
