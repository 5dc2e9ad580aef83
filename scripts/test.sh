#!/usr/bin/env bash
# Builds and runs every test: a Release build with warnings as errors, then the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer. `--quick` skips the sanitizer build.
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
if [ "${1:-}" != "--quick" ]; then
  LONGATTN_TEST_SCALE=small ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    run_suite build-sanitize -DLONGATTN_SANITIZE=ON -DLONGATTN_CUDA=OFF
fi
