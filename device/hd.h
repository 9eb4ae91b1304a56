// LL_HD marks functions shared by host and device code: __host__ __device__ under nvcc, nothing under
// a host compiler, so one definition serves kernels, host code and CPU tests.
#pragma once

#ifdef __CUDACC__
#define LL_HD __host__ __device__
#else
#define LL_HD
#endif
