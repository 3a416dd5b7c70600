#!/usr/bin/env bash
# stage.sh BUILD_DIR STAGE_DIR: what tests/gpu/run-watch.sh needs from a
# build, small enough for the device tool's 64 MiB: gpugate and the watch
# benchmark without debug info, the CUDA workload, and the shared libraries
# they link that are not glibc's (a lent machine may lack libfmt or toml++).
# STAGE_DIR is laid out as a build directory: run-watch.sh STAGE_DIR OUT.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR STAGE_DIR" >&2
  exit 2
fi
build=$1 stage=$2
for f in bin/gpugate bin/gpugate-watch-bench tests/gpu/workload; do
  [ -x "$build/$f" ] || { echo "stage: $build/$f missing: make build first" >&2; exit 1; }
done
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/lib" "$stage/tests/gpu"
strip --strip-debug -o "$stage/bin/gpugate" "$build/bin/gpugate"
strip --strip-debug -o "$stage/bin/gpugate-watch-bench" "$build/bin/gpugate-watch-bench"
cp "$build/tests/gpu/workload" "$stage/tests/gpu/workload"
ldd "$build/bin/gpugate" "$build/bin/gpugate-watch-bench" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*)\.so' | while read -r lib; do
  cp -L "$lib" "$stage/lib/"
done
du -sh "$stage"
