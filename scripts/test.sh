#!/usr/bin/env bash
# Builds and runs every test: a Release build with warnings as errors, the Python package (built
# with `pip install .` into .venv, with numpy, torch and transformers from PyPI) and its pytest
# suite, then the C++ tests under AddressSanitizer + UndefinedBehaviorSanitizer. `--quick` skips
# the sanitizer build. The package and the sanitizer build compile only the CPU kernels this
# machine runs by default (the only ones their tests reach); the Release build compiles all, and
# its accuracy_isa_* tests run each instruction set below this machine's best.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
# The CUDA instantiation files are generated: fail if they are stale.
python3 scripts/gen_cuda_instances.py --check
jobs=$(nproc)
run_suite() {  # build dir, extra cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DLONGATTN_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs"
}
run_suite build

# The Python package and its tests. Its CUDA kernels are built only where a GPU can run them
# (the C++ build above already compiles them everywhere nvcc is), its CPU kernels only for this
# machine's instruction set (what its tests run); LONGATTN_CUDA and LONGATTN_CPU_ISAS override.
venv=.venv
[ -x $venv/bin/python ] || python3 -m venv $venv
$venv/bin/python -m pip install -q --upgrade pip
$venv/bin/python -m pip install -q numpy ml_dtypes torch transformers pytest nanobind \
  scikit-build-core
gpu=OFF; nvidia-smi -L >/dev/null 2>&1 && gpu=ON
LONGATTN_CUDA=${LONGATTN_CUDA:-$gpu} LONGATTN_CPU_ISAS=${LONGATTN_CPU_ISAS:-host} \
  $venv/bin/python -m pip install -q --no-build-isolation --no-deps .
(cd python/tests && ../../$venv/bin/python -m pytest -q -p no:cacheprovider .)
if [ "${1:-}" != "--quick" ]; then
  LONGATTN_TEST_SCALE=small ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    run_suite build-sanitize -DLONGATTN_SANITIZE=ON -DLONGATTN_CUDA=OFF -DLONGATTN_CPU_ISAS=host
fi

# The C API fuzzer (tests/fuzz): its own clang + libFuzzer build, then 1M executions.
if [ "${1:-}" != "--quick" ]; then
  tests/fuzz/run_ci.sh build-libfuzzer
fi
