#!/usr/bin/env bash
# Performance tables on the GPU machine (issue 5): R=1 at 128..1024 tokens, then R=2,4,8 sharing the GPU
# under MPS. Writes JSON under $OUT (default /tmp/llep-out). Run after a build in $BUILD.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-gpu}
OUT=${OUT:-/tmp/llep-out}
P="$BUILD/test/perf/ll_perf"
mkdir -p "$OUT"
"$BUILD/llrun" -np 1 -t 300 "$P" -b 128 -e 1024 -f 8 -J "$OUT/r1.json" "$@"
"$BUILD/llrun" -np 1 -t 300 "$P" -b 128 -e 1024 -f 8 -G 1 -J "$OUT/r1_graph.json" "$@"
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
nvidia-cuda-mps-control -d && trap 'echo quit | nvidia-cuda-mps-control' EXIT
for R in 2 4 8; do
  "$BUILD/llrun" -np $R -t 300 "$P" -b 128 -e 128 -J "$OUT/r${R}_128.json" "$@"
done
