#!/usr/bin/env bash
# One device run, on a GPU machine: the standalone kernel grid against the float64 reference,
# compute-sanitizer memcheck and racecheck on tiny shapes, the library's GPU test suite (sharded
# over 8 processes), the kernel timing table, then (optional) bench/peers.py. Every step has a
# time limit, so a hang costs minutes, not the whole lease. At most 8 files land in $OUT.
#
#   tests/gpu/run_gpu_checks.sh DIR [--no-bench]
#   PEERS_GROUPS=chunk,gemma,decode,grid PEERS=longattn,flash,cudnn,efficient FLEX_GROUPS=chunk \
#     tests/gpu/run_gpu_checks.sh DIR          also runs bench/peers.py (FlexAttention compiles
#                                              per shape, so it gets its own, shorter, group list)
#
# DIR holds fused_check, longattn_gpu_tests and liblongattn.so (a CMake build dir works too). A
# missing fused_check is built with tests/gpu/build_standalone.sh.
set -uo pipefail
dir=${1:?usage: run_gpu_checks.sh DIR [--no-bench]}
out=${OUT:-/tmp/longattn_gpu}
tmp=$(mktemp -d)
mkdir -p "$out"
find_bin() {
  for p in "$dir/$1" "$dir/tests/gpu/$1"; do [ -e "$p" ] && { echo "$p"; return; }; done
}
# cuBLAS: the toolkit's, else the one PyTorch ships.
if ! ldconfig -p | grep -q libcublas.so.13; then
  torch_cublas=$(python3 -c 'import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__) + "/lib")' 2>/dev/null)
  export LD_LIBRARY_PATH=${torch_cublas}:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
check=$(find_bin fused_check)
if [ -z "$check" ] || ! "$check" --only no-such-case > /dev/null 2>&1; then
  echo "no runnable fused_check in $dir; building it"
  tests/gpu/build_standalone.sh "$dir" "$(nproc)" > "$tmp/build.log" 2>&1 || { tail -30 "$tmp/build.log"; exit 1; }
  check="$dir/fused_check"
fi
status=0
timeout 300 "$check" > "$out/check.log" 2>&1 || status=1
grep -E "^kernel|^device" "$out/check.log" | head -40
grep -E "FAIL|passed|rror" "$out/check.log"
for tool in memcheck racecheck; do
  timeout 300 compute-sanitizer --tool $tool --error-exitcode 9 "$check" --quick \
    >> "$out/sanitizer.log" 2>&1 || status=1
done
echo "sanitizers: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|passed' "$out/sanitizer.log" | tr '\n' ' ')"
suite=$(find_bin longattn_gpu_tests)
if [ -n "$suite" ]; then
  for i in 0 1 2 3 4 5 6 7; do
    GTEST_TOTAL_SHARDS=8 GTEST_SHARD_INDEX=$i timeout 300 "$suite" > "$tmp/suite_$i.log" 2>&1 &
  done
  wait
  cat "$tmp"/suite_*.log > "$out/suite.log"
  echo "gpu suite: $(grep -c '^\[       OK \]' "$out/suite.log") ok, $(grep -c '^\[  FAILED  \]' "$out/suite.log") FAILED lines, $(grep -c '^\[  SKIPPED \]' "$out/suite.log") skipped, $(grep -c '^\[ RUN' "$out/suite.log") started"
  grep -B3 -A12 "^\[  FAILED  \]" "$out/suite.log" | grep -v "^\[ RUN" | head -60
  if grep -q "^\[  FAILED  \]" "$out/suite.log" ||
     [ "$(grep -c '^\[ RUN' "$out/suite.log")" != "$(grep -cE '^\[       OK \]|^\[  FAILED  \]|^\[  SKIPPED \]' "$out/suite.log")" ]; then
    status=1
  fi
fi
if [ "${2:-}" != "--no-bench" ]; then
  timeout 300 "$check" --bench > "$out/bench.log" 2>&1 || status=1
  sed -n '/cuBLAS/,$p' "$out/bench.log"
fi
lib=$(find_bin liblongattn.so)
run_peers() {  # groups peers name
  PYTHONUNBUFFERED=1 timeout 600 python3 bench/peers.py --lib "$lib" --groups "$1" --peers "$2" \
    --out "$out/$3.md" > "$tmp/$3.log" 2>&1 || { status=1; tail -20 "$tmp/$3.log" | tee -a "$out/peers_errors.log"; }
  grep "^|" "$tmp/$3.log" | grep -v "^|---"
}
[ -n "${PEERS_GROUPS:-}" ] && run_peers "$PEERS_GROUPS" "${PEERS:-longattn,flash,cudnn,efficient}" peers
[ -n "${FLEX_GROUPS:-}" ] && run_peers "$FLEX_GROUPS" flex peers_flex
rm -rf "$tmp"
exit $status
