#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what it needs,
# builds the guest modules, then runs every test (unit and end-to-end) in the
# release profile, which shares its wasmtime build with `cargo build --release`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
scripts/build-sample-modules.sh
cargo fmt --all --check
cargo build --release --workspace --locked
cargo test --release --workspace --locked
