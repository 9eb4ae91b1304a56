#include "bootstrap/nccl_wrap.h"

#include <dlfcn.h>

#include <mutex>

#include "checks.h"
#include "param.h"

namespace {

llNcclFns gFns;
llResult_t gLoadResult = llInternalError;

// A handle to look symbols up in, and where it came from (for the log).
void* findLibrary(const char** from) {
  const char* path = llParamNcclLibrary();
  if (path[0] != '\0') {
    *from = path;
    void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) LL_WARN("LLEP_NCCL_LIBRARY=%s cannot be loaded: %s", path, dlerror());
    return h;
  }
  // The framework's NCCL, if its symbols are global in the process...
  if (dlsym(RTLD_DEFAULT, "ncclAllGather") != nullptr) {
    *from = "the process (already loaded)";
    return RTLD_DEFAULT;
  }
  // ...or loaded privately by soname (PyTorch loads it with RTLD_LOCAL)...
  if (void* h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_NOLOAD)) {
    *from = "libnccl.so.2 (already loaded)";
    return h;
  }
  // ...or a fresh copy from the library path.
  *from = "libnccl.so.2";
  void* h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) LL_WARN("NCCL not found: not loaded in the process and libnccl.so.2: %s (set LLEP_NCCL_LIBRARY)", dlerror());
  return h;
}

template <typename Fn>
bool resolve(void* lib, const char* name, Fn* fn) {
  *fn = reinterpret_cast<Fn>(dlsym(lib, name));
  if (*fn == nullptr) LL_WARN("NCCL library lacks %s", name);
  return *fn != nullptr;
}

llResult_t load() {
  const char* from = "";
  void* lib = findLibrary(&from);
  if (lib == nullptr) return llSystemError;
  bool ok = resolve(lib, "ncclCommCount", &gFns.commCount) && resolve(lib, "ncclCommUserRank", &gFns.commUserRank) &&
            resolve(lib, "ncclCommCuDevice", &gFns.commCuDevice) && resolve(lib, "ncclAllGather", &gFns.allGather) &&
            resolve(lib, "ncclBroadcast", &gFns.broadcast) && resolve(lib, "ncclGetErrorString", &gFns.getErrorString);
  if (!ok) return llSystemError;
  LL_INFO(LL_INIT | LL_BOOTSTRAP, "NCCL resolved from %s", from);
  return llSuccess;
}

}  // namespace

llResult_t llNcclLoad(const llNcclFns** out) {
  static std::once_flag once;
  std::call_once(once, [] { gLoadResult = load(); });
  if (gLoadResult != llSuccess) {
    LL_WARN("NCCL is not available, so llCommInitFromNccl cannot run (set LLEP_NCCL_LIBRARY to libnccl.so.2)");
    return gLoadResult;
  }
  *out = &gFns;
  return llSuccess;
}
