// The model's protection domain and the memory its contexts reach (provider.h, "Memory" and "Doorbells"): PDs,
// memory registration, DevX UMEM, UAR pages and the one EQ. A registered region of CUDA device memory is routed
// to the context's CudaMemory of its GPU; everything else is host memory.
#include "transport/ibgda/model/provider_internal.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "transport/ibgda/model/cuda_memory.h"

namespace llnic {
namespace provider_detail {

HostMemory& hostMemory() {
  static HostMemory memory;
  return memory;
}

namespace {

constexpr size_t kUarPageBytes = 4096;
constexpr size_t kBlueFlameOffset = 0x800;  // first BlueFlame register of an mlx5 UAR page

// Where the model reaches a region that a UMEM or MR covers: device memory through this context's
// CudaMemory of its GPU (*route: the hold to release with the region), host memory through the routes'
// fallback (*route 0). cudaDeviceOf runs before the lock is taken: its first call may start this library's
// CUDA runtime, which takes a while, and the watcher needs the lock meanwhile.
bool routeRegion(Context& c, uint64_t addr, uint64_t length, uint64_t* route) {
  *route = 0;
  int device = -1;
  if (!cudaDeviceOf(addr, &device)) return true;
  std::lock_guard<std::mutex> lock(c.mutex);
  std::unique_ptr<CudaMemory>& gpu = c.gpus[device];
  if (!gpu) gpu = std::make_unique<CudaMemory>(device);
  if (c.routes.hold(addr, length, *gpu, route) == Status::kOk) return true;
  std::fprintf(stderr, "llep model: cannot route [0x%llx, +%llu) to GPU %d: it wraps, or overlaps another GPU's\n",
               (unsigned long long)addr, (unsigned long long)length, device);
  return false;
}

// Releases what routeRegion held; a host region (route 0) holds nothing.
void unroute(Context& c, uint64_t route) {
  if (route) c.routes.release(route);
}

// Access rights the model enforces (the ibv_access_flags values of memory.h), plus relaxed ordering, which
// changes nothing in a model that executes in order.
constexpr int kModelAccess =
    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;

}  // namespace

// ---- PD and memory registration ---------------------------------------------------------------------------

// The model has one protection domain; a PD number only has to exist for CREATE_QP.
ibv_pd* allocPd(ibv_context* c) {
  Context* ctx = contextOf(c);
  if (!ctx) return failWith<ibv_pd>(EINVAL);
  std::lock_guard<std::mutex> lock(ctx->mutex);
  auto pd = std::make_unique<ibv_pd>();
  pd->context = c;
  pd->handle = ctx->nextPd++;  // the model keeps the PD number here (mlx5dv_init_obj reads it)
  ibv_pd* out = pd.get();
  ctx->pds[pd->handle] = std::move(pd);
  return out;
}

int deallocPd(ibv_pd* pd) {
  Context* ctx = pd ? contextOf(pd->context) : nullptr;
  if (!ctx) return failCode(EINVAL);
  std::lock_guard<std::mutex> lock(ctx->mutex);
  return ctx->pds.erase(pd->handle) ? 0 : failCode(EINVAL);
}

// The keys are known to no one before this returns, so routing the region after registering it opens no
// window in which a key reaches unrouted device memory.
ibv_mr* regMr(ibv_pd* pd, void* addr, size_t length, int access) {
  Context* ctx = pd ? contextOf(pd->context) : nullptr;
  if (!ctx || (access & ~(kModelAccess | IBV_ACCESS_RELAXED_ORDERING))) return failWith<ibv_mr>(EINVAL);
  MemoryKeys keys;
  if (ctx->nic.pd().registerRegion((uint64_t)(uintptr_t)addr, length, (uint32_t)(access & kModelAccess),
                                   &keys) != Status::kOk)
    return failWith<ibv_mr>(EINVAL);
  uint64_t route = 0;
  if (!routeRegion(*ctx, (uint64_t)(uintptr_t)addr, length, &route)) {
    ctx->nic.pd().deregisterRegion(keys.lkey);
    return failWith<ibv_mr>(EINVAL);
  }
  auto mr = std::make_unique<Mr>(Mr{{pd->context, pd, addr, length, keys.lkey, keys.lkey, keys.rkey}, route});
  std::lock_guard<std::mutex> lock(ctx->mutex);
  ibv_mr* out = &mr->pub;
  ctx->mrs[keys.lkey] = std::move(mr);
  return out;
}

// The model cannot map a dma-buf; callers fall back to regMr, as on rdma-core without dma-buf support.
ibv_mr* regDmabufMr(ibv_pd*, uint64_t, size_t, uint64_t, int, int) { return failWith<ibv_mr>(EOPNOTSUPP); }

// The keys stop working before the memory stops being routed.
int deregMr(ibv_mr* mr) {
  Context* ctx = mr ? contextOf(mr->context) : nullptr;
  if (!ctx || ctx->nic.pd().deregisterRegion(mr->lkey) != Status::kOk) return failCode(EINVAL);
  std::unique_ptr<Mr> record;
  {
    std::lock_guard<std::mutex> lock(ctx->mutex);
    auto it = ctx->mrs.find(mr->lkey);
    record = std::move(it->second);
    ctx->mrs.erase(it);
  }
  unroute(*ctx, record->route);
  return 0;
}

// ---- DevX UMEM, UAR, EQ -----------------------------------------------------------------------------------

mlx5dv_devx_umem* umemReg(ibv_context* c, void* addr, size_t size, uint32_t) {
  Context* ctx = contextOf(c);
  if (!ctx || !addr || size == 0) return failWith<mlx5dv_devx_umem>(EINVAL);
  uint64_t route = 0;
  if (!routeRegion(*ctx, (uint64_t)(uintptr_t)addr, size, &route)) return failWith<mlx5dv_devx_umem>(EINVAL);
  std::lock_guard<std::mutex> lock(ctx->mutex);
  auto u = std::make_unique<Umem>(Umem{{ctx->nextUmem++}, ctx, (uint64_t)(uintptr_t)addr, size, route});
  mlx5dv_devx_umem* out = &u->pub;
  ctx->umems[u->pub.umem_id] = std::move(u);
  return out;
}

int umemDereg(mlx5dv_devx_umem* umem) {
  if (!umem) return failCode(EINVAL);
  Context* ctx = reinterpret_cast<Umem*>(umem)->ctx;
  std::unique_ptr<Umem> record;
  {
    std::lock_guard<std::mutex> lock(ctx->mutex);
    auto it = ctx->umems.find(umem->umem_id);
    if (it == ctx->umems.end()) return failCode(EINVAL);
    record = std::move(it->second);
    ctx->umems.erase(it);
  }
  unroute(*ctx, record->route);
  return 0;
}

// A zeroed host page stands for the UAR page; its first BlueFlame register is the doorbell the model watches.
// BF and NC allocation types give the same page.
mlx5dv_devx_uar* allocUar(ibv_context* c, uint32_t) {
  Context* ctx = contextOf(c);
  if (!ctx) return failWith<mlx5dv_devx_uar>(EINVAL);
  auto uar = std::make_unique<Uar>();
  uar->page.reset(static_cast<uint8_t*>(std::aligned_alloc(kUarPageBytes, kUarPageBytes)));
  if (!uar->page) return failWith<mlx5dv_devx_uar>(ENOMEM);
  std::memset(uar->page.get(), 0, kUarPageBytes);
  uar->ctx = ctx;
  uar->pub.base_addr = uar->page.get();
  uar->pub.reg_addr = uar->page.get() + kBlueFlameOffset;
  std::lock_guard<std::mutex> lock(ctx->mutex);
  uar->pub.page_id = ctx->nextUar++;
  mlx5dv_devx_uar* out = &uar->pub;
  ctx->uars[out->page_id] = std::move(uar);
  return out;
}

void freeUar(mlx5dv_devx_uar* uar) {
  if (!uar) return;
  Context* ctx = reinterpret_cast<Uar*>(uar)->ctx;
  std::lock_guard<std::mutex> lock(ctx->mutex);
  ctx->uars.erase(uar->page_id);
}

int queryEqn(ibv_context* c, uint32_t vector, uint32_t* eqn) {
  if (!contextOf(c) || vector != 0 || !eqn) return failCode(EINVAL);
  *eqn = 0;
  return 0;
}

}  // namespace provider_detail

std::string modelMemoryError(ibv_context* context) {
  provider_detail::Context* ctx = provider_detail::contextOf(context);
  if (!ctx) return std::string();
  std::lock_guard<std::mutex> lock(ctx->mutex);
  for (const auto& [device, gpu] : ctx->gpus)
    if (!gpu->ok()) return gpu->error();
  return std::string();
}

}  // namespace llnic
