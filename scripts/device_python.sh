#!/usr/bin/env bash
# One call on a GPU machine for the Python package: builds the library, its tests, the CLI and the
# extension in one CMake tree (sm_90a only, to halve the compile), lays the package out as a wheel
# would, runs the pytest suite on the GPU, the host-cost benchmark, and optionally the
# transformers prefill job. Logs land in $OUT.
#
#   scripts/device_python.sh [SRC.tgz] [steps...]   steps: build pytest overhead prefill
# SRC.tgz is a `git archive` of the commit to test (default: the working tree); wheels for what
# the machine lacks (nanobind, pytest) come in .whl/.
set -uo pipefail
root=$(pwd)
out=${OUT:-/tmp/longattn_device}; mkdir -p "$out"
src=$root
if [ -n "${1:-}" ] && [ -f "$1" ]; then
  src=/tmp/longattn_src; mkdir -p $src; tar xzf "$1" -C $src; shift
fi
steps=${*:-build pytest overhead}
if ls "$root"/.whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$root"/.whl/*.whl
  export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
b=/tmp/longattn_build
status=0
if [[ " $steps " == *" build "* ]]; then
  t0=$SECONDS
  cmake -S $src -B $b -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGATTN_PYTHON=ON \
    -DLONGATTN_CUDA_ARCHITECTURES=90a-real -DPython_EXECUTABLE="$(command -v python3)" \
    > "$out/build.log" 2>&1 && cmake --build $b -j "$(nproc)" >> "$out/build.log" 2>&1 ||
    { echo "build failed"; tail -40 "$out/build.log"; exit 1; }
  echo "build: $((SECONDS - t0)) s"
fi
pkg=/tmp/longattn_pkg; rm -rf $pkg; mkdir -p $pkg
cp -r $src/python/longattn $pkg/ && cp $b/python/_C*.so $pkg/longattn/
export PYTHONPATH=$pkg:${PYTHONPATH:-}
python3 -c "import longattn, torch; print('longattn', longattn.__version__, 'torch', torch.__version__, longattn.devices()[1]['name'])"
if [[ " $steps " == *" pytest "* ]]; then
  (cd $src/python/tests && timeout 400 python3 -m pytest -q -p no:cacheprovider -x . 2>&1 |
    tee "$out/pytest.log" | tail -25) || status=1
fi
if [[ " $steps " == *" overhead "* ]]; then
  timeout 120 python3 $src/bench/overhead.py --out "$out/overhead.md" 2>&1 | grep -v "^W" || status=1
fi
if [[ " $steps " == *" prefill "* ]]; then
  timeout 420 python3 -m longattn.examples.hf_prefill --model gemma4 --tokens 16384,65536,131072 \
    --layers 6 --json "$out/hf_prefill.json" --plot "$out/hf_prefill.png" 2>&1 |
    tee "$out/hf_prefill.log" | tail -30 || status=1
fi
exit $status
