"""libllep.so exports only the C API: every defined dynamic symbol is an ll* function."""
import re
import subprocess
import sys

lib = sys.argv[1]
out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True, capture_output=True, text=True).stdout
names = [line.split()[-1] for line in out.splitlines() if line.strip()]
bad = [n for n in names if not re.match(r"^ll[A-Z]\w*(@@?\w+)?$", n)]
api = [n for n in names if n not in bad]
print(f"{len(api)} API symbols: {' '.join(sorted(api))}")
if bad:
    print(f"FAIL: {len(bad)} symbols outside the API: {' '.join(sorted(bad)[:20])}")
    sys.exit(1)
required = {"llGetVersion", "llGetErrorString", "llGetLastError", "llGetUniqueId", "llCommInitRank",
            "llCommInitFromNccl", "llCommInitFromEnv", "llCommDestroy", "llCommGetAsyncError",
            "llCommCount", "llCommUserRank", "llGetBufferSizeHint"}
missing = required - set(api)
if missing:
    print(f"FAIL: missing API symbols: {' '.join(sorted(missing))}")
    sys.exit(1)
