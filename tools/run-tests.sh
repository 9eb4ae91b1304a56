#!/usr/bin/env bash
# Builds llep and runs its tests: suite 'cpu' everywhere, suite 'gpu' for real where there is a GPU
# (skipped, exit 77, where there is none). Extra arguments go to `meson test` (e.g. --suite cpu).
#   BUILD=dir   build directory (default: build)
#   MESON_ARGS  extra `meson setup` arguments on first configuration (e.g. -Dgpu_archs=90,100)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" ${MESON_ARGS:-}
ninja -C "$BUILD"
rc=0
meson test -C "$BUILD" --print-errorlogs --num-processes "${JOBS:-$(nproc)}" "$@" || rc=$?
python3 tools/test_summary.py "$BUILD/meson-logs/testlog.json"
exit $rc
