#include "transport/ibgda/nic_choice.h"

#include <cuda_runtime_api.h>

#include "transport/ibgda/model/cuda_memory.h"

#include <cctype>
#include <climits>
#include <cstdlib>

namespace {

constexpr int kUnrelated = 1 << 20;

std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < path.size()) {
    size_t next = path.find('/', at);
    if (next == std::string::npos) next = path.size();
    if (next > at) out.push_back(path.substr(at, next - at));
    at = next + 1;
  }
  return out;
}

}  // namespace

int llPciDistance(const std::string& a, const std::string& b) {
  std::vector<std::string> x = components(a), y = components(b);
  size_t common = 0;
  while (common < x.size() && common < y.size() && x[common] == y[common]) common++;
  // "sys/devices" alone is not a shared PCI ancestor; "sys/devices/pci0000:00" (a root complex) is.
  if (x.empty() || y.empty() || common < 3) return kUnrelated;
  return (int)(x.size() - common + y.size() - common);
}

int llNearestNic(const std::string& gpu, const std::vector<std::string>& nics) {
  int best = 0, bestDistance = INT_MAX;
  for (size_t i = 0; i < nics.size(); i++) {
    int d = llPciDistance(gpu, nics[i]);
    if (d < bestDistance) best = (int)i, bestDistance = d;
  }
  return best;
}

std::string llSysfsDevicePath(const std::string& sysfsPath) {
  if (sysfsPath.empty()) return "";
  char* resolved = realpath(sysfsPath.c_str(), nullptr);
  if (!resolved) return "";
  std::string out = resolved;
  free(resolved);
  return out;
}

std::string llCurrentGpuPciPath() {
  if (!llnic::cudaDriverLoaded()) return "";  // no GPU in use: do not start CUDA to find one
  int dev = -1;
  char busId[32] = "";
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetPCIBusId(busId, sizeof(busId), dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return "";
  }
  std::string id = busId;  // "0000:18:00.0": sysfs spells it in lower case
  for (char& ch : id) ch = (char)tolower((unsigned char)ch);
  return llSysfsDevicePath("/sys/bus/pci/devices/" + id);
}
