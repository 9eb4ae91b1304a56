"""Finds NCCL: `find_nccl.py include` prints the directory holding nccl.h, `find_nccl.py library` the
path of libnccl.so.2; the CUDA toolkit's first, else the nvidia-nccl wheel's (the one PyTorch uses),
else the system's. Exit 1 when there is none."""
import os
import sys

what = sys.argv[1] if len(sys.argv) > 1 else "include"
if what not in ("include", "library"):
    sys.exit("usage: find_nccl.py include|library")
subdirs = ["include"] if what == "include" else ["lib64", "lib"]
name = "nccl.h" if what == "include" else "libnccl.so.2"

roots = [r for r in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda") if r]
try:
    import nvidia.nccl  # the wheel PyTorch depends on

    roots += list(nvidia.nccl.__path__)
except ImportError:
    pass
candidates = [os.path.join(r, s) for r in roots for s in subdirs]
candidates += ["/usr/include"] if what == "include" else ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]
for d in candidates:
    path = os.path.join(d, name)
    if os.path.isfile(path):
        print(d if what == "include" else os.path.realpath(path))
        sys.exit(0)
sys.exit(1)
