// Host entry points of the device kernels (device/*.cu), called by src/.
#pragma once

#include <cuda_runtime_api.h>

#include "device/kernel_args.h"

cudaError_t llLaunchDispatch(const llDispatchKernelArgs& args, int blocks, cudaStream_t stream);
cudaError_t llLaunchCombine(const llCombineKernelArgs& args, int blocks, cudaStream_t stream);
