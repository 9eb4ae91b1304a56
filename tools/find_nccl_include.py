"""Prints the directory holding nccl.h: the CUDA toolkit's include/, else the nvidia-nccl wheel's."""
import os
import sys

candidates = []
for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
    if root:
        candidates.append(os.path.join(root, "include"))
try:
    import nvidia.nccl  # the wheel PyTorch depends on

    for p in nvidia.nccl.__path__:
        candidates.append(os.path.join(p, "include"))
except ImportError:
    pass
candidates.append("/usr/include")
for d in candidates:
    if os.path.isfile(os.path.join(d, "nccl.h")):
        print(d)
        sys.exit(0)
sys.exit(1)
