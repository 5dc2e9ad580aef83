#!/usr/bin/env bash
# One call on a GPU machine: the library of an older commit (A), of this tree (B) and a byte copy
# of A (D, the A/A control whose ratio is the harness's own spread) built for sm_90a, then
# bench/ab.py A B D in one process, RUNS times. Pack the old commit here first:
#
#   mkdir -p .devsrc && git archive OLD | gzip > .devsrc/old.tgz     (.devsrc ignored, carried)
#   scripts/device_ab.sh .devsrc/old.tgz [RUNS] [ab.py arguments...]
#       e.g. scripts/device_ab.sh .devsrc/old.tgz 3 --groups decode,grid,chunk,gemma
# Builds land in build-ab{A,B,D}: on a warm machine B is rebuilt incrementally and A again when the
# archive changed. Tables in $OUT/ab<N>.md.
set -uo pipefail
old=${1:?usage: device_ab.sh OLD.tgz [RUNS] [ab.py arguments...]}
runs=${2:-3}
shift $(( $# >= 2 ? 2 : 1 ))
root=$(pwd)
out=${OUT:-/tmp/longattn_ab}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/card.txt"
t0=$SECONDS
lib() {  # name source-dir
  cmake -S "$2" -B "$root/build-ab$1" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLONGATTN_CUDA_ARCHITECTURES=90a-real -DLONGATTN_TESTS=OFF -DLONGATTN_TOOLS=OFF \
    -DLONGATTN_BENCH=OFF > "$out/build$1.log" 2>&1 &&
    cmake --build "$root/build-ab$1" -j "$(nproc)" --target longattn >> "$out/build$1.log" 2>&1 ||
    { echo "build $1 failed"; tail -20 "$out/build$1.log"; return 1; }
}
stamp=$(sha256sum "$old" | cut -c1-16)
if [ "$(cat build-abA/stamp 2>/dev/null)" != "$stamp" ]; then
  rm -rf build-abA /tmp/longattn_ab_old && mkdir -p /tmp/longattn_ab_old
  tar xzf "$old" -C /tmp/longattn_ab_old
  lib A /tmp/longattn_ab_old & pid_a=$!
else
  pid_a=
fi
lib B "$root" || exit 1
[ -z "$pid_a" ] || wait "$pid_a" || exit 1
echo "$stamp" > build-abA/stamp
mkdir -p build-abD && cp build-abA/liblongattn.so build-abD/
echo "builds: $((SECONDS - t0)) s"
status=0
for r in $(seq 1 "$runs"); do
  PYTHONUNBUFFERED=1 python3 bench/ab.py build-abA/liblongattn.so build-abB/liblongattn.so \
    build-abD/liblongattn.so --out "$out/ab$r.md" "$@" > "$out/ab$r.log" 2>&1 ||
    { status=1; tail -5 "$out/ab$r.log"; }
  echo "run $r: $((SECONDS - t0)) s"
done
exit $status
