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
mkdir -p corpus/cgi
printf 'Content-Type: text/plain\r\nStatus: 201 Created\r\n\r\nmade\n' > corpus/cgi/status
printf 'Location: /elsewhere\n\n' > corpus/cgi/redirect
for target in manifest quantity selectors journal cgi; do
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
