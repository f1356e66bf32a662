//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// Timing-sensitive tests take this so they do not share the CPU with each other.
static TIMING: Mutex<()> = Mutex::new(());

/// Serialises timing-sensitive tests.
pub fn timing_lock() -> MutexGuard<'static, ()> {
    TIMING.lock().unwrap_or_else(|p| p.into_inner())
}

/// A test cannot run here for want of `what` (a tool, root, a kernel
/// feature). On a developer's machine it is skipped, saying so; where `CI`
/// is set (CI itself, and scripts/test.sh, which installs every tool) it
/// fails: a test that passes because it did not run hides what it tests.
pub fn cannot_run(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} (scripts/setup.sh installs every tool the suite needs; CI is set, so this fails rather than skips)"
    );
    eprintln!("skipped: {what} (scripts/setup.sh installs every tool the suite needs)");
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A built sample module, e.g. `sample("hello.wasm")`.
pub fn sample(name: &str) -> PathBuf {
    let path = root().join("target/sample-modules").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-sample-modules.sh",
        path.display()
    );
    path
}

/// The compile cache shared by the suite's runs, so each module compiles once.
pub fn shared_cache() -> PathBuf {
    root().join("target/test-compile-cache")
}

/// `flotilla` with the suite's compile cache.
pub fn flotilla() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.env("FLOTILLA_CACHE_DIR", shared_cache())
        .env_remove("FLOTILLA_LOG");
    cmd
}

/// The result of `flotilla run -o json`.
pub struct JsonRun {
    pub json: serde_json::Value,
    pub code: i32,
}

impl JsonRun {
    pub fn reason(&self) -> &str {
        self.json["reason"].as_str().unwrap_or("<none>")
    }
    pub fn stdout(&self) -> &str {
        self.json["stdout"].as_str().unwrap_or("")
    }
    pub fn f64(&self, field: &str) -> f64 {
        self.json[field]
            .as_f64()
            .unwrap_or_else(|| panic!("no {field} in {}", self.json))
    }
}

/// `flotilla run <flags> MODULE -o json -- <guest_args>`.
pub fn run_json(module: &Path, flags: &[&str], guest_args: &[&str]) -> JsonRun {
    let mut cmd = flotilla();
    cmd.arg("run")
        .arg(module)
        .args(flags)
        .args(["-o", "json", "--"])
        .args(guest_args);
    let out = cmd.output().expect("spawn flotilla");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): stdout={stdout} stderr={}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    JsonRun {
        json,
        code: out.status.code().unwrap_or(-1),
    }
}

/// `flotilla <args>` with plain output.
pub fn run_plain(args: &[&str]) -> Output {
    flotilla().args(args).output().expect("spawn flotilla")
}

/// A tmpfs mounted for a test (a small disk to fill), unmounted when
/// dropped. Needs root.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `32m`) at `path`, creating it.
    pub fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}
