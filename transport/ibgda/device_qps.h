// What a kernel needs to post to the QPs of llIbgdaConnect: rings and doorbell records in GPU memory (the
// ring allocator below), the UAR page mapped into the GPU's address space, and the QP structs of
// ibgda_qp.h copied to GPU memory with their BlueFlame pointer rewritten to that mapping.
#pragma once

#include <vector>

#include "transport/ibgda/setup.h"

// cudaMalloc'd rings (aligned inside a larger allocation), uploaded with cudaMemcpy. The current device at
// llIbgdaConnect time is the one that holds them.
const llIbgdaRingAllocator* llIbgdaGpuRings();

struct llIbgdaDeviceQps {
  LlIbgdaQp* qps = nullptr;  // GPU memory: one per peer rank, indexed by rank
  int count = 0;
  void* uarHost = nullptr;   // the UAR page as registered with cudaHostRegister (nullptr: not registered)
};

// Registers the UAR page with CUDA (cudaHostRegisterIoMemory for a real device's MMIO page, plain mapped
// registration for the model's host page) and uploads ep's QPs with bf pointing at the page's device
// mapping. On failure nothing stays registered or allocated.
llResult_t llIbgdaUploadQps(const llIbgdaEndpoints& ep, llIbgdaDeviceQps* out);

// Frees what llIbgdaUploadQps made; kernels posting to the QPs must have finished. Idempotent.
llResult_t llIbgdaFreeQps(llIbgdaDeviceQps* qps);
