//! Default deny: a guest sees only what it is granted.

use crate::support::*;

#[test]
fn fs_guest_cannot_escape_its_dir() {
    let outer = tempfile::tempdir().unwrap();
    let data = outer.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("greeting.txt"), "hi from the host").unwrap();
    std::fs::write(outer.path().join("secret.txt"), "outside").unwrap();
    std::os::unix::fs::symlink("/etc", data.join("escape-link")).unwrap();

    let dir = format!("{}::/data", data.display());
    let r = run_json(&sample("fs.wasm"), &["--dir", &dir], &[]);
    let out = r.stdout();
    assert_eq!(r.reason(), "Completed", "{}", r.json);
    assert!(
        out.contains(r#"read /data/greeting.txt: "hi from the host""#),
        "{out}"
    );
    assert!(
        out.contains("write /data/written-by-guest.txt: ok"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("written-by-guest.txt")).unwrap(),
        "hello from the guest\n"
    );
    let escapes: Vec<&str> = out.lines().filter(|l| l.starts_with("escape")).collect();
    assert_eq!(escapes.len(), 7, "{out}");
    for line in escapes {
        assert!(line.contains(": denied ("), "escaped: {line}");
    }
    assert!(!outer.path().join("escaped.txt").exists());
}

#[test]
fn read_only_dir_refuses_writes() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("a.txt"), "a").unwrap();
    let dir = format!("{}::/data:ro", data.path().display());
    let r = run_json(&sample("fs.wasm"), &["--dir", &dir], &[]);
    assert!(
        r.stdout().contains(r#"read /data/a.txt: "a""#),
        "{}",
        r.stdout()
    );
    assert!(
        r.stdout()
            .contains("write /data/written-by-guest.txt: failed"),
        "{}",
        r.stdout()
    );
    assert!(!data.path().join("written-by-guest.txt").exists());
}

#[test]
fn guest_sees_no_host_env_and_no_files_by_default() {
    let out = flotilla()
        .env("GREETING", "leaked")
        .args(["run", sample("hello.wasm").to_str().unwrap(), "-o", "json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["stdout"]
            .as_str()
            .unwrap()
            .contains("GREETING=<unset>"),
        "{json}"
    );
    let r = run_json(&sample("fs.wasm"), &[], &[]);
    assert!(r.stdout().contains("cannot list /data"), "{}", r.stdout());
    assert!(!r.stdout().contains("ALLOWED"), "{}", r.stdout());
}

#[test]
fn the_compiled_code_cache_cannot_be_granted() {
    // Writing an artefact there would run native code in the host.
    let cache = shared_cache();
    std::fs::create_dir_all(&cache).unwrap();
    let parent = cache.parent().unwrap().to_path_buf();
    for dir in [cache, parent] {
        let out = flotilla()
            .arg("run")
            .arg(sample("hello.wasm"))
            .args(["--dir", &format!("{}::/data", dir.display())])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{stderr}");
        assert!(stderr.contains("compiled-code cache"), "{stderr}");
    }
}
