// The verbs table: rdma-core's functions by dlopen/dlvsym, or the software device's.
//
// Symbol versions are those libibverbs.so.1 and libmlx5.so.1 of rdma-core export (objdump -T): every
// libibverbs function llep calls has a default IBVERBS_1.1 version (and a compat IBVERBS_1.0 one that takes
// older structures, which dlsym could pick), _ibv_query_gid_ex (behind the static inline ibv_query_gid_ex)
// appeared at IBVERBS_1.11, ibv_reg_dmabuf_mr at IBVERBS_1.12, mlx5dv_init_obj's
// current version is MLX5_1.2 (MLX5_1.0 is a compat one) and the DevX calls and mlx5dv_open_device are
// MLX5_1.7. dlsym is the fallback for a library built without versions.
#include "transport/ibgda/verbs.h"

#include <dlfcn.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "checks.h"
#include "param.h"
#include "transport/ibgda/model/provider.h"
#include "transport/ibgda/nic_choice.h"

namespace {

// Library names as the runtime packages install them (the unversioned .so comes only with -dev).
constexpr const char* kVerbsLib = "libibverbs.so.1";
constexpr const char* kMlx5Lib = "libmlx5.so.1";

// ibv_query_port's exported symbol takes the older, shorter struct _compat_ibv_port_attr; the static inline
// in verbs.h prefers the context's own query_port op (which takes the size of the caller's struct) and zeroes
// the struct before the fallback. queryPort does the same with the exported symbol found at load time.
using CompatQueryPort = int (*)(ibv_context*, uint8_t, ibv_port_attr*);
CompatQueryPort gCompatQueryPort = nullptr;

int queryPortLikeInline(ibv_context* context, uint8_t portNum, ibv_port_attr* attr) {
  verbs_context* vctx = verbs_get_ctx_op(context, query_port);
  if (vctx) return vctx->query_port(context, portNum, attr, sizeof(*attr));
  std::memset(attr, 0, sizeof(*attr));
  return gCompatQueryPort(context, portNum, attr);
}

// The static inline ibv_query_gid_ex passes the size of the caller's struct to the exported
// _ibv_query_gid_ex; queryGidEx does the same with the symbol found at load time.
using QueryGidExFn = int (*)(ibv_context*, uint32_t, uint32_t, ibv_gid_entry*, uint32_t, size_t);
QueryGidExFn gQueryGidEx = nullptr;

int queryGidExLikeInline(ibv_context* context, uint32_t portNum, uint32_t index, ibv_gid_entry* entry,
                         uint32_t flags) {
  return gQueryGidEx(context, portNum, index, entry, flags, sizeof(*entry));
}

// Finds name@version in lib (dlsym when the library has no such version) and stores it in *fn.
template <typename Fn>
bool bind(void* lib, const char* libName, const char* name, const char* version, Fn* fn) {
  void* p = dlvsym(lib, name, version);
  if (!p) p = dlsym(lib, name);
  *fn = reinterpret_cast<Fn>(p);
  if (!p) LL_WARN("rdma-core: %s has no %s (wanted version %s)", libName, name, version);
  return p != nullptr;
}

void* openLibrary(const char* name) {
  void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  // dlerror() starts with the library's name: "rdma-core not found: libibverbs.so.1: cannot open ...".
  if (!lib) LL_WARN("rdma-core not found: %s", dlerror());
  return lib;
}

bool bindVerbs(void* lib, const char* n, llVerbs* v) {
  const char* k11 = "IBVERBS_1.1";
  bool ok = bind(lib, n, "ibv_get_device_list", k11, &v->getDeviceList) &
            bind(lib, n, "ibv_free_device_list", k11, &v->freeDeviceList) &
            bind(lib, n, "ibv_get_device_name", k11, &v->getDeviceName) &
            bind(lib, n, "ibv_open_device", k11, &v->openDevice) &
            bind(lib, n, "ibv_close_device", k11, &v->closeDevice) &
            bind(lib, n, "ibv_query_port", k11, &gCompatQueryPort) &
            bind(lib, n, "ibv_query_gid", k11, &v->queryGid) &
            bind(lib, n, "ibv_alloc_pd", k11, &v->allocPd) &
            bind(lib, n, "ibv_dealloc_pd", k11, &v->deallocPd) &
            bind(lib, n, "ibv_create_ah", k11, &v->createAh) & bind(lib, n, "ibv_destroy_ah", k11, &v->destroyAh) &
            // The ibv_reg_mr macro calls this symbol for access flags without IBV_ACCESS_OPTIONAL_RANGE.
            bind(lib, n, "ibv_reg_mr", k11, &v->regMr) & bind(lib, n, "ibv_dereg_mr", k11, &v->deregMr);
  v->queryPort = queryPortLikeInline;
  // Optional: older rdma-core lacks them. Callers can register with regMr instead; without GID types only
  // InfiniBand ports can be used.
  v->regDmabufMr =
      reinterpret_cast<decltype(v->regDmabufMr)>(dlvsym(lib, "ibv_reg_dmabuf_mr", "IBVERBS_1.12"));
  gQueryGidEx = reinterpret_cast<QueryGidExFn>(dlvsym(lib, "_ibv_query_gid_ex", "IBVERBS_1.11"));
  v->queryGidEx = gQueryGidEx ? queryGidExLikeInline : nullptr;
  return ok;
}

bool bindMlx5(void* lib, const char* n, llVerbs* v) {
  const char* k17 = "MLX5_1.7";
  return bind(lib, n, "mlx5dv_open_device", k17, &v->mlx5dvOpenDevice) &
         bind(lib, n, "mlx5dv_init_obj", "MLX5_1.2", &v->mlx5dvInitObj) &
         bind(lib, n, "mlx5dv_devx_obj_create", k17, &v->devxObjCreate) &
         bind(lib, n, "mlx5dv_devx_obj_destroy", k17, &v->devxObjDestroy) &
         bind(lib, n, "mlx5dv_devx_obj_modify", k17, &v->devxObjModify) &
         bind(lib, n, "mlx5dv_devx_obj_query", k17, &v->devxObjQuery) &
         bind(lib, n, "mlx5dv_devx_general_cmd", k17, &v->devxGeneralCmd) &
         bind(lib, n, "mlx5dv_devx_umem_reg", k17, &v->devxUmemReg) &
         bind(lib, n, "mlx5dv_devx_umem_dereg", k17, &v->devxUmemDereg) &
         bind(lib, n, "mlx5dv_devx_alloc_uar", k17, &v->devxAllocUar) &
         bind(lib, n, "mlx5dv_devx_free_uar", k17, &v->devxFreeUar) &
         bind(lib, n, "mlx5dv_devx_query_eqn", k17, &v->devxQueryEqn);
}

}  // namespace

llResult_t llVerbsLoadLibraries(const char* verbsLib, const char* mlx5Lib, llVerbs* out) {
  *out = llVerbs{};
  out->provider = "rdma-core";
  void* verbs = openLibrary(verbsLib);
  if (!verbs) return llSystemError;
  void* mlx5 = openLibrary(mlx5Lib);
  if (!mlx5) return llSystemError;
  // Both binders run, so the log names every missing symbol, not only the first.
  bool ok = bindVerbs(verbs, verbsLib, out) & bindMlx5(mlx5, mlx5Lib, out);
  return ok ? llSuccess : llSystemError;
}

llResult_t llVerbsLoad(const llVerbs** out) {
  static std::once_flag once;
  static llResult_t result = llInternalError;
  static llVerbs table;
  static const llVerbs* chosen = nullptr;
  static std::string firstError;
  std::call_once(once, [] {
    const char* device = llParamIbDevice();
    if (std::strcmp(device, "model") == 0) {
      chosen = llModelVerbs();
      result = llSuccess;
      return;
    }
    result = llVerbsLoadLibraries(kVerbsLib, kMlx5Lib, &table);
    if (result == llSuccess)
      chosen = &table;
    else
      firstError = llLastError();
  });
  if (result != llSuccess) {
    // The last error is per thread: every caller gets the first failure's reason again.
    LL_WARN("%s", firstError.c_str());
    return result;
  }
  *out = chosen;
  return llSuccess;
}

llResult_t llVerbsOpenDevx(const llVerbs* v, const char* name, ibv_context** context) {
  int n = 0;
  errno = 0;
  ibv_device** list = v->getDeviceList(&n);
  // rdma-core returns NULL (errno set) when the kernel has no RDMA support at all, an empty list when it has
  // no device.
  if (!list || n == 0) {
    int err = errno;
    if (list) v->freeDeviceList(list);
    LL_WARN("no RDMA device found by %s%s%s", v->provider, list ? "" : ": ", list ? "" : strerror(err));
    return llSystemError;
  }
  ibv_device* device = nullptr;
  if (!name || !*name) {
    // No name: the device nearest the current GPU in the PCI tree (the first when nothing tells them apart).
    std::vector<std::string> paths;
    for (int i = 0; i < n; i++) paths.push_back(llSysfsDevicePath(std::string(list[i]->ibdev_path) + "/device"));
    device = list[llNearestNic(llCurrentGpuPciPath(), paths)];
  }
  for (int i = 0; i < n && !device; i++)
    if (std::strcmp(v->getDeviceName(list[i]), name) == 0) device = list[i];
  if (!device) {
    LL_WARN("no RDMA device named %s among the %d found by %s (first: %s)", name, n, v->provider,
            v->getDeviceName(list[0]));
    v->freeDeviceList(list);
    return llSystemError;
  }
  mlx5dv_context_attr attr{};
  attr.flags = MLX5DV_CONTEXT_FLAGS_DEVX;
  *context = v->mlx5dvOpenDevice(device, &attr);
  if (!*context)
    LL_WARN("mlx5dv_open_device(%s, DEVX) failed: %s", v->getDeviceName(device), strerror(errno));
  v->freeDeviceList(list);  // an open context keeps its device
  return *context ? llSuccess : llSystemError;
}
