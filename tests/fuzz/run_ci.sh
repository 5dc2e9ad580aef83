#!/usr/bin/env bash
# The C API fuzzer's CI mode: builds it with clang into BUILD_DIR (default build-libfuzzer, its
# own configure: LONGATTN_FUZZ=ON, no CUDA, the host's CPU kernels only), writes the seed
# corpus, runs 1M executions in two processes.
#   tests/fuzz/run_ci.sh [BUILD_DIR]           configure, build, run
#   tests/fuzz/run_ci.sh --run-only FUZZER     run an already built fuzzer (ctest -L fuzz)
# LONGATTN_FUZZ_RUNS overrides the number of executions.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ "${1:-}" = "--run-only" ]; then
  fuzzer=$2
  work=$(dirname "$fuzzer")/fuzz-ci
else
  build=${1:-build-libfuzzer}
  if ! command -v clang++ >/dev/null; then
    echo "tests/fuzz/run_ci.sh: SKIPPED, clang++ not found (libFuzzer needs clang)" >&2
    exit 0
  fi
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DLONGATTN_FUZZ=ON -DLONGATTN_CUDA=OFF -DLONGATTN_TOOLS=OFF -DLONGATTN_CPU_ISAS=host >/dev/null
  cmake --build "$build" -j "$(nproc)" --target longattn_c_api_fuzz
  fuzzer=$build/tests/fuzz/longattn_c_api_fuzz
  work=$build/tests/fuzz/fuzz-ci
fi
rm -rf "$work" && mkdir -p "$work"
python3 "$root/tests/fuzz/make_seeds.py" "$work/seeds"
# Two processes (the CI machine's two cores), seeds 1 and 2, half the executions each: the same
# executions every run. Each grows its own corpus; crashes land in $work; inputs that once failed
# live in tests/fuzz/regressions and run first.
runs=${LONGATTN_FUZZ_RUNS:-1000000}
pids=()
for i in 1 2; do
  mkdir -p "$work/corpus$i"
  "$fuzzer" -runs=$(( (runs + 1) / 2 )) -seed=$i -max_len=512 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus$i" "$work/seeds" \
    "$root/tests/fuzz/regressions" > "$work/fuzz$i.log" 2>&1 &
  pids+=($!)
done
status=0
for i in 1 2; do
  echo "== fuzzer process $i (seed $i)"
  if wait "${pids[$((i - 1))]}"; then
    grep -E "^(INFO: Seed|Done |stat::)" "$work/fuzz$i.log"
  else
    status=1
    grep -v "^#[0-9]" "$work/fuzz$i.log"
  fi
done
exit $status
