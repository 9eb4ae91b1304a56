"""llCommInitFromNccl on the communicator of a torch ProcessGroupNCCL: routes checked by a kernel on
every rank, then destroyed; warm-up + 3 cycles with GPU memory back where it started. One rank when
run alone; under llrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) one rank per GPU. Exit 77
without a GPU or torch, or with more ranks than GPUs (NCCL takes one rank per GPU).
Usage: [llrun -np R] test_nccl_init.py path/to/libllep_gputest.so"""
import ctypes
import os
import sys

try:
    import torch
    import torch.distributed as dist
except ImportError:
    print("SKIP: torch is not installed")
    sys.exit(77)
if not torch.cuda.is_available():
    print("SKIP: no GPU")
    sys.exit(77)
world = int(os.environ.get("WORLD_SIZE", "1"))
rank = int(os.environ.get("RANK", "0"))
device = int(os.environ.get("LOCAL_RANK", str(rank))) % torch.cuda.device_count()
if world > torch.cuda.device_count():
    print(f"SKIP: {world} ranks on {torch.cuda.device_count()} GPU(s): NCCL takes one rank per GPU")
    sys.exit(77)

UNDEF = -(2**31)
MAGIC = 0x4C4C4550


class Config(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("magic", ctypes.c_uint), ("version", ctypes.c_uint),
                ("maxTokensPerRank", ctypes.c_int), ("hidden", ctypes.c_int), ("numExperts", ctypes.c_int),
                ("maxTopk", ctypes.c_int), ("transports", ctypes.c_int), ("timeoutMs", ctypes.c_int),
                ("numSms", ctypes.c_int), ("bufferBytes", ctypes.c_size_t)]


lib = ctypes.CDLL(sys.argv[1])
lib.llGetLastError.restype = ctypes.c_char_p
lib.llTestFreeGpuBytes.restype = ctypes.c_size_t
version = ctypes.c_int()
assert lib.llGetVersion(ctypes.byref(version)) == 0


def check(res, what):
    if res != 0:
        print(f"FAIL: {what} returned {res}: {lib.llGetLastError(None).decode()}")
        sys.exit(1)


torch.cuda.set_device(device)
if world == 1:
    dist.init_process_group("nccl", store=dist.HashStore(), rank=0, world_size=1,
                            device_id=torch.device("cuda", device))
else:
    dist.init_process_group("nccl", init_method="env://", rank=rank, world_size=world,
                            device_id=torch.device("cuda", device))
x = torch.ones(4, device="cuda")
dist.all_reduce(x)  # the NCCL communicator exists after the first collective
backend = dist.distributed_c10d._get_default_group()._get_backend(torch.device("cuda"))
nccl_comm = backend._comm_ptr()
assert nccl_comm, "ProcessGroupNCCL has no communicator"


def cycle(n):
    cfg = Config(ctypes.sizeof(Config), MAGIC, version.value, 128, 1024, 8, UNDEF, UNDEF, 30000, UNDEF, 0)
    comm = ctypes.c_void_p()
    check(lib.llCommInitFromNccl(ctypes.byref(comm), ctypes.c_void_p(nccl_comm), ctypes.byref(cfg)),
          "llCommInitFromNccl")
    count, user_rank = ctypes.c_int(), ctypes.c_int()
    check(lib.llCommCount(comm, ctypes.byref(count)), "llCommCount")
    check(lib.llCommUserRank(comm, ctypes.byref(user_rank)), "llCommUserRank")
    assert (count.value, user_rank.value) == (world, rank), (count.value, user_rank.value)
    wrong, missing = ctypes.c_ulonglong(), ctypes.c_uint()
    check(lib.llTestRouteCheck(comm, n, ctypes.byref(wrong), ctypes.byref(missing)), "route check")
    if wrong.value or missing.value:
        print(f"FAIL: cycle {n}: {wrong.value} wrong words, {missing.value} missing signals")
        sys.exit(1)
    check(lib.llCommDestroy(comm), "llCommDestroy")


cycle(0)  # warm-up
start = lib.llTestFreeGpuBytes()
for n in (1, 2, 3):
    cycle(n)
    now = lib.llTestFreeGpuBytes()
    print(f"rank {rank}: cycle {n}: llCommInitFromNccl routes ok, GPU free {now / 2**20:.1f} MiB (start {start / 2**20:.1f})")
    if now != start:
        print(f"FAIL: GPU free memory {now} != {start} at start")
        sys.exit(1)
dist.destroy_process_group()
print(f"rank {rank}: PASS: llCommInitFromNccl with a torch ProcessGroupNCCL communicator of {world} rank(s), 3 cycles")
