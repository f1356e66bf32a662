#!/usr/bin/env bash
# The demo, from a fresh Debian 12 machine: installs what it needs, builds the
# guest modules and flotilla, shows `flotilla run` under limits, then runs
# `flotilla up` (control plane + agent, embedded SQLite store) with a demo
# workload, until Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
scripts/build-sample-modules.sh
cargo build --release --locked -p flotilla
flotilla="$root/target/release/flotilla"
m=target/sample-modules
show() { echo; echo "\$ flotilla $*"; "$flotilla" "$@" || echo "(exit code $?)"; }
show run $m/hello.wasm --env GREETING=ahoy -- one two
show run $m/hog.wasm --memory 32Mi -o json
show run $m/spinner.wasm --cpu 250m --timeout 2s -o json
show run $m/trapper.wasm -- div0

# The all-in-one node, with its own data folder and client config.
export FLOTILLA_CONFIG="$root/target/demo/config.yaml"
mkdir -p "$root/target/demo"
"$flotilla" up --data-dir "$root/target/demo/data" --listen 127.0.0.1:7443 &
up=$!
trap 'kill $up 2>/dev/null' EXIT
for _ in $(seq 100); do [ -f "$FLOTILLA_CONFIG" ] && "$flotilla" get nodes >/dev/null 2>&1 && break; sleep 0.1; done
show apply -f examples/ticker.yaml
show apply -f examples/crasher.yaml
show apply -f examples/hello-http.yaml
sleep 3
echo; echo "\$ curl -H 'Host: hello.local' http://127.0.0.1:8080/"
curl -s -H 'Host: hello.local' http://127.0.0.1:8080/ || echo "(curl failed)"
show get workloads
show get instances -o wide
show get nodes
show logs ticker
show describe workload crasher
echo; echo "\$ flotilla dashboard"
"$flotilla" dashboard --ttl 8h || echo "(exit code $?)"
echo
echo "flotilla is up (FLOTILLA_CONFIG=$FLOTILLA_CONFIG). Try, in another shell:"
echo "  export FLOTILLA_CONFIG=$FLOTILLA_CONFIG; $flotilla get instances; $flotilla logs ticker -f"
echo "Ctrl-C stops it."
wait $up
