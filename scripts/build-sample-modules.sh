#!/usr/bin/env bash
# Builds the guest modules in sample-modules/ into target/sample-modules/:
# <name>.wasm (WASI preview-1 core module) and <name>.component.wasm (the same
# wrapped as a WASI preview-2 command component, except watchdog), plus the
# .wat test modules.
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
for manifest in "$root"/sample-modules/*/Cargo.toml; do
  name=$(basename "$(dirname "$manifest")")
  src="$root/sample-modules/target/wasm32-wasip1/release/$name.wasm"
  cp "$src" "$out/$name.wasm"
  # watchdog imports flotilla::watchdog_kick, which no WASI adapter provides:
  # it exists as a core module only.
  [ "$name" = watchdog ] && continue
  if [ "$out/$name.component.wasm" -ot "$src" ] || [ ! -e "$out/$name.component.wasm" ]; then
    "${CARGO_TARGET_DIR:-$root/target}/release/componentize" "$src" "$out/$name.component.wasm" command
  fi
done
cp "$root"/sample-modules/wat/*.wat "$out/"
echo "sample modules in $out:" >&2
ls "$out" >&2
