#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what it needs,
# builds the guest modules, then runs every test (unit and end-to-end) in the
# release profile, which shares its wasmtime build with `cargo build --release`,
# then each cargo-fuzz target for 20 s.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
scripts/build-sample-modules.sh
cargo fmt --all --check
cargo build --release --workspace --locked
cargo test --release --workspace --locked
# The fuzz targets, briefly (scripts/fuzz.sh 600 for a longer run).
scripts/fuzz.sh 20
