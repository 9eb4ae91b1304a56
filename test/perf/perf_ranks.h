// Where this process sits among the ranks, read from the launcher's environment (llrun, torchrun,
// mpirun), and how ranks on one host hand each other small blobs through files: the library's bootstrap
// is not public, and the benchmark needs only a few exchanges (CUDA IPC handles for the signal round
// trip, each rank's results for the table).
#pragma once

#include <cstddef>
#include <string>

struct llPerfRanks {
  int rank = 0, world = 1;
  int localRank = 0, localWorld = 1;  // on this host; localWorld < 0 when the launcher does not say
  int gpus = 1, device = 0;           // device = localRank % gpus, as llrun documents
  int ranksOnGpu = 1;                 // local ranks sharing this rank's GPU
  bool singleHost = true;             // every rank runs on this host, so files in /tmp reach them all
  std::string key;                    // names this run's files; empty when the launcher gives none
};

llPerfRanks llPerfRanksFromEnv(int gpus);

// The GPU of a rank on this host (single-host runs only).
inline int llPerfGpuOf(const llPerfRanks& r, int rank) { return rank % r.gpus; }

// Whether ranks can exchange files: one host, and a run key to name them by.
inline bool llPerfCanExchange(const llPerfRanks& r) { return r.singleHost && !r.key.empty(); }

// Publishes this rank's blob under `name`: written aside, then renamed, so a reader never sees half.
void llPerfPublish(const llPerfRanks& r, const std::string& name, const void* data, size_t bytes);
// Reads rank `from`'s blob under `name`, waiting up to timeoutMs for it; false if it never came.
bool llPerfFetch(const llPerfRanks& r, const std::string& name, int from, void* data, size_t bytes,
                 int timeoutMs);
// Removes rank `from`'s blob under `name` (the reader cleans up once it has what it needs).
void llPerfUnpublish(const llPerfRanks& r, const std::string& name, int from);
