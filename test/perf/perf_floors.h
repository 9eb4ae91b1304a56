// Physical floors, measured in the same run as the table (DESIGN.md, "Performance"): what no
// implementation of a row could beat on this machine.
//
// Bandwidth: a row must move its bytes through HBM at least once (each input byte read once, each
// output byte written once; see llPerfTraffic), and, between GPUs, over the link at least once.
//   HBM floor  = ranks on the GPU x hbmBytes / copy rate  (the ranks sharing a GPU share its HBM)
//   link floor = ranks on the GPU x linkBytes / peer rate (the GPU's ranks share its link)
// Latency: a call costs at least an empty kernel, and a call that needs its peers at least one signal
// hop (half the measured round trip):
//   dispatch, combine:  callUs     + roundTrip / 2
//   step (events):      stepUs     + roundTrip     (two calls, each waiting once)
//   step (wall clock):  stepHostUs + roundTrip
// Floor of a row = max(bandwidth floors, latency floor): each alone is a lower bound, so their max is.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "test/perf/perf_ranks.h"

struct llPerfFloors {
  // HBM: cudaMemcpyAsync device to device of 1 GiB, bytes read + written per second (GB/s).
  double copyGBps = 0;
  // GPU to GPU: cudaMemcpyPeerAsync of 256 MiB from this GPU to the next one, bytes per second; 0: n/a.
  double peerGBps = 0;
  std::string peerNote;
  // Events around one empty kernel, the stream kept busy ahead of it (as in the dispatch and combine
  // loops, where the L2 flush runs while the host enqueues).
  double callUs = 0;
  // An idle stream, then events and wall clock around two empty kernels and a stream synchronize
  // (as in the step loop): launched one by one, or as one CUDA graph when the run uses graphs.
  double stepUs = 0, stepHostUs = 0;
  // Signal round trip between ranks 0 and 1 through flags in each other's memory; < 0: n/a.
  double roundTripUs = -1;
  std::string roundTripNote;
};

// Rank 0 measures everything, rank 1 joins the round trip, other ranks return at once. Called before
// the communicator exists, so no other work of this run shares the GPUs (the other ranks wait in the
// bootstrap, which holds no GPU work).
llPerfFloors llPerfMeasureFloors(const llPerfRanks& ranks, bool graph, cudaStream_t stream);

// Bytes one rank's call must move: through its GPU's HBM, and over the link to other GPUs.
struct llPerfTraffic {
  double hbmBytes = 0, linkBytes = 0;
};

enum class llPerfLatency { kCall, kStep, kStepHost };

// The floor (us) of a row as the header comment says.
double llPerfFloorUs(const llPerfFloors& f, const llPerfRanks& r, const llPerfTraffic& t,
                     llPerfLatency kind);
