#!/usr/bin/env bash
# Whole-process comparisons for BENCHMARKS.md, each measured in one run with
# the commands alternating (benches/compare.py):
#   1. `flotilla run hello.wasm` vs `wasmtime run hello.wasm` (wasmtime-cli 48.0.8)
#   2. `runc run` of busybox echo from a local bundle vs `flotilla run hello.wasm`
#   3. a CPU-bound guest: no CPU limit vs a CPU limit that never throttles
#      (accounting only) vs `wasmtime run` (no epoch interruption at all)
# Needs: scripts/build-sample-modules.sh, cargo build --release, and
# `cargo install wasmtime-cli --version 48.0.8 --locked` (slow: once per machine).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rounds=${ROUNDS:-40}
flotilla="$root/target/release/flotilla"
m="$root/target/sample-modules"
wasmtime=${WASMTIME:-$(command -v wasmtime || echo "$HOME/.cargo/bin/wasmtime")}
"$wasmtime" --version | grep -q '^wasmtime 48\.' || { echo "need wasmtime-cli 48.x, found: $("$wasmtime" --version)" >&2; exit 1; }
export FLOTILLA_CACHE_DIR="$root/target/bench-compile-cache"
compare() { python3 "$root/benches/compare.py" "$rounds" "$@"; }

echo "## flotilla run vs wasmtime run (hello.wasm, both with a warm compile cache)"
compare "flotilla run=$flotilla run $m/hello.wasm" "wasmtime run=$wasmtime run -C cache=y $m/hello.wasm"

echo; echo "## runc run (busybox echo) vs flotilla run (hello.wasm)"
bundle=$(mktemp -d)
trap 'rm -rf "$bundle"' EXIT
mkdir -p "$bundle/rootfs/bin"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
(cd "$bundle" && runc spec && python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["args"] = ["/bin/busybox", "echo", "hello"]
c["process"]["terminal"] = False
json.dump(c, open("config.json", "w"))
PY
)
compare "runc run=runc run --bundle $bundle flotilla-bench" "flotilla run=$flotilla run $m/hello.wasm"

echo; echo "## CPU-bound guest (spinner, 200M iterations): epoch accounting overhead"
n=200000000
compare "flotilla, no CPU limit=$flotilla run $m/spinner.wasm -- $n" \
        "flotilla --cpu 2 (accounting on, never throttles)=$flotilla run --cpu 2 $m/spinner.wasm -- $n" \
        "wasmtime run (no epochs)=$wasmtime run -C cache=y $m/spinner.wasm $n"
