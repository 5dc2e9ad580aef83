#!/usr/bin/env bash
# Builds tests/gpu/fused_check with nvcc alone (no CMake, no core library): the kernels, the host
# dispatch and the check. Usage: tests/gpu/build_standalone.sh OUT_DIR [JOBS]
set -euo pipefail
out=${1:?usage: build_standalone.sh OUT_DIR [JOBS]}
jobs=${2:-2}
cd "$(dirname "$0")/../.."
mkdir -p "$out/obj"
arch="-gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90a,code=sm_90a"
flags="-std=c++17 -O3 -Isrc -Iinclude -Xptxas -warn-spills"
ls src/cuda/instantiations/*.cu src/cuda/merge_cuda.cu tests/gpu/fused_check.cu |
  xargs -P "$jobs" -I{} sh -c "nvcc $flags $arch -c {} -o $out/obj/\$(basename {} .cu).o"
g++ -std=c++17 -O2 -Wall -Wextra -Isrc -Iinclude -I"$(dirname "$(which nvcc)")/../include" \
  -c src/cuda/fused_dispatch_cuda.cpp -o "$out/obj/fused_dispatch_cuda.o"
g++ -std=c++17 -O2 -Wall -Wextra -Isrc -Iinclude -I"$(dirname "$(which nvcc)")/../include" \
  -c src/cuda/launch_cuda.cpp -o "$out/obj/launch_cuda.o"
nvcc $arch -o "$out/fused_check" "$out"/obj/*.o -lcublas
echo "built $out/fused_check"
