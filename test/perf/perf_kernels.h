// The benchmark's own kernels (test/perf/perf_kernels.cu): the two the latency floor is made of, and
// the L2 flush by reading.
#pragma once

#include <cuda_runtime_api.h>
#include <stdint.h>

// An empty kernel of one warp: what any call on a stream costs at least, launch and completion.
cudaError_t llPerfLaunchEmpty(cudaStream_t stream);

// One side of a signal ping-pong of `iters` round trips between two ranks. Each side waits on its own
// flag (`ownFlag`, zeroed before the peer may write it) and writes the peer's (`peerFlag`, mapped from
// the peer), with the library's release/acquire primitives. The initiator writes first.
// result (device, 3 words): [0] 0, or 1 if the peer stopped answering within timeoutNs;
// [1] and [2] (initiator) global-timer ns after round trip `skip` and after the last one.
cudaError_t llPerfLaunchPingPong(uint64_t* ownFlag, uint64_t* peerFlag, int iters, int skip, bool initiator,
                                 uint64_t timeoutNs, uint64_t* result, cudaStream_t stream);

// Reads `bytes` (a multiple of 128, 128-byte aligned) of `buffer` through the L2 and writes nothing the
// caller reads: an L2 flush that leaves only clean lines of normal priority behind, so the next kernel
// finds none of its data (evict-last lines included) and its misses evict without writing back.
// `sink` (device, 16 bytes) receives a value only in the impossible case that keeps the loads alive.
cudaError_t llPerfLaunchReadFlush(const void* buffer, size_t bytes, int4* sink, cudaStream_t stream);
