#!/usr/bin/env bash
# Runs a command under a private MPS daemon, so that ranks sharing a GPU run their kernels at the same
# time (they spin on each other, and so does the software mlx5 device's copy thread); without a daemon
# their contexts time-slice: correct, but every wait costs a slice. Where no daemon can be started (no
# GPU, no MPS, not allowed) the command runs as it is. Exit status: the command's.
#   tools/with-mps.sh COMMAND [ARGS...]
dir=$(mktemp -d "${TMPDIR:-/tmp}/llep-mps.XXXXXX") || exit 1
export CUDA_MPS_PIPE_DIRECTORY="$dir/pipe" CUDA_MPS_LOG_DIRECTORY="$dir/log"
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
started=0
if command -v nvidia-cuda-mps-control >/dev/null && nvidia-smi -L >/dev/null 2>&1 &&
  nvidia-cuda-mps-control -d >/dev/null 2>&1; then
  started=1
else
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
fi
"$@"
rc=$?
if [ "$started" = 1 ]; then echo quit | nvidia-cuda-mps-control >/dev/null 2>&1; fi
rm -rf "$dir"
exit $rc
