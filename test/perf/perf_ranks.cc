#include "test/perf/perf_ranks.h"

#include <cstdlib>
#include <initializer_list>
#include <string>

#include "test/common/file_exchange.h"
#include "test/perf/perf_common.h"

namespace {

// The first of the variables that is set, as an int; fallback if none is.
int envFirst(std::initializer_list<const char*> names, int fallback) {
  for (const char* n : names) {
    const char* v = getenv(n);
    if (v && *v) return atoi(v);
  }
  return fallback;
}

}  // namespace

llPerfRanks llPerfRanksFromEnv(int gpus) {
  llPerfRanks r;
  r.rank = envFirst({"RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"}, 0);
  r.world = envFirst({"WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}, 1);
  r.localRank = envFirst({"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"}, r.rank);
  r.localWorld =
      envFirst({"LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"}, r.world == 1 ? 1 : -1);
  r.gpus = gpus;
  r.device = r.localRank % gpus;
  r.singleHost = r.localWorld == r.world;
  r.ranksOnGpu = 0;
  for (int l = 0; l < r.localWorld; l++) r.ranksOnGpu += l % gpus == r.device;
  if (r.ranksOnGpu == 0) r.ranksOnGpu = 1;  // the launcher did not say: assume a GPU of its own
  r.key = llExchangeRunKey();
  return r;
}

void llPerfPublish(const llPerfRanks& r, const std::string& name, const void* data, size_t bytes) {
  if (!llExchangePublish(r.key, name, r.rank, data, bytes)) llPerfDie("cannot publish %s", name.c_str());
}

bool llPerfFetch(const llPerfRanks& r, const std::string& name, int from, void* data, size_t bytes,
                 int timeoutMs) {
  return llExchangeFetch(r.key, name, from, data, bytes, timeoutMs);
}

void llPerfUnpublish(const llPerfRanks& r, const std::string& name, int from) {
  llExchangeUnpublish(r.key, name, from);
}
