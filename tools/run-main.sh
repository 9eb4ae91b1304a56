#!/usr/bin/env bash
# The main job: builds llep and runs it on the local GPU(s) with sensible defaults.
# Today that is the communicator check over p2p: one rank per GPU (4 ranks sharing the GPU when there
# is only one) create a communicator, write through every route, verify, and tear down.
# Exits non-zero, saying so, where there is no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" ${MESON_ARGS:-}
ninja -C "$BUILD"
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "llep: no GPU on this machine: the main job needs one (the tests run without: tools/run-tests.sh)"
  exit 1
fi
gpus=$(nvidia-smi -L | wc -l)
ranks=${RANKS:-$(( gpus > 1 ? gpus : 4 ))}
"$BUILD/llrun" -np "$ranks" -t 300 "$BUILD/test/gpu/test_p2p_routes" cycles
