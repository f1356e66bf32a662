#!/usr/bin/env bash
# The end-to-end suites, again with the control plane on etcd instead of
# SQLite: one etcd member on a loopback port in a temporary folder, each
# test's cluster under a prefix of its own (tests/e2e/cluster.rs).
# Usage: scripts/e2e-on-etcd.sh [TEST FILTERS…] (after a release build).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
client=$(port); peer=$(port)
etcd --name e2e --data-dir "$dir/data" \
  --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "e2e=http://127.0.0.1:$peer" --quota-backend-bytes $((4 << 30)) \
  > "$dir/etcd.log" 2>&1 &
etcd_pid=$!
# (Each step may fail without failing the script: under `set -e` a `wait`
# for the killed etcd would otherwise make the script's status 143.)
trap 'kill $etcd_pid 2>/dev/null || true; wait $etcd_pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  etcdctl --endpoints "127.0.0.1:$client" endpoint health >/dev/null 2>&1 && break
  sleep 0.1
done
filters=("$@")
# Every suite that runs a control plane, but for the tests of SQLite
# itself (its file's mode, modules kept in an old store, a row edited
# under the server).
((${#filters[@]})) || filters=(rollouts:: config:: fleet:: up:: volumes:: keyvalue:: http:: trust:: metrics:: quotas::
  --skip fleet::modules_kept_in_an_older_store_move_to_the_module_folder
  --skip fleet::an_instance_the_agent_cannot_read_is_reported_and_what_runs_keeps_running
  --skip trust::the_api_speaks_tls_only)
# --workspace (not -p flotilla): the same feature set as test.sh's build, so
# nothing is rebuilt and the binary tested is the one just built.
FLOTILLA_E2E_ETCD="127.0.0.1:$client" cargo test --release --locked --workspace --no-fail-fast --test e2e -- "${filters[@]}"
