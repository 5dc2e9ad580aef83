#!/usr/bin/env bash
# The main job: installs what is missing, builds (Release), then runs longattn on this machine's
# best device. Extra arguments go to the job's command.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target longattn_cli
bin=build/tools/longattn
device=cpu
if "$bin" info --json | grep -q '"device":"cuda","available":true'; then device=cuda; fi
"$bin" info
"$bin" bench --device "$device" "$@"
