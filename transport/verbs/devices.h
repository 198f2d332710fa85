// RDMA devices: what is there (sysfs and the verbs queries), which port a rank uses
// (RINGLINK_IB_HCA or the first active port) and which GID addresses it on RoCE
// (RINGLINK_IB_GID_INDEX, else a RoCE v2 IPv4-mapped GID). These run without a communicator
// (tools list devices too), so settings come in as arguments: Options::from_environment()'s.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "ringlink/options.h"
#include "transport/verbs/verbs_api.h"

namespace ringlink::verbs {

struct GidEntry {
  int index = 0;
  std::array<uint8_t, 16> raw{};
  std::string type;    // "IB/RoCE v1", "RoCE v2"; empty when sysfs does not say
  std::string netdev;  // the Ethernet device a RoCE GID belongs to

  bool is_zero() const;
  bool is_ipv4_mapped() const;  // ::ffff:a.b.c.d
  bool is_link_local() const;   // fe80::/10
  bool is_roce_v2() const { return type == "RoCE v2"; }
  std::string text() const;     // as sysfs writes it: "fe80:0000:...:4e5f"
};

struct PortInfo {
  int port = 0;
  std::string state;       // "ACTIVE", "DOWN", "INIT", ...
  bool active = false;
  std::string link_layer;  // "InfiniBand" or "Ethernet"
  int lid = 0;
  std::string rate;        // "100 Gb/sec (4X EDR)"
  int active_mtu = 0;      // bytes; 0 when unknown
  int max_mtu = 0;
  std::vector<GidEntry> gids;  // the non-zero entries

  bool is_ethernet() const { return link_layer == "Ethernet"; }
  const GidEntry* gid(int index) const;
};

struct DeviceInfo {
  std::string name;
  std::string node_guid;
  std::string firmware;
  std::vector<PortInfo> ports;
  const PortInfo* port(int number) const;
};

// Where RDMA devices are listed: `configured` (Options::ib_sysfs_root, RINGLINK_IB_SYSFS_ROOT;
// tests feed a fake tree through it), else "/sys/class/infiniband".
std::string sysfs_root(const std::string& configured);

// A port's signalling rate from its attributes: lanes (active_width) times the per-lane rate of
// its generation (active_speed). Zero lanes or rate when the attributes name neither.
struct PortRate {
  int lanes = 0;
  double gbit_per_lane = 0;
  const char* generation = "";  // "EDR", "HDR", ...
  double gbit() const { return lanes * gbit_per_lane; }
};
PortRate port_rate(const ibv_port_attr& attr);

// "4096", ... for logs and listings; 0 for a value that names no MTU.
int mtu_bytes(ibv_mtu mtu);

// Devices and ports as sysfs describes them (no MTU there).
std::vector<DeviceInfo> scan_sysfs(const std::string& root);

// Devices as the verbs queries describe them, with GID types and rates taken from sysfs under
// `sysfs_root` where it has them. The software verbs describe themselves.
std::vector<DeviceInfo> query_devices(const VerbsApi& api, const std::string& sysfs_root, std::string* why_none);

// RINGLINK_IB_HCA: "name[:port]" items separated by commas ("mlx5_0:1,mlx5_1"); a leading '='
// is accepted and ignored (names always match exactly). Throws std::invalid_argument.
struct HcaSpec {
  std::string device;
  int port = 0;  // 0: the device's first active port
};
std::vector<HcaSpec> parse_hca_list(const std::string& spec);

// A port the transport may use.
struct PortChoice {
  std::string device;
  int port = 0;
  int gid_index = -1;  // -1: addressed by LID only (InfiniBand)
  bool ethernet = false;
};

// The GID a port is addressed by. InfiniBand: `requested`, else -1 (LID addressing).
// Ethernet (RoCE): `requested` when it names a valid entry; else the first RoCE v2 IPv4-mapped
// GID, then RoCE v2 with a global IPv6 address, then RoCE v1. -1 with `why` when none fits.
int pick_gid_index(const PortInfo& port, int requested, std::string* why);

// The usable ports, in order: those RINGLINK_IB_HCA names (that are active), else every active
// port. Empty with `why` when there is none.
std::vector<PortChoice> choose_ports(const std::vector<DeviceInfo>& devices, const std::string& hca_spec,
                                     int gid_index, std::string* why);

// The listing ringlink-devices (and ringlink-bench --list-devices) prints: every HCA and port
// with state, link layer, speed, MTU and GID table; "verbs unavailable: <reason>" when
// libibverbs cannot be loaded or finds no device. Reads the options' ib_hca ("soft" lists the
// software verbs), ib_sysfs_root and ib_verbs_library.
std::string list_devices(const Options& options);

// Whether an active RDMA port exists for the options' ib_hca and ib_gid_index (auto transport
// selection), looking where ib_sysfs_root and ib_verbs_library say; `why` says what was found or
// what is missing.
bool active_port_exists(const Options& options, std::string* why);

}  // namespace ringlink::verbs
