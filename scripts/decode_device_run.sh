#!/usr/bin/env bash
# One device call for the decode work (issue 3): the GPU suite (8 shards), fused_check (the
# kernel grid, split_kv and merge edge cases included), the decode split sweep (CUDA graph timing)
# and bench/peers.py on the decode group (graph timing), over binaries built elsewhere and carried.
#
#   scripts/decode_device_run.sh DIR [PEERS_PY]   DIR holds liblongattn.so, longattn_gpu_tests,
#                                                 fused_check; logs land in $OUT
set -uo pipefail
dir=${1:?usage: decode_device_run.sh DIR [PEERS_PY]}
peers_py=${2:-bench/peers.py}
out=${OUT:-/tmp/longattn_decode}
mkdir -p "$out"
export LD_LIBRARY_PATH=$dir:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader |
  tee "$out/card.txt"

t0=$SECONDS
for i in 0 1 2 3 4 5 6 7; do
  GTEST_TOTAL_SHARDS=8 GTEST_SHARD_INDEX=$i timeout 150 "$dir/longattn_gpu_tests" \
    > "$out/suite_$i.tmp" 2>&1 &
done
wait
cat "$out"/suite_*.tmp > "$out/suite.log" && rm -f "$out"/suite_*.tmp
echo "gpu suite ($((SECONDS - t0)) s): $(grep -c '^\[       OK \]' "$out/suite.log") ok," \
  "$(grep -c '^\[  FAILED  \]' "$out/suite.log") failed lines, $(grep -c '^\[ RUN' "$out/suite.log") started"
grep -A8 "^\[  FAILED  \]" "$out/suite.log" | head -30
grep -q "^\[  FAILED  \]" "$out/suite.log" && status=1

t0=$SECONDS
timeout 75 "$dir/fused_check" > "$out/fused_check.log" 2>&1 || { echo "fused_check exit $?"; status=1; }
echo "fused_check ($((SECONDS - t0)) s): $(tail -1 "$out/fused_check.log")"
grep -i "fail" "$out/fused_check.log" | head -10

t0=$SECONDS
timeout 100 "$dir/fused_check" --decode-sweep > "$out/sweep.log" 2>&1 || { echo "sweep exit $?"; status=1; }
echo "sweep ($((SECONDS - t0)) s)"

t0=$SECONDS
timeout 130 env PYTHONUNBUFFERED=1 python3 "$peers_py" --lib "$dir/liblongattn.so" \
  --groups decode --peers longattn,flash,cudnn --out "$out/decode.md" > "$out/peers.log" 2>&1 ||
  { echo "peers exit $?"; status=1; }
echo "peers ($((SECONDS - t0)) s)"
grep "^|" "$out/decode.md" 2>/dev/null | cut -c1-150 || tail -20 "$out/peers.log"
exit $status
