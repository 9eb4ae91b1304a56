#!/usr/bin/env bash
# Performance tables on the GPU machine (docs/performance.md). H 7168, top-8, 256 experts, checks on.
#   one GPU:      R=1 at 128..1024 tokens (fp8 and bf16 dispatch, eager and CUDA graph; fp8 also with
#                 the L2 flushed by a memset, -F write, and with UE8M0 scales), then R=2,4,8
#                 ranks sharing the GPU under MPS at 128 tokens;
#   several GPUs: one rank per GPU at 128 and 512 tokens (fp8 and bf16, eager and CUDA graph), with the
#                 NCCL baseline (ncclSend/ncclRecv of the same bytes) in the eager runs, a send-only run
#                 (send and receive phases apart), and SM-store bandwidth to the peer GPU.
# JSON and the printed tables go to $OUT (default /tmp/llep-out). Run after a build in $BUILD
# (tools/gpu-check.sh makes one).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-gpu}
OUT=${OUT:-/tmp/llep-out}
P="$BUILD/test/perf/ll_perf"
mkdir -p "$OUT"
export LLEP_NCCL_LIBRARY=${LLEP_NCCL_LIBRARY:-$(python3 tools/find_nccl.py library || true)}
run() {  # name, ranks, ll_perf arguments...
  local name=$1 ranks=$2
  shift 2
  echo "## $name"
  "$BUILD/llrun" -np "$ranks" -t 300 "$P" "$@" -J "$OUT/$name.json" 2>&1 | grep -v "\[llep\]" | tee "$OUT/$name.txt" |
    grep -E "^ +(dispatch|combine|step)|Wrong rows|peer copy|round trip|NCCL baseline"
}
gpus=$(nvidia-smi -L | wc -l)
if [ "$gpus" -gt 1 ]; then
  run "r${gpus}_fp8" "$gpus" -b 128 -e 512 -f 4
  run "r${gpus}_bf16" "$gpus" -b 128 -e 512 -f 4 -d bf16
  run "r${gpus}_fp8_graph" "$gpus" -b 128 -e 512 -f 4 -G 1
  run "r${gpus}_fp8_send_only" "$gpus" -b 128 -e 128 -z 1
  echo "## SM stores to a peer GPU"
  "$BUILD/test/perf/peer_store_bw" | tee "$OUT/peer_store_bw.txt"
  exit 0
fi
run r1_fp8 1 -b 128 -e 1024 -f 8
run r1_fp8_flush_write 1 -b 128 -e 1024 -f 8 -F write
run r1_fp8_ue8m0 1 -b 128 -e 1024 -f 8 -d fp8-ue8m0
run r1_bf16 1 -b 128 -e 1024 -f 8 -d bf16
run r1_fp8_graph 1 -b 128 -e 1024 -f 8 -G 1
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
nvidia-cuda-mps-control -d && trap 'echo quit | nvidia-cuda-mps-control' EXIT
for R in 2 4 8; do run "r${R}_fp8" "$R" -b 128 -e 128; done
