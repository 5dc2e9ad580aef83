#!/usr/bin/env bash
# Installs what a build needs and is missing (Debian/Ubuntu): compiler, CMake, GoogleTest,
# Google Benchmark, clang + libFuzzer, matplotlib for the plots, and venv + headers for the Python
# package.
# Already-present packages are left alone.
set -euo pipefail
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
command -v g++ >/dev/null || need+=(g++)
command -v cmake >/dev/null || need+=(cmake)
command -v make >/dev/null || need+=(make)
# The C API fuzz target (tests/fuzz) builds with clang and libFuzzer's runtime.
command -v clang++ >/dev/null || need+=(clang)
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
  need+=(libclang-rt-dev)
have_pkg libgtest-dev || [ -f /usr/include/gtest/gtest.h ] || need+=(libgtest-dev)
have_pkg libgmock-dev || [ -f /usr/include/gmock/gmock.h ] || need+=(libgmock-dev)
have_pkg libbenchmark-dev || [ -f /usr/include/benchmark/benchmark.h ] || need+=(libbenchmark-dev)
# `longattn prefill --plot` runs /usr/bin/python3 (a python3 earlier on PATH, e.g. pyenv's, may
# lack matplotlib); Debian's python3-matplotlib is the one it imports.
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || need+=(python3-matplotlib)
# The Python package builds in a virtual environment against the python3 on PATH: it needs venv
# and the interpreter's headers (pyenv's builds have both; Debian's come as packages).
if [ "$(command -v python3)" = /usr/bin/python3 ]; then
  have_pkg python3-venv || need+=(python3-venv)
  have_pkg python3-dev || need+=(python3-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
