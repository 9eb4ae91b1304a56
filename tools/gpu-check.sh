#!/usr/bin/env bash
# One call on the GPU machine: build, run every test (cpu and gpu suites), keep the logs under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/llep-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
export BUILD=${BUILD:-build-gpu}
bash tools/run-tests.sh "$@" 2>&1 | tee "$OUT/tests.log"
rc=${PIPESTATUS[0]}
cp "$BUILD/meson-logs/testlog.txt" "$OUT/" 2>/dev/null
exit $rc
