// Choosing the RDMA device nearest a GPU by their sysfs PCI paths (transport/ibgda/nic_choice.h).
#include <string>
#include <vector>

#include "harness.h"
#include "transport/ibgda/nic_choice.h"

namespace {

const std::string kRoot0 = "/sys/devices/pci0000:00";
const std::string kRoot1 = "/sys/devices/pci0000:80";
// A GPU and a NIC behind the same PCIe switch (0000:02:00.0's downstream ports).
const std::string kGpu = kRoot0 + "/0000:00:01.0/0000:01:00.0/0000:02:00.0/0000:03:00.0";
const std::string kNicSameSwitch = kRoot0 + "/0000:00:01.0/0000:01:00.0/0000:02:04.0/0000:05:00.0";
const std::string kNicSameRoot = kRoot0 + "/0000:00:02.0/0000:10:00.0";
const std::string kNicOtherSocket = kRoot1 + "/0000:80:01.0/0000:81:00.0";

}  // namespace

LL_TEST(distance_counts_hops_to_common_ancestor) {
  EXPECT_EQ(llPciDistance(kGpu, kGpu), 0);
  EXPECT_EQ(llPciDistance(kGpu, kNicSameSwitch), 4);  // two up to 0000:01:00.0's bus, two down
  EXPECT_EQ(llPciDistance(kGpu, kNicSameRoot), 6);
  EXPECT(llPciDistance(kGpu, kNicOtherSocket) > llPciDistance(kGpu, kNicSameRoot));
  EXPECT(llPciDistance("", kGpu) > 1000);
}

LL_TEST(nearest_prefers_same_switch_then_root) {
  EXPECT_EQ(llNearestNic(kGpu, {kNicOtherSocket, kNicSameRoot, kNicSameSwitch}), 2);
  EXPECT_EQ(llNearestNic(kGpu, {kNicOtherSocket, kNicSameRoot}), 1);
}

LL_TEST(unknown_paths_pick_the_first) {
  // The software device and hosts without sysfs give empty paths: list order decides.
  EXPECT_EQ(llNearestNic(kGpu, {"", ""}), 0);
  EXPECT_EQ(llNearestNic("", {kNicSameSwitch, kNicSameRoot}), 0);
  EXPECT_EQ(llNearestNic(kGpu, {}), 0);
}

LL_TEST(sysfs_path_resolves_or_is_empty) {
  EXPECT_EQ(llSysfsDevicePath("/nonexistent/llep/device"), std::string());
  EXPECT_EQ(llSysfsDevicePath(""), std::string());
  EXPECT_EQ(llSysfsDevicePath("/"), std::string("/"));
}

LL_TEST_MAIN()
