//! Every mistake a user can make gets one clear line and exit code 125.

use crate::support::*;

/// Runs `flotilla run ...` expecting a refusal; returns stderr.
fn refused(args: &[&str]) -> String {
    let out = run_plain(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(125), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn missing_file() {
    let e = refused(&["run", "/nonexistent/app.wasm"]);
    assert!(
        e.contains("cannot read module /nonexistent/app.wasm") && e.contains("No such file"),
        "{e}"
    );
}

#[test]
fn not_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.wasm");
    std::fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
    let e = refused(&["run", path.to_str().unwrap()]);
    assert!(
        e.contains("script.wasm is not a WebAssembly module") && e.contains("23 21 2f 62"),
        "{e}"
    );
    std::fs::write(&path, "").unwrap();
    let e = refused(&["run", path.to_str().unwrap()]);
    assert!(e.contains("an empty file"), "{e}");
}

#[test]
fn truncated_module() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(sample("hello.wasm")).unwrap();
    let path = dir.path().join("half.wasm");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = refused(&["run", "--no-cache", path.to_str().unwrap()]);
    assert!(
        e.contains("half.wasm is not a valid WebAssembly module"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}

#[test]
fn unknown_imports_are_all_named() {
    let e = refused(&["run", sample("bad-import.wat").to_str().unwrap()]);
    assert!(e.contains("`env::launch_missiles`"), "{e}");
    assert!(
        e.contains("`wasi_snapshot_preview1::not_a_wasi_call`"),
        "{e}"
    );
    assert!(!e.contains("fd_write"), "{e}");
}

#[test]
fn malformed_quantities_say_what_is_accepted() {
    let hello = sample("hello.wasm");
    let e = refused(&["run", hello.to_str().unwrap(), "--memory", "64Mb"]);
    assert!(
        e.contains("\"64Mb\" is not a memory quantity") && e.contains("64Mi"),
        "{e}"
    );
    let e = refused(&["run", hello.to_str().unwrap(), "--cpu", "lots"]);
    assert!(e.contains("250m"), "{e}");
    let e = refused(&["run", hello.to_str().unwrap(), "--timeout", "5"]);
    assert!(e.contains("500ms, 5s"), "{e}");
    let e = refused(&["run", hello.to_str().unwrap(), "--env", "NOEQUALS"]);
    assert!(e.contains("KEY=VALUE"), "{e}");
}

#[test]
fn missing_dir() {
    let e = refused(&[
        "run",
        sample("fs.wasm").to_str().unwrap(),
        "--dir",
        "/no/such/dir::/data",
    ]);
    assert!(
        e.contains("cannot grant directory /no/such/dir: no such directory"),
        "{e}"
    );
}

#[test]
fn reactor_without_start() {
    let e = refused(&["run", sample("no-start.wat").to_str().unwrap()]);
    assert!(e.contains("has no `_start` export"), "{e}");
}

#[test]
fn bad_wat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.wat");
    std::fs::write(&path, "(module (func (export \"_start\") (i32.add)))").unwrap();
    let e = refused(&["run", path.to_str().unwrap()]);
    assert!(
        e.contains("broken.wat is not a valid WebAssembly module")
            || e.contains("broken.wat is not valid WebAssembly text"),
        "{e}"
    );
}
