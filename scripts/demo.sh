#!/usr/bin/env bash
# The demo, from a fresh Debian 12 machine: installs what it needs, builds the
# guest modules and flotilla, then shows Wasm-native limits at work.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
scripts/build-sample-modules.sh
cargo build --release --locked -p flotilla
flotilla=target/release/flotilla
m=target/sample-modules
show() { echo; echo "\$ flotilla $*"; "$flotilla" "$@" || echo "(exit code $?)"; }
show run $m/hello.wasm --env GREETING=ahoy -- one two
show run $m/hog.wasm --memory 32Mi -o json
show run $m/spinner.wasm --cpu 250m --timeout 2s -o json
show run $m/trapper.wasm -- div0
