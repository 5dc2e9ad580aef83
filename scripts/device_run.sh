#!/usr/bin/env bash
# One call on a GPU machine (the workplace's device tool), over binaries built here and carried:
# the library's GPU test suite (float64 reference grid, sharded) on the kernels the router picks
# (the sm_90a kernel on Hopper) and again on the portable kernel alone (LONGATTN_CUDA_KERNEL=sm80),
# compute-sanitizer memcheck over the whole suite and racecheck and synccheck on a few of its
# cases, kernel_bench's timing table and the decode shapes, bench/peers.py, then the portable
# kernel's suite and timings and the gemma4-26b-a4b 131072-token prefill (fused and unfused): most
# needed first. Each step has a time limit; every log lands in $OUT.
#
#   scripts/device_run.sh DIR [decode]   DIR holds longattn (CLI), liblongattn.so,
#                                        longattn_gpu_tests, kernel_bench, and, when present,
#                                        longattn_fuzz_cuda_test and longattn_engine_tests
# "decode" runs the decode work's call instead: the suite, the decode split sweep (every split
# count, graph timing) and peers.py on the decode group.
set -uo pipefail
dir=${1:?usage: device_run.sh DIR [decode]}
mode=${2:-full}
# Logs go to $OUT/logs and leave as one archive (the device tool returns at most 8 files).
final=${OUT:-/tmp/longattn_device}
out=$final/logs
mkdir -p "$out"
export LD_LIBRARY_PATH=$dir:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader |
  tee "$out/card.txt"

# The archive is rewritten after every step, so a call cut short by its time limit still returns
# the logs of the steps that finished.
pack() { tar czf "$final/logs.tgz" -C "$final" logs; }
step() {  # name seconds command...: runs with a limit, appends to $out/<name>.log
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >> "$out/$name.log" 2>&1 || { echo "[$name] exit $? after $((SECONDS - t0)) s"; status=1; }
  echo "[$name] $((SECONDS - t0)) s"
  pack
}

# 1. The library's GPU suite through the public API, 8 shards on the one GPU.
suite() {  # log-name [env...]
  local name=$1; shift
  for i in 0 1 2 3 4 5 6 7; do
    env "$@" GTEST_TOTAL_SHARDS=8 GTEST_SHARD_INDEX=$i timeout 150 "$dir/longattn_gpu_tests" \
      > "$out/${name}_$i.tmp" 2>&1 &
  done
  wait
  cat "$out/${name}"_*.tmp > "$out/$name.log" && rm -f "$out/${name}"_*.tmp
  echo "$name: $(grep -c '^\[       OK \]' "$out/$name.log") ok, $(grep -c '^\[  FAILED  \]' "$out/$name.log") failed lines, $(grep -c '^\[ RUN' "$out/$name.log") started"
  grep -A8 "^\[  FAILED  \]" "$out/$name.log" | head -30
  grep -q "^\[  FAILED  \]" "$out/$name.log" && status=1
  pack
}
suite suite LONGATTN_CUDA_KERNEL=auto

if [ "$mode" = decode ]; then
  step sweep 150 "$dir/kernel_bench" --decode-sweep
  grep "choose_splits" "$out/sweep.log"
  step peers_decode 150 env PYTHONUNBUFFERED=1 python3 bench/peers.py --lib "$dir/liblongattn.so" \
    --groups decode --peers longattn,flash,cudnn --out "$out/peers_decode.md"
  grep "^|" "$out/peers_decode.md" 2>/dev/null | cut -c1-150
  cp "$out/peers_decode.md" "$final/" 2>/dev/null
  pack && rm -rf "$out"
  exit $status
fi

# 1b. Random valid inputs on every path against the float64 reference, guards around O and LSE
# (the full count, then memcheck on a few), and the engine's paged cache on the GPU.
if [ -x "$dir/longattn_fuzz_cuda_test" ]; then
  step fuzz 400 "$dir/longattn_fuzz_cuda_test"
  sed -n '/cases (seed/,/^\[/p' "$out/fuzz.log" | head -40; grep "^FAIL" "$out/fuzz.log" | head -20
  step fuzz_memcheck 400 env LONGATTN_FUZZ_CASES=300 compute-sanitizer --tool memcheck \
    --error-exitcode 9 "$dir/longattn_fuzz_cuda_test"
  grep -E "ERROR SUMMARY|^FAIL" "$out/fuzz_memcheck.log" | head -20
fi
if [ -x "$dir/longattn_engine_tests" ]; then
  step engine_gpu 120 "$dir/longattn_engine_tests" --gtest_filter='PrefillEngine.PagedCache*'
  grep -E "^\[  (FAILED|SKIPPED|PASSED) " "$out/engine_gpu.log"
fi
step prefill_paged 150 "$dir/longattn" prefill --device cuda --model gemma4-26b-a4b --tokens 16384 \
  --chunk 2048 --path both --cache paged
tail -n 12 "$out/prefill_paged.log"

# 2. compute-sanitizer: memcheck over the whole GPU suite (8 shards), racecheck and
# synccheck on a few grid cases (the sm_90a kernel where it applies: every mode once).
# Each shard's exit status counts: one killed by its time limit prints no FAILED line.
pids=()
for i in 0 1 2 3 4 5 6 7; do
  GTEST_TOTAL_SHARDS=8 GTEST_SHARD_INDEX=$i timeout 400 compute-sanitizer --tool memcheck \
    --error-exitcode 9 "$dir/longattn_gpu_tests" > "$out/memcheck_$i.tmp" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
cat "$out"/memcheck_*.tmp > "$out/memcheck.log" && rm -f "$out"/memcheck_*.tmp
grep -q "ERROR SUMMARY: [1-9]\|^\[  FAILED  \]" "$out/memcheck.log" && status=1
echo "memcheck: $(grep -c '^\[       OK \]' "$out/memcheck.log") ok, $(grep 'ERROR SUMMARY' "$out/memcheck.log" | sort | uniq -c | tr '\n' ' ')"
few='Grid/*d64_f16_gqa8_window_lq_gt_lk:Grid/*d512_bf16_gqa8_causal_sinks_mask:Grid/*splits40*:Grid/*d100_bf16_rows16_causal'
for tool in racecheck synccheck; do
  step sanitizer 200 compute-sanitizer --tool $tool --error-exitcode 9 "$dir/longattn_gpu_tests" \
    --gtest_filter="$few"
done
grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$out/sanitizer.log"

# 2b. Kernel timings (TFLOPS against the cuBLAS matmul of the same run),
# and the decode shapes at the library's split count (CUDA graph replays).
step bench 150 "$dir/kernel_bench"
step decode 100 "$dir/kernel_bench" --decode-chosen
grep -A14 "^decode sweep" "$out/decode.log"

# 3. Peers: SDPA flash / cuDNN / efficient on the same shapes, same run. Decode first, on a cool
# card: after the prefill groups its smallest shapes read 2-5 percentage points lower (v0.3).
step peers_decode 150 env PYTHONUNBUFFERED=1 python3 bench/peers.py --lib "$dir/liblongattn.so" \
  --groups decode --peers longattn,flash,cudnn --out "$out/peers_decode.md"
step peers 200 env PYTHONUNBUFFERED=1 python3 bench/peers.py --lib "$dir/liblongattn.so" \
  --groups chunk,gemma,grid --peers longattn,flash,cudnn,efficient --out "$out/peers.md"
grep "^|" "$out/peers_decode.md" "$out/peers.md" 2>/dev/null | head -80
cp "$out/peers_decode.md" "$out/peers.md" "$final/" 2>/dev/null

# 4. The portable kernel alone: the suite and its timings.
suite suite_sm80 LONGATTN_CUDA_KERNEL=sm80
step bench_sm80 150 env LONGATTN_CUDA_KERNEL=sm80 "$dir/kernel_bench"

# 5. The prefill scenario of issue 5: gemma4-26b-a4b, 131072 tokens, 2048-token chunks.
step prefill 110 "$dir/longattn" prefill --device cuda --model gemma4-26b-a4b --tokens 131072 \
  --chunk 2048 --path both --json
tail -c 1500 "$out/prefill.log"; echo

pack && rm -rf "$out"
exit $status
