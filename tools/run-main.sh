#!/usr/bin/env bash
# The main job: builds llep and runs the dispatch+combine benchmark (test/perf/ll_perf) on the local
# GPU(s): one rank per GPU, or 4 ranks sharing the GPU when there is only one (under MPS, started here
# if no daemon runs). H 7168, top-8, 256 experts, fp8 dispatch, bf16 combine, checked against the
# reference. Exits non-zero, saying so, where there is no GPU.
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
# Ranks sharing a GPU wait on each other inside kernels, so they must run at once: start MPS if no daemon runs.
if [ "$ranks" -gt "$gpus" ] && nvidia-cuda-mps-control -d 2>/dev/null; then
  trap 'echo quit | nvidia-cuda-mps-control' EXIT
fi
sizes=$([ "$ranks" -gt "$gpus" ] && echo "-b 128 -e 128" || echo "-b 128 -e 1024 -f 2")  # 4 ranks x 1024 won't fit 80 GB
# ll_perf's NCCL baseline (one rank per GPU) loads NCCL from here unless LLEP_NCCL_LIBRARY says otherwise.
export LLEP_NCCL_LIBRARY=${LLEP_NCCL_LIBRARY:-$(python3 tools/find_nccl.py library || true)}
"$BUILD/llrun" -np "$ranks" -t 900 "$BUILD/test/perf/ll_perf" $sizes -J "${JSON:-$BUILD/ll_perf.json}"
