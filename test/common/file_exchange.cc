#include "test/common/file_exchange.h"

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace {

std::string envOr(const char* name, const char* fallback) {
  const char* v = getenv(name);
  return v && *v ? v : fallback;
}

// FNV-1a: a short, stable name for a run's rendezvous.
std::string hashHex(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  char buf[17];
  snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string pathOf(const std::string& key, const std::string& name, int rank) {
  return envOr("TMPDIR", "/tmp") + "/llep-xchg-" + std::to_string(getuid()) + "-" + key + "-" + name + "-r" +
         std::to_string(rank);
}

}  // namespace

std::string llExchangeRunKey() {
  std::string id = envOr("LLEP_UNIQUE_ID", "");
  if (!id.empty()) return hashHex(id);
  std::string port = envOr("MASTER_PORT", "");
  if (port.empty()) return "";
  return hashHex(envOr("MASTER_ADDR", "") + ":" + port + ":" + envOr("TORCHELASTIC_RUN_ID", ""));
}

bool llExchangePublish(const std::string& key, const std::string& name, int rank, const void* data, size_t bytes) {
  std::string path = pathOf(key, name, rank), aside = path + ".part";
  FILE* f = fopen(aside.c_str(), "wb");
  if (!f) return false;
  bool ok = fwrite(data, 1, bytes, f) == bytes;
  ok = fclose(f) == 0 && ok;
  return ok && rename(aside.c_str(), path.c_str()) == 0;
}

bool llExchangeFetch(const std::string& key, const std::string& name, int from, void* data, size_t bytes,
                     int timeoutMs) {
  std::string path = pathOf(key, name, from);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  while (true) {
    if (FILE* f = fopen(path.c_str(), "rb")) {
      bool ok = fread(data, 1, bytes, f) == bytes;
      fclose(f);
      return ok;
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void llExchangeUnpublish(const std::string& key, const std::string& name, int from) {
  remove(pathOf(key, name, from).c_str());
}
