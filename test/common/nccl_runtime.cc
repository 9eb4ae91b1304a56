#include "test/common/nccl_runtime.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace {

template <typename Fn>
bool resolve(void* lib, const char* name, Fn* fn, std::string* why) {
  *fn = reinterpret_cast<Fn>(dlsym(lib, name));
  if (*fn == nullptr) *why = std::string("the NCCL library lacks ") + name;
  return *fn != nullptr;
}

bool load(llTestNccl* n, std::string* why) {
  const char* env = getenv("LLEP_NCCL_LIBRARY");
  const char* path = env && *env ? env : "libnccl.so.2";
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    *why = std::string("cannot load ") + path + ": " + dlerror() + " (set LLEP_NCCL_LIBRARY)";
    return false;
  }
  return resolve(lib, "ncclGetUniqueId", &n->getUniqueId, why) &&
         resolve(lib, "ncclCommInitRank", &n->commInitRank, why) &&
         resolve(lib, "ncclCommDestroy", &n->commDestroy, why) && resolve(lib, "ncclGroupStart", &n->groupStart, why) &&
         resolve(lib, "ncclGroupEnd", &n->groupEnd, why) && resolve(lib, "ncclSend", &n->send, why) &&
         resolve(lib, "ncclRecv", &n->recv, why) && resolve(lib, "ncclGetErrorString", &n->getErrorString, why);
}

}  // namespace

const llTestNccl* llTestNcclLoad(std::string* why) {
  static llTestNccl fns;
  static bool ok = false;
  static std::string reason;
  static std::once_flag once;
  std::call_once(once, [] { ok = load(&fns, &reason); });
  if (!ok) *why = reason;
  return ok ? &fns : nullptr;
}
