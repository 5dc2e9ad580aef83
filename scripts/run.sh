#!/usr/bin/env bash
# The main job: installs what is missing, builds (Release), then runs `longattn prefill` on this
# machine's best device (the GPU when there is one, else the CPU with a smaller default prompt)
# and, when /usr/bin/python3 has matplotlib, plots it into <build>/prefill.png. Extra arguments
# go to `longattn prefill` (e.g. --tokens 4096 --path unfused --budget 480M); LONGATTN_BUILD_DIR
# picks the build directory (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
build=${LONGATTN_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target longattn_cli
bin=$build/cli/longattn
"$bin" info
# The plot script runs on the system interpreter, where Debian's python3-matplotlib lives.
plot=()
if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  plot=(--plot "$build/prefill.png")
else
  echo "note: /usr/bin/python3 cannot import matplotlib, so no plot" \
    "(apt-get install python3-matplotlib)" >&2
fi
echo
"$bin" prefill ${plot[@]+"${plot[@]}"} "$@"
