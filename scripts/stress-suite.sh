#!/usr/bin/env bash
# Runs the whole test suite again and again under a CPU hog, to find tests that depend on
# timing (a test must wait for a condition, never for an amount of time).
#
#   scripts/stress-suite.sh [RUNS] [HOGS]
#
# RUNS  how many times to run `cargo test --workspace` (default 5);
# HOGS  how many busy loops to run beside it (default: one per core, `nproc`).
#
# Prints one line per run and a summary; the log of every failed run is kept in
# target/stress/run-N.log. Exits 1 if any run failed. The hogs are killed on exit, however the
# script ends. The CI variables (IRIS_CLAUDE_BIN, IRIS_REQUIRE_REAL_CLAUDE, IRIS_REQUIRE_CGROUP)
# are passed through as they are set.
set -u -o pipefail

runs="${1:-5}"
hogs="${2:-$(nproc)}"
cd "$(dirname "$0")/.."
mkdir -p target/stress

hog_pids=()
stop_hogs() {
  for pid in "${hog_pids[@]}"; do
    kill "$pid" 2>/dev/null
  done
}
trap stop_hogs EXIT INT TERM

# Build first, unhogged: the runs measure the tests, not the compiler.
cargo test --workspace --no-run --quiet || exit 1

for _ in $(seq "$hogs"); do
  ( while :; do :; done ) &
  hog_pids+=("$!")
done
echo "== ${runs} run(s) of the suite beside ${hogs} busy loop(s)"

green=0
failed=0
for run in $(seq "$runs"); do
  log="target/stress/run-${run}.log"
  started=$SECONDS
  if cargo test --workspace >"$log" 2>&1; then
    green=$((green + 1))
    echo "run ${run}: green ($((SECONDS - started)) s)"
    rm -f "$log"
  else
    failed=$((failed + 1))
    echo "run ${run}: FAILED ($((SECONDS - started)) s); failing tests:"
    grep -E '^test .* FAILED$|panicked at' "$log" | head -20 | sed 's/^/  /'
    echo "  (log: ${log})"
  fi
done

echo "== ${green} green, ${failed} failed, of ${runs} run(s) under ${hogs} busy loop(s)"
[ "$failed" -eq 0 ]
