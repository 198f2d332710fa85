// Device discovery against a fake /sys/class/infiniband tree: port states, link layers, the GID
// table with RoCE types, the automatic RoCE v2 IPv4-mapped GID choice, RINGLINK_IB_GID_INDEX and
// RINGLINK_IB_HCA. Also the ringlink-devices tool, run as a user would.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "transport/verbs/devices.h"

namespace fs = std::filesystem;
using namespace ringlink::verbs;

namespace {

class FakeSysfs {
 public:
  FakeSysfs() {
    root_ = fs::temp_directory_path() / ("ringlink-sysfs-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    // An InfiniBand HCA.
    device("mlx5_0", "0c42:a103:00f5:6e20", "20.31.1014");
    port("mlx5_0", 1, "4: ACTIVE", "InfiniBand", "0x5", "100 Gb/sec (4X EDR)");
    gid("mlx5_0", 1, 0, "fe80:0000:0000:0000:0c42:a103:00f5:6e20", "IB/RoCE v1", "");
    // A RoCE NIC with the usual table: v1 and v2 of a link-local, an IPv4 and a global IPv6
    // address, then unused (zero) entries.
    device("mlx5_1", "0c42:a103:00f5:6e21", "20.31.1014");
    port("mlx5_1", 1, "4: ACTIVE", "Ethernet", "0x0", "200 Gb/sec (4X HDR)");
    gid("mlx5_1", 1, 0, "fe80:0000:0000:0000:0e42:a1ff:fef5:6e21", "IB/RoCE v1", "ens1f0");
    gid("mlx5_1", 1, 1, "fe80:0000:0000:0000:0e42:a1ff:fef5:6e21", "RoCE v2", "ens1f0");
    gid("mlx5_1", 1, 2, "0000:0000:0000:0000:0000:ffff:c0a8:010a", "IB/RoCE v1", "ens1f0");
    gid("mlx5_1", 1, 3, "0000:0000:0000:0000:0000:ffff:c0a8:010a", "RoCE v2", "ens1f0");
    gid("mlx5_1", 1, 4, "2001:0db8:0000:0000:0000:0000:0000:0001", "RoCE v2", "ens1f0");
    gid("mlx5_1", 1, 5, "0000:0000:0000:0000:0000:0000:0000:0000", "", "");
    // A RoCE NIC with only IPv6.
    device("mlx5_2", "0c42:a103:00f5:6e22", "20.31.1014");
    port("mlx5_2", 1, "4: ACTIVE", "Ethernet", "0x0", "25 Gb/sec (1X EDR)");
    gid("mlx5_2", 1, 0, "fe80:0000:0000:0000:0e42:a1ff:fef5:6e22", "IB/RoCE v1", "ens2");
    gid("mlx5_2", 1, 1, "fe80:0000:0000:0000:0e42:a1ff:fef5:6e22", "RoCE v2", "ens2");
    gid("mlx5_2", 1, 2, "2001:0db8:0000:0000:0000:0000:0000:0022", "RoCE v2", "ens2");
    // An HCA whose cable is out.
    device("mlx5_3", "0c42:a103:00f5:6e23", "20.31.1014");
    port("mlx5_3", 1, "1: DOWN", "InfiniBand", "0xffff", "10 Gb/sec (4X SDR)");
  }
  ~FakeSysfs() { fs::remove_all(root_); }
  std::string root() const { return root_.string(); }

 private:
  void write(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text << "\n";
  }
  void device(const std::string& d, const std::string& guid, const std::string& fw) {
    write(root_ / d / "node_guid", guid);
    write(root_ / d / "fw_ver", fw);
  }
  void port(const std::string& d, int p, const std::string& state, const std::string& link, const std::string& lid,
            const std::string& rate) {
    fs::path base = root_ / d / "ports" / std::to_string(p);
    write(base / "state", state);
    write(base / "link_layer", link);
    write(base / "lid", lid);
    write(base / "rate", rate);
  }
  void gid(const std::string& d, int p, int i, const std::string& value, const std::string& type,
           const std::string& ndev) {
    fs::path base = root_ / d / "ports" / std::to_string(p);
    write(base / "gids" / std::to_string(i), value);
    if (!type.empty()) write(base / "gid_attrs" / "types" / std::to_string(i), type);
    if (!ndev.empty()) write(base / "gid_attrs" / "ndevs" / std::to_string(i), ndev);
  }
  fs::path root_;
};

TEST(Devices, ScanReadsPortsAndGidTypes) {
  FakeSysfs sys;
  auto devices = scan_sysfs(sys.root());
  ASSERT_EQ(devices.size(), 4u);
  EXPECT_EQ(devices[0].name, "mlx5_0");
  const PortInfo* ib = devices[0].port(1);
  ASSERT_TRUE(ib);
  EXPECT_TRUE(ib->active);
  EXPECT_EQ(ib->link_layer, "InfiniBand");
  EXPECT_EQ(ib->lid, 5);
  EXPECT_EQ(ib->rate, "100 Gb/sec (4X EDR)");
  const PortInfo* roce = devices[1].port(1);
  ASSERT_TRUE(roce);
  EXPECT_TRUE(roce->is_ethernet());
  ASSERT_EQ(roce->gids.size(), 5u) << "the zero entry is not a GID";
  EXPECT_EQ(roce->gid(3)->type, "RoCE v2");
  EXPECT_TRUE(roce->gid(3)->is_ipv4_mapped());
  EXPECT_EQ(roce->gid(3)->netdev, "ens1f0");
  EXPECT_EQ(roce->gid(3)->text(), "0000:0000:0000:0000:0000:ffff:c0a8:010a");
  EXPECT_FALSE(devices[3].port(1)->active);
  EXPECT_EQ(devices[3].port(1)->state, "DOWN");
}

TEST(Devices, RoceAutoPicksTheV2Ipv4MappedGid) {
  FakeSysfs sys;
  auto devices = scan_sysfs(sys.root());
  std::string why;
  EXPECT_EQ(pick_gid_index(*devices[1].port(1), -1, &why), 3);
  // Without IPv4, a global RoCE v2 address wins over link-local and v1 entries.
  EXPECT_EQ(pick_gid_index(*devices[2].port(1), -1, &why), 2);
  // InfiniBand is addressed by LID.
  EXPECT_EQ(pick_gid_index(*devices[0].port(1), -1, &why), -1);
}

TEST(Devices, GidIndexOptionIsHonouredOrRefused) {
  FakeSysfs sys;
  auto devices = scan_sysfs(sys.root());
  std::string why;
  EXPECT_EQ(pick_gid_index(*devices[1].port(1), 1, &why), 1);
  EXPECT_EQ(pick_gid_index(*devices[1].port(1), 5, &why), -1) << "entry 5 is empty";
  EXPECT_NE(why.find("RINGLINK_IB_GID_INDEX=5"), std::string::npos) << why;
  auto chosen = choose_ports(devices, "mlx5_1", 1, &why);
  ASSERT_EQ(chosen.size(), 1u);
  EXPECT_EQ(chosen[0].gid_index, 1);
}

TEST(Devices, HcaListSelectsPorts) {
  FakeSysfs sys;
  auto devices = scan_sysfs(sys.root());
  std::string why;
  auto all = choose_ports(devices, "", -1, &why);
  ASSERT_EQ(all.size(), 3u) << "every active port, the DOWN one left out";
  EXPECT_EQ(all[0].device, "mlx5_0");
  EXPECT_EQ(all[0].gid_index, -1);
  EXPECT_EQ(all[1].device, "mlx5_1");
  EXPECT_EQ(all[1].gid_index, 3);
  EXPECT_TRUE(all[1].ethernet);

  auto two = choose_ports(devices, "=mlx5_2:1, mlx5_0", -1, &why);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].device, "mlx5_2");
  EXPECT_EQ(two[1].device, "mlx5_0");

  auto none = choose_ports(devices, "mlx5_3", -1, &why);
  EXPECT_TRUE(none.empty());
  EXPECT_NE(why.find("mlx5_3:1 is DOWN"), std::string::npos) << why;
  none = choose_ports(devices, "mlx5_9:1", -1, &why);
  EXPECT_NE(why.find("no device named mlx5_9"), std::string::npos) << why;
  none = choose_ports(devices, "mlx5_0:2", -1, &why);
  EXPECT_NE(why.find("has no port 2"), std::string::npos) << why;
}

TEST(Devices, HcaListSyntax) {
  auto specs = parse_hca_list("mlx5_0:1,mlx5_1");
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(specs[0].device, "mlx5_0");
  EXPECT_EQ(specs[0].port, 1);
  EXPECT_EQ(specs[1].port, 0);
  EXPECT_TRUE(parse_hca_list("").empty());
  EXPECT_THROW(parse_hca_list("mlx5_0:x"), std::invalid_argument);
  EXPECT_THROW(parse_hca_list(":1"), std::invalid_argument);
}

TEST(Devices, SoftDeviceListsItself) {
  ringlink::Options soft;
  soft.ib_hca = "soft";
  std::string text = list_devices(soft);
  EXPECT_NE(text.find("not RDMA"), std::string::npos) << text;
  EXPECT_NE(text.find("port 1: ACTIVE, InfiniBand"), std::string::npos) << text;
  std::string why;
  EXPECT_TRUE(active_port_exists(soft, &why));
}

std::string run_tool(const std::string& env) {
  const char* tool = std::getenv("RINGLINK_DEVICES_TOOL");
  if (!tool) return "";
  std::string cmd = env + " " + tool + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  if (p) ::pclose(p);
  return out;
}

TEST(DevicesTool, SaysWhyVerbsAreUnavailable) {
  if (!std::getenv("RINGLINK_DEVICES_TOOL")) GTEST_SKIP() << "RINGLINK_DEVICES_TOOL not set (run through meson test)";
  std::string out = run_tool("RINGLINK_IB_HCA= RINGLINK_IBVERBS_LIB=/nonexistent/libibverbs.so.1");
  EXPECT_EQ(out.rfind("verbs unavailable: ", 0), 0u) << out;
  EXPECT_NE(out.find("/nonexistent/libibverbs.so.1"), std::string::npos) << out;
}

TEST(DevicesTool, ListsAFakeTreeWhenLibibverbsIsMissing) {
  if (!std::getenv("RINGLINK_DEVICES_TOOL")) GTEST_SKIP() << "RINGLINK_DEVICES_TOOL not set (run through meson test)";
  FakeSysfs sys;
  std::string out =
      run_tool("RINGLINK_IB_HCA= RINGLINK_IBVERBS_LIB=/nonexistent/libibverbs.so.1 RINGLINK_IB_SYSFS_ROOT=" + sys.root());
  EXPECT_NE(out.find("mlx5_1"), std::string::npos) << out;
  EXPECT_NE(out.find("GID 3   0000:0000:0000:0000:0000:ffff:c0a8:010a  RoCE v2 (IPv4)  ens1f0"), std::string::npos) << out;
  EXPECT_NE(out.find("port 1: DOWN"), std::string::npos) << out;
}

TEST(DevicesTool, ListsTheSoftDevice) {
  if (!std::getenv("RINGLINK_DEVICES_TOOL")) GTEST_SKIP() << "RINGLINK_DEVICES_TOOL not set (run through meson test)";
  std::string out = run_tool("RINGLINK_IB_HCA=soft");
  EXPECT_NE(out.find("soft"), std::string::npos) << out;
  EXPECT_NE(out.find("LID 0x"), std::string::npos) << out;
}

}  // namespace
