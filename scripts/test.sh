#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what it needs,
# builds the guest modules, then runs every test (unit and end-to-end) in the
# release profile, which shares its wasmtime build with `cargo build --release`,
# then each cargo-fuzz target for 20 s.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# A one-off build gains nothing from incremental artifacts, and they more than
# double the target folder (a CI run ran out of disk in the fuzz build with
# them). Local `cargo` runs keep the profile's incremental setting.
export CARGO_INCREMENTAL=0
# The tests that need a real server or tool (etcd, docker-registry,
# prometheus, chromium, ip netns…) skip when it is missing only on a
# developer's machine; this script installs them all, so here a missing
# one fails its test instead of passing it silently.
export CI=${CI:-true}
free_kib=$(df -Pk . | awk 'NR==2 {print $4}')
if [ "${free_kib:-0}" -lt $((12 * 1024 * 1024)) ]; then
  echo "test.sh: warning: only $((free_kib / 1024)) MiB free here; the build and the fuzz targets need about 12 GiB (free space, or set CARGO_TARGET_DIR to a larger disk)" >&2
fi
scripts/setup.sh
scripts/build-sample-modules.sh
cargo fmt --all --check
cargo build --release --workspace --locked
# --no-fail-fast: one failing e2e test must not hide the rest of the suite.
cargo test --release --workspace --locked --no-fail-fast
# The end-to-end suites again, with the control plane on etcd.
scripts/e2e-on-etcd.sh
# The fuzz targets, briefly (scripts/fuzz.sh 600 for a longer run).
scripts/fuzz.sh 20
