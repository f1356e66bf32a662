#!/usr/bin/env bash
# Builds the guest modules in sample-modules/ into target/sample-modules/:
# <name>.wasm (WASI preview-1 core module) and <name>.component.wasm (the same
# wrapped as a WASI preview-2 command component, except wagi-hello); the HTTP handlers (cdylib crates) as <name>.component.wasm
# wasi:http/proxy components only; plus the .wat test modules.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/sample-modules"
mkdir -p "$out"

# Debian's rustc builds std for wasm32-wasip1 from source (nightly flags on a
# stable compiler, hence RUSTC_BOOTSTRAP); its cargo matches it.
cd "$root/sample-modules"
CARGO_TARGET_DIR="$root/sample-modules/target" RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --release --quiet

cd "$root"
cargo build --release --quiet -p componentize
componentize() { # src dest adapter
  if [ "$2" -ot "$1" ] || [ ! -e "$2" ]; then
    "${CARGO_TARGET_DIR:-$root/target}/release/componentize" "$1" "$2" "$3"
  fi
}
built="$root/sample-modules/target/wasm32-wasip1/release"
for manifest in "$root"/sample-modules/*/Cargo.toml; do
  name=$(basename "$(dirname "$manifest")")
  if grep -q 'adapter = "reactor"' "$manifest"; then
    # A library exporting wasi:cli/run: a command component.
    componentize "$built/${name//-/_}.wasm" "$out/$name.component.wasm" reactor
    continue
  fi
  if grep -q cdylib "$manifest"; then
    # An HTTP handler: a reactor wrapped with the proxy adapter, i.e. a
    # wasi:http/proxy component (what `wasmtime serve` and Spin run).
    componentize "$built/${name//-/_}.wasm" "$out/$name.component.wasm" proxy
    continue
  fi
  [ -e "$built/$name.wasm" ] || continue # a library the guests share
  cp "$built/$name.wasm" "$out/$name.wasm"
  # wagi-hello is run as a core module only.
  case "$name" in wagi-hello) continue ;; esac
  componentize "$built/$name.wasm" "$out/$name.component.wasm" command
done
cp "$root"/sample-modules/wat/*.wat "$out/"
echo "sample modules in $out:" >&2
ls "$out" >&2
