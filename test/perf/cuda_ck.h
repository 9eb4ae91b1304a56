// CK(call): the stand-alone perf tools' check of a CUDA runtime call: print it and exit 1 on an error.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define CK(call)                                                 \
  do {                                                           \
    cudaError_t e = (call);                                      \
    if (e != cudaSuccess) {                                      \
      fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(e)); \
      exit(1);                                                   \
    }                                                            \
  } while (0)
