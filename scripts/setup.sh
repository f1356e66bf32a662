#!/usr/bin/env bash
# Installs what building and testing Flotilla needs on a Debian 12 machine:
# the Debian Rust toolchain with a std source for wasm32-wasip1 guests
# (see ../shared/guest-toolchain.md), lld, wasi-libc, and the tools the
# benchmarks compare against, iproute2 (`ip netns`: the multi-host
# tests), prometheus (the metrics test scrapes a cluster with it) and
# chromium (the dashboard's browser test), docker-registry (the OCI
# tests run one on loopback), etcd-server and etcd-client (the HA tests run
# three members), protobuf-compiler (etcd-client's gRPC code is generated at
# build time). Idempotent: skips apt when all are present.
set -euo pipefail
packages=(rustc-web cargo-web rust-web-src wasi-libc lld-22 hyperfine runc busybox-static curl wrk iproute2 prometheus chromium docker-registry etcd-server etcd-client protobuf-compiler)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# schemathesis: generates API requests from the OpenAPI document (a test).
if ! command -v st >/dev/null; then
  echo "setup: installing schemathesis (PyPI)" >&2
  python3 -m pip install -q schemathesis==4.32.5
fi
# playwright-core (npm, pinned by tests/ui/package-lock.json; it downloads
# no browser): the dashboard's browser test drives Debian's chromium with it.
ui="$(cd "$(dirname "$0")/.." && pwd)/tests/ui"
if [ ! -d "$ui/node_modules/playwright-core" ]; then
  echo "setup: installing playwright-core (npm)" >&2
  (cd "$ui" && npm ci --no-audit --no-fund --silent)
fi
