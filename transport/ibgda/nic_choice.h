// Which RDMA device serves a GPU: the one closest to it in the PCI tree (same PCIe switch before same root
// port before another socket), the way NCCL and NVSHMEM choose. Paths are sysfs device paths as realpath()
// gives them, e.g. /sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:00.0.
#pragma once

#include <string>
#include <vector>

// Hops from each device up to their closest common ancestor, summed; a large number when either path is
// empty or they share nothing but the root.
int llPciDistance(const std::string& a, const std::string& b);

// The index of the nearest of `nics` to `gpu` (the first among equals), or 0 when none is known to be near.
int llNearestNic(const std::string& gpu, const std::vector<std::string>& nics);

// The realpath of the PCI device behind a sysfs path ("" when it cannot be resolved).
std::string llSysfsDevicePath(const std::string& sysfsPath);

// The sysfs path of the current CUDA device ("" without one).
std::string llCurrentGpuPciPath();
