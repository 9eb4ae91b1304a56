#include "transport/ibgda/device_qps.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <map>
#include <mutex>

#include "checks.h"

namespace {

constexpr size_t kUarPageBytes = 4096;

// cudaMalloc aligns to 256 bytes; rings need `align` (>= 4096), so each block is over-allocated and the
// allocation it came from is remembered for free.
struct GpuRingBlocks {
  std::mutex mutex;
  std::map<void*, void*> base;  // aligned pointer -> cudaMalloc'd pointer
};

GpuRingBlocks& blocks() {
  static GpuRingBlocks b;
  return b;
}

void* gpuAlloc(size_t bytes, size_t align, void*) {
  void* raw = nullptr;
  if (cudaMalloc(&raw, bytes + align) != cudaSuccess) {
    (void)cudaGetLastError();
    LL_WARN("ibgda: cudaMalloc of %zu bytes for rings failed", bytes + align);
    return nullptr;
  }
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(raw) + align - 1) & ~(uintptr_t)(align - 1));
  std::lock_guard<std::mutex> lock(blocks().mutex);
  blocks().base[aligned] = raw;
  return aligned;
}

void gpuFree(void* p, void*) {
  if (p == nullptr) return;
  void* raw = nullptr;
  {
    std::lock_guard<std::mutex> lock(blocks().mutex);
    auto it = blocks().base.find(p);
    if (it == blocks().base.end()) return;
    raw = it->second;
    blocks().base.erase(it);
  }
  if (cudaFree(raw) != cudaSuccess) (void)cudaGetLastError();
}

llResult_t gpuUpload(void* dst, const void* src, size_t bytes, void*) {
  CUDACHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  return llSuccess;
}

const llIbgdaRingAllocator kGpuRings = {gpuAlloc, gpuFree, gpuUpload, nullptr};

}  // namespace

const llIbgdaRingAllocator* llIbgdaGpuRings() { return &kGpuRings; }

llResult_t llIbgdaUploadQps(const llIbgdaEndpoints& ep, llIbgdaDeviceQps* out) {
  *out = llIbgdaDeviceQps{};
  LL_REQUIRE(ep.uar != nullptr && (int)ep.qp.size() == ep.nranks, llInternalError,
             "ibgda: endpoints are not connected");
  // The model's UAR is an ordinary host page; a device's is MMIO, which CUDA maps only as I/O memory.
  bool model = strcmp(ep.v->provider, "model") == 0;
  unsigned flags = cudaHostRegisterMapped | (model ? 0u : cudaHostRegisterIoMemory);
  void* page = ep.uar->base_addr;
  cudaError_t err = cudaHostRegister(page, kUarPageBytes, flags);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    LL_WARN("ibgda: cannot map the UAR page of %s into the GPU: cudaHostRegister: %s%s", ep.v->provider,
            cudaGetErrorString(err), model ? "" : " (a real NIC needs the driver's PeerMappingOverride=1)");
    return llCudaError;
  }
  out->uarHost = page;
  char* devPage = nullptr;
  err = cudaHostGetDevicePointer(reinterpret_cast<void**>(&devPage), page, 0);
  std::vector<LlIbgdaQp> qps(ep.qp);
  if (err == cudaSuccess) {
    uint64_t* bf = reinterpret_cast<uint64_t*>(devPage + (static_cast<char*>(ep.uar->reg_addr) - static_cast<char*>(page)));
    for (LlIbgdaQp& q : qps) q.bf = bf;
    err = cudaMalloc(reinterpret_cast<void**>(&out->qps), qps.size() * sizeof(LlIbgdaQp));
  }
  if (err == cudaSuccess)
    err = cudaMemcpy(out->qps, qps.data(), qps.size() * sizeof(LlIbgdaQp), cudaMemcpyHostToDevice);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    LL_WARN("ibgda: cannot upload the QPs to the GPU: %s", cudaGetErrorString(err));
    llIbgdaFreeQps(out);
    return llCudaError;
  }
  out->count = (int)qps.size();
  return llSuccess;
}

llResult_t llIbgdaFreeQps(llIbgdaDeviceQps* q) {
  llResult_t res = llSuccess;
  if (q->qps && cudaFree(q->qps) != cudaSuccess) {
    (void)cudaGetLastError();
    res = llCudaError;
  }
  if (q->uarHost && cudaHostUnregister(q->uarHost) != cudaSuccess) {
    (void)cudaGetLastError();
    res = llCudaError;
  }
  *q = llIbgdaDeviceQps{};
  return res;
}
