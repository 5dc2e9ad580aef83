#!/usr/bin/env bash
# One call on a GPU machine (the workplace's device tool), over binaries built here and carried:
# the library's GPU test suite (float64 reference grid, sharded), compute-sanitizer memcheck and
# racecheck on the kernel's tiny grid, the gemma4-26b-a4b 131072-token prefill (fused and
# unfused), and bench/peers.py. Each step has a time limit; every log lands in $OUT.
#
#   scripts/device_run.sh DIR    DIR holds longattn (CLI), liblongattn.so, longattn_gpu_tests,
#                                fused_check
set -uo pipefail
dir=${1:?usage: device_run.sh DIR}
out=${OUT:-/tmp/longattn_device}
mkdir -p "$out"
export LD_LIBRARY_PATH=$dir:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader |
  tee "$out/card.txt"

step() {  # name seconds command...: runs with a limit, appends to $out/<name>.log
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >> "$out/$name.log" 2>&1 || { echo "[$name] exit $? after $((SECONDS - t0)) s"; status=1; }
  echo "[$name] $((SECONDS - t0)) s"
}

# 1. The library's GPU suite through the public API, 8 shards on the one GPU.
for i in 0 1 2 3 4 5 6 7; do
  GTEST_TOTAL_SHARDS=8 GTEST_SHARD_INDEX=$i timeout 120 "$dir/longattn_gpu_tests" \
    > "$out/suite_$i.tmp" 2>&1 &
done
wait
cat "$out"/suite_*.tmp > "$out/suite.log" && rm -f "$out"/suite_*.tmp
echo "gpu suite: $(grep -c '^\[       OK \]' "$out/suite.log") ok, $(grep -c '^\[  FAILED  \]' "$out/suite.log") failed lines, $(grep -c '^\[ RUN' "$out/suite.log") started"
grep -A8 "^\[  FAILED  \]" "$out/suite.log" | head -30
grep -q "^\[  FAILED  \]" "$out/suite.log" && status=1

# 2. compute-sanitizer on the kernel's tiny grid.
step sanitizer 40 compute-sanitizer --tool memcheck --error-exitcode 9 "$dir/fused_check" --quick
step sanitizer 40 compute-sanitizer --tool racecheck --error-exitcode 9 "$dir/fused_check" --quick
grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$out/sanitizer.log"

# 3. The prefill scenario of issue 5: gemma4-26b-a4b, 131072 tokens, 2048-token chunks.
step prefill 110 "$dir/longattn" prefill --device cuda --model gemma4-26b-a4b --tokens 131072 \
  --chunk 2048 --path both --json
tail -c 1500 "$out/prefill.log"; echo

# 4. Peers: SDPA flash / cuDNN / efficient on the same shapes, same run.
step peers 130 env PYTHONUNBUFFERED=1 python3 bench/peers.py --lib "$dir/liblongattn.so" \
  --groups chunk,gemma,decode,grid --peers longattn,flash,cudnn,efficient --out "$out/peers.md"
grep "^|" "$out/peers.md" 2>/dev/null | head -60
exit $status
