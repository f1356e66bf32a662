#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 20: the short form
# CI runs; try 600 by hand), keeping the corpus in fuzz/corpus/<target>
# (manifests seeded from examples/). Prints executions and coverage; fails
# on any crash, with the input kept in fuzz/artifacts/<target>/.
# cargo fuzz needs nightly flags: RUSTC_BOOTSTRAP lets the stable toolchain
# take them. No sanitizer: the targets are safe Rust, hunting panics,
# overflows (debug assertions are on) and hangs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-20}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1
mkdir -p corpus/manifest
cp "$root"/examples/*.yaml corpus/manifest/
cat > corpus/manifest/role-and-binding.yaml <<'YAML'
apiVersion: flotilla.dev/v1
kind: Role
metadata: {name: secret-reader, namespace: team-a}
spec:
  rules: [{verbs: [get, list], resources: [secrets, instances/log]}]
---
apiVersion: flotilla.dev/v1
kind: RoleBinding
metadata: {name: ci-reads-secrets, namespace: team-a}
spec:
  roleRef: {kind: Role, name: secret-reader}
  subjects: [{kind: Token, name: 4k2j9x}]
YAML
mkdir -p corpus/cgi
printf 'Content-Type: text/plain\r\nStatus: 201 Created\r\n\r\nmade\n' > corpus/cgi/status
printf 'Location: /elsewhere\n\n' > corpus/cgi/redirect
mkdir -p corpus/oci_reference
printf 'oci://localhost:5000/apps/hello:v1' > corpus/oci_reference/tagged
printf 'oci://ghcr.io/org/app:v2@sha256:%064d' 0 > corpus/oci_reference/pinned
mkdir -p corpus/join_token
printf 'FL10%064d::s3cret' 0 > corpus/join_token/shape
# A well-formed bundle (mode byte 0: index.json, then blobs, split at 0xFF;
# see fuzz_targets/bundle.rs) with one module, so mutations start deep.
mkdir -p corpus/bundle
python3 - corpus/bundle/one-module <<'PY'
import hashlib, json, sys
def d(b): return "sha256:" + hashlib.sha256(b).hexdigest()
module = b"\x00asm\x01\x00\x00\x00"
config = b"{}"
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": d(config), "size": len(config)},
    "layers": [{"mediaType": "application/wasm", "digest": d(module), "size": len(module)}]}).encode()
index = json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": d(manifest), "size": len(manifest), "annotations": {
    "io.containerd.image.name": "localhost:5000/fuzz/app:v1", "org.opencontainers.image.ref.name": "v1"}}]}).encode()
assert b"\xff" not in index + manifest + config + module
open(sys.argv[1], "wb").write(b"\x00" + b"\xff".join([index, manifest, config, module]))
PY
# API bodies: a kind's index in flotilla_spec::kinds::KINDS, the body,
# 0xFF, a merge patch. Authorization: caller, method, path.
mkdir -p corpus/api_body corpus/authz_path
python3 - corpus <<'PY'
import json, sys
def seed(name, kind, body, patch):
    open(f"{sys.argv[1]}/api_body/{name}", "wb").write(
        bytes([kind]) + json.dumps(body).encode() + b"\xff" + json.dumps(patch).encode())
meta = {"name": "x", "namespace": "default", "labels": {"app": "x"}}
seed("workload", 0, {"apiVersion": "flotilla.dev/v1", "kind": "Workload", "metadata": meta,
    "spec": {"module": {"source": "file:x.wasm", "sha256": "0" * 64}, "replicas": 3,
             "resources": {"requests": {"memory": "16Mi", "cpu": "50m"}}}},
    {"spec": {"replicas": 5, "args": None}})
seed("config", 5, {"apiVersion": "flotilla.dev/v1", "kind": "Config", "metadata": meta,
    "data": {"a": "b"}}, {"data": {"a": None, "c": "d"}, "immutable": True})
seed("secret", 6, {"apiVersion": "flotilla.dev/v1", "kind": "Secret", "metadata": meta,
    "stringData": {"a": "b"}}, {"metadata": {"labels": None}})
seed("node", 2, {"apiVersion": "flotilla.dev/v1", "kind": "Node", "metadata": {"name": "node-a"},
    "spec": {}}, {"spec": {"unschedulable": True}})
for n, (who, how, path) in enumerate([
        (1, 3, "/apis/flotilla.dev/v1/namespaces/default/workloads/x"),
        (3, 3, "/apis/flotilla.dev/v1/namespaces/default/instances/i/status"),
        (3, 0, "/apis/flotilla.dev/v1/namespaces/default/secrets/s"),
        (3, 2, "/apis/flotilla.dev/v1/namespaces/default/events"),
        (2, 2, "/certificates/node"),
        (3, 0, "/kv/v1/namespaces/default/buckets/b/keys/k"),
        (3, 0, "/blobs/sha256/" + "0" * 64)]):
    open(f"{sys.argv[1]}/authz_path/{n}", "wb").write(bytes([who, how]) + path.encode())
PY
for target in ${FUZZ_TARGETS:-manifest quantity selectors journal cgi oci_reference oci_manifest bundle join_token api_body authz_path}; do
  mkdir -p "corpus/$target"
  log=$(mktemp)
  if ! cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz: $target found a failure (input in fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo "?")
  echo "fuzz: $target: $runs executions in ${seconds}s, coverage $cov edges, no failure" >&2
  rm -f "$log"
done
