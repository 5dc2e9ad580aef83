#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds and runs a C consumer through the
# CMake package (shared and static) and through pkg-config.
set -euo pipefail
build=$1 src=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib:$tmp/prefix/lib64:${LD_LIBRARY_PATH:-}" "$tmp/consumer/consumer_shared"
"$tmp/consumer/consumer_static"
pc_dir=$(dirname "$(find "$tmp/prefix" -name longattn.pc)")
flags=$(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags --libs longattn)
cc "$src/consumer.c" $flags -lm -o "$tmp/consumer_pc"
LD_LIBRARY_PATH="$tmp/prefix/lib:$tmp/prefix/lib64:${LD_LIBRARY_PATH:-}" "$tmp/consumer_pc"
