#include "test/perf/perf_ranks.h"

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <thread>

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

std::string envOr(const char* name, const char* fallback) {
  const char* v = getenv(name);
  return v && *v ? v : fallback;
}

// FNV-1a: a short, stable name for this run's rendezvous.
std::string hashHex(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  char buf[17];
  snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// Every rank of one run sees the same rendezvous (llrun's unique id, or torchrun's master address),
// and no two concurrent runs do.
std::string runKey() {
  std::string id = envOr("LLEP_UNIQUE_ID", "");
  if (!id.empty()) return hashHex(id);
  std::string port = envOr("MASTER_PORT", "");
  if (port.empty()) return "";
  return hashHex(envOr("MASTER_ADDR", "") + ":" + port + ":" + envOr("TORCHELASTIC_RUN_ID", ""));
}

std::string pathOf(const llPerfRanks& r, const std::string& name, int rank) {
  return envOr("TMPDIR", "/tmp") + "/ll_perf-" + std::to_string(getuid()) + "-" + r.key + "-" + name + "-r" +
         std::to_string(rank);
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
  r.key = runKey();
  return r;
}

void llPerfPublish(const llPerfRanks& r, const std::string& name, const void* data, size_t bytes) {
  std::string path = pathOf(r, name, r.rank), aside = path + ".part";
  FILE* f = fopen(aside.c_str(), "wb");
  if (!f) llPerfDie("cannot write %s", aside.c_str());
  bool ok = fwrite(data, 1, bytes, f) == bytes;
  ok = fclose(f) == 0 && ok;
  if (!ok || rename(aside.c_str(), path.c_str()) != 0) llPerfDie("cannot publish %s", path.c_str());
}

bool llPerfFetch(const llPerfRanks& r, const std::string& name, int from, void* data, size_t bytes,
                 int timeoutMs) {
  std::string path = pathOf(r, name, from);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  while (true) {
    if (FILE* f = fopen(path.c_str(), "rb")) {
      bool ok = fread(data, 1, bytes, f) == bytes;
      fclose(f);
      if (!ok) llPerfDie("%s is shorter than %zu bytes", path.c_str(), bytes);
      return true;
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void llPerfUnpublish(const llPerfRanks& r, const std::string& name, int from) {
  remove(pathOf(r, name, from).c_str());
}
