#include "transport/verbs/devices.h"

#include <endian.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>

namespace ringlink::verbs {
namespace fs = std::filesystem;
namespace {

std::string read_line(const fs::path& p) {
  std::ifstream in(p);
  std::string s;
  if (!in || !std::getline(in, s)) return {};
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// The number a sysfs entry is named by (ports/1, gids/3); false for any other name.
bool entry_number(const fs::directory_entry& e, int& number) {
  try {
    number = std::stoi(e.path().filename().string());
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// "4: ACTIVE" -> "ACTIVE"
std::string after_colon(const std::string& s) {
  auto c = s.find(": ");
  return c == std::string::npos ? s : s.substr(c + 2);
}

bool parse_gid(const std::string& text, std::array<uint8_t, 16>& raw) {
  size_t pos = 0;
  for (int group = 0; group < 8; ++group) {
    if (pos + 4 > text.size()) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      char ch = text[pos + static_cast<size_t>(i)];
      int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
      if (d < 0) return false;
      v = v * 16 + static_cast<unsigned>(d);
    }
    raw[static_cast<size_t>(group) * 2] = static_cast<uint8_t>(v >> 8);
    raw[static_cast<size_t>(group) * 2 + 1] = static_cast<uint8_t>(v);
    pos += 4;
    if (group < 7) {
      if (pos >= text.size() || text[pos] != ':') return false;
      ++pos;
    }
  }
  return true;
}

std::string state_name(ibv_port_state s) {
  switch (s) {
    case IBV_PORT_NOP: return "NOP";
    case IBV_PORT_DOWN: return "DOWN";
    case IBV_PORT_INIT: return "INIT";
    case IBV_PORT_ARMED: return "ARMED";
    case IBV_PORT_ACTIVE: return "ACTIVE";
    case IBV_PORT_ACTIVE_DEFER: return "ACTIVE_DEFER";
  }
  return "UNKNOWN";
}

// Link speed from the port attributes, for devices whose sysfs has no rate file.
std::string rate_from_attr(const ibv_port_attr& a) {
  const PortRate r = port_rate(a);
  if (r.gbit() == 0) return {};
  return fmt::format("{:g} Gb/sec ({}X {})", r.gbit(), r.lanes, r.generation);
}

void add_sysfs_gid_details(const std::string& root, const std::string& device, PortInfo& port) {
  if (root.empty()) return;
  fs::path base = fs::path(root) / device / "ports" / std::to_string(port.port);
  if (port.rate.empty()) port.rate = read_line(base / "rate");
  for (auto& g : port.gids) {
    g.type = read_line(base / "gid_attrs" / "types" / std::to_string(g.index));
    g.netdev = read_line(base / "gid_attrs" / "ndevs" / std::to_string(g.index));
  }
}

std::string format_devices(const std::vector<DeviceInfo>& devices) {
  std::string out;
  for (const auto& d : devices) {
    out += d.name;
    std::vector<std::string> extra;
    if (!d.node_guid.empty()) extra.push_back("node GUID " + d.node_guid);
    if (!d.firmware.empty()) extra.push_back("firmware " + d.firmware);
    if (!extra.empty()) out += fmt::format("  ({})", fmt::join(extra, ", "));
    out += "\n";
    if (d.ports.empty()) out += "  no ports\n";
    for (const auto& p : d.ports) {
      std::string mtu = p.active_mtu ? fmt::format("MTU {}", p.active_mtu) : std::string("MTU unknown");
      if (p.active_mtu && p.max_mtu && p.max_mtu != p.active_mtu) mtu += fmt::format(" (max {})", p.max_mtu);
      out += fmt::format("  port {}: {}, {}, LID {:#x}, {}, {}\n", p.port, p.state.empty() ? "UNKNOWN" : p.state,
                         p.link_layer.empty() ? "unknown link layer" : p.link_layer, p.lid,
                         p.rate.empty() ? "speed unknown" : p.rate, mtu);
      if (p.gids.empty()) out += "    no GID\n";
      for (const auto& g : p.gids) {
        std::string kind = g.type.empty() ? std::string() : "  " + g.type;
        if (g.is_roce_v2() && g.is_ipv4_mapped()) kind += " (IPv4)";
        std::string dev = g.netdev.empty() ? std::string() : "  " + g.netdev;
        out += fmt::format("    GID {:<3} {}{}{}\n", g.index, g.text(), kind, dev);
      }
    }
  }
  return out;
}

}  // namespace

bool GidEntry::is_zero() const {
  return std::all_of(raw.begin(), raw.end(), [](uint8_t b) { return b == 0; });
}

bool GidEntry::is_ipv4_mapped() const {
  for (int i = 0; i < 10; ++i)
    if (raw[static_cast<size_t>(i)] != 0) return false;
  return raw[10] == 0xff && raw[11] == 0xff;
}

bool GidEntry::is_link_local() const { return raw[0] == 0xfe && (raw[1] & 0xc0) == 0x80; }

std::string GidEntry::text() const {
  std::string s;
  for (size_t i = 0; i < 16; i += 2) {
    if (i) s += ':';
    s += fmt::format("{:02x}{:02x}", raw[i], raw[i + 1]);
  }
  return s;
}

const GidEntry* PortInfo::gid(int index) const {
  for (const auto& g : gids)
    if (g.index == index) return &g;
  return nullptr;
}

const PortInfo* DeviceInfo::port(int number) const {
  for (const auto& p : ports)
    if (p.port == number) return &p;
  return nullptr;
}

std::string sysfs_root(const std::string& configured) {
  return configured.empty() ? "/sys/class/infiniband" : configured;
}

PortRate port_rate(const ibv_port_attr& a) {
  PortRate r;
  // IBTA active_width codes: 1X, 4X, 8X, 12X, 2X.
  switch (a.active_width) {
    case 1: r.lanes = 1; break;
    case 2: r.lanes = 4; break;
    case 4: r.lanes = 8; break;
    case 8: r.lanes = 12; break;
    case 16: r.lanes = 2; break;
    default: break;
  }
  switch (a.active_speed) {
    case 1: r.gbit_per_lane = 2.5, r.generation = "SDR"; break;
    case 2: r.gbit_per_lane = 5, r.generation = "DDR"; break;
    case 4: r.gbit_per_lane = 10, r.generation = "QDR"; break;
    case 8: r.gbit_per_lane = 10, r.generation = "FDR10"; break;
    case 16: r.gbit_per_lane = 14, r.generation = "FDR"; break;
    case 32: r.gbit_per_lane = 25, r.generation = "EDR"; break;
    case 64: r.gbit_per_lane = 50, r.generation = "HDR"; break;
    case 128: r.gbit_per_lane = 100, r.generation = "NDR"; break;
    default: break;
  }
  return r;
}

int mtu_bytes(ibv_mtu mtu) {
  switch (mtu) {
    case IBV_MTU_256: return 256;
    case IBV_MTU_512: return 512;
    case IBV_MTU_1024: return 1024;
    case IBV_MTU_2048: return 2048;
    case IBV_MTU_4096: return 4096;
  }
  return 0;
}

std::vector<DeviceInfo> scan_sysfs(const std::string& root) {
  std::vector<DeviceInfo> out;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& dev : fs::directory_iterator(root, ec)) {
    DeviceInfo d;
    d.name = dev.path().filename().string();
    d.node_guid = read_line(dev.path() / "node_guid");
    d.firmware = read_line(dev.path() / "fw_ver");
    std::error_code pec;
    for (const auto& port_dir : fs::directory_iterator(dev.path() / "ports", pec)) {
      PortInfo p;
      if (!entry_number(port_dir, p.port)) continue;
      p.state = after_colon(read_line(port_dir.path() / "state"));
      p.active = p.state == "ACTIVE";
      p.link_layer = read_line(port_dir.path() / "link_layer");
      std::string lid = read_line(port_dir.path() / "lid");
      if (!lid.empty()) p.lid = static_cast<int>(std::strtol(lid.c_str(), nullptr, 0));
      p.rate = read_line(port_dir.path() / "rate");
      std::error_code gec;
      for (const auto& gid_file : fs::directory_iterator(port_dir.path() / "gids", gec)) {
        GidEntry g;
        if (!entry_number(gid_file, g.index)) continue;
        if (!parse_gid(read_line(gid_file.path()), g.raw) || g.is_zero()) continue;
        p.gids.push_back(g);
      }
      std::sort(p.gids.begin(), p.gids.end(), [](const GidEntry& a, const GidEntry& b) { return a.index < b.index; });
      add_sysfs_gid_details(root, d.name, p);
      d.ports.push_back(std::move(p));
    }
    std::sort(d.ports.begin(), d.ports.end(), [](const PortInfo& a, const PortInfo& b) { return a.port < b.port; });
    out.push_back(std::move(d));
  }
  std::sort(out.begin(), out.end(), [](const DeviceInfo& a, const DeviceInfo& b) { return a.name < b.name; });
  return out;
}

std::vector<DeviceInfo> query_devices(const VerbsApi& api, const std::string& sysfs_root, std::string* why_none) {
  std::vector<DeviceInfo> out;
  int n = 0;
  ibv_device** list = api.get_device_list(&n);
  if (!list || n == 0) {
    if (why_none) {
      if (list || errno == ENOSYS || errno == ENODEV)
        *why_none = "no RDMA device was found";  // ENOSYS: the kernel exposes no RDMA device at all
      else
        *why_none = fmt::format("listing RDMA devices failed ({})", std::strerror(errno));
    }
    if (list) api.free_device_list(list);
    return out;
  }
  std::vector<std::string> unopened;
  for (int i = 0; i < n; ++i) {
    DeviceInfo d;
    d.name = api.get_device_name(list[i]);
    ibv_context* ctx = api.open_device(list[i]);
    if (!ctx) {
      unopened.push_back(fmt::format("{} ({})", d.name, std::strerror(errno)));
      continue;
    }
    ibv_device_attr attr{};
    if (api.query_device(ctx, &attr) == 0) {
      d.firmware = attr.fw_ver;
      uint64_t guid = be64toh(attr.node_guid);
      d.node_guid = fmt::format("{:04x}:{:04x}:{:04x}:{:04x}", (guid >> 48) & 0xffff, (guid >> 32) & 0xffff,
                                (guid >> 16) & 0xffff, guid & 0xffff);
      for (int port = 1; port <= attr.phys_port_cnt; ++port) {
        ibv_port_attr pa{};
        if (api.query_port(ctx, static_cast<uint8_t>(port), &pa) != 0) continue;
        PortInfo p;
        p.port = port;
        p.state = state_name(pa.state);
        p.active = pa.state == IBV_PORT_ACTIVE;
        p.link_layer = pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet" : "InfiniBand";
        p.lid = pa.lid;
        p.active_mtu = mtu_bytes(pa.active_mtu);
        p.max_mtu = mtu_bytes(pa.max_mtu);
        for (int gi = 0; gi < pa.gid_tbl_len; ++gi) {
          ibv_gid gid{};
          if (api.query_gid(ctx, static_cast<uint8_t>(port), gi, &gid) != 0) continue;
          GidEntry g;
          g.index = gi;
          std::copy(std::begin(gid.raw), std::end(gid.raw), g.raw.begin());
          if (!g.is_zero()) p.gids.push_back(g);
        }
        if (api.is_soft) {
          p.rate = "software (loopback TCP)";
        } else {
          add_sysfs_gid_details(sysfs_root, d.name, p);
          if (p.rate.empty()) p.rate = rate_from_attr(pa);
        }
        d.ports.push_back(std::move(p));
      }
    }
    api.close_device(ctx);
    out.push_back(std::move(d));
  }
  api.free_device_list(list);
  if (out.empty() && why_none)
    *why_none = fmt::format("no RDMA device could be opened: {}", fmt::join(unopened, ", "));
  return out;
}

std::vector<HcaSpec> parse_hca_list(const std::string& spec) {
  std::vector<HcaSpec> out;
  std::string s = spec;
  if (!s.empty() && s[0] == '=') s.erase(0, 1);
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    start = comma == std::string::npos ? s.size() + 1 : comma + 1;
    while (!item.empty() && item.front() == ' ') item.erase(0, 1);
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (item.empty()) continue;
    HcaSpec h;
    auto colon = item.find(':');
    h.device = item.substr(0, colon);
    if (colon != std::string::npos) {
      std::string port = item.substr(colon + 1);
      char* end = nullptr;
      long v = std::strtol(port.c_str(), &end, 10);
      if (port.empty() || *end || v < 1 || v > 255)
        throw std::invalid_argument(fmt::format("RINGLINK_IB_HCA: bad port '{}' in '{}'", port, item));
      h.port = static_cast<int>(v);
    }
    if (h.device.empty()) throw std::invalid_argument(fmt::format("RINGLINK_IB_HCA: no device name in '{}'", item));
    out.push_back(h);
  }
  return out;
}

int pick_gid_index(const PortInfo& port, int requested, std::string* why) {
  if (requested >= 0) {
    const GidEntry* g = port.gid(requested);
    if (!g) {
      if (why) *why = fmt::format("RINGLINK_IB_GID_INDEX={} names no GID of port {}", requested, port.port);
      return -1;
    }
    return requested;
  }
  if (!port.is_ethernet()) return -1;  // InfiniBand: the LID addresses the port inside the subnet
  auto first = [&](auto pred) -> int {
    for (const auto& g : port.gids)
      if (pred(g)) return g.index;
    return -1;
  };
  int idx = first([](const GidEntry& g) { return g.is_roce_v2() && g.is_ipv4_mapped(); });
  if (idx < 0) idx = first([](const GidEntry& g) { return g.is_roce_v2() && !g.is_link_local(); });
  if (idx < 0) idx = first([](const GidEntry& g) { return g.is_roce_v2(); });
  if (idx < 0) idx = first([](const GidEntry& g) { return g.type == "IB/RoCE v1"; });
  if (idx < 0) idx = first([](const GidEntry& g) { return g.type.empty(); });  // types unknown: take what exists
  if (idx < 0 && why) *why = fmt::format("port {} (Ethernet) has no usable RoCE GID", port.port);
  return idx;
}

std::vector<PortChoice> choose_ports(const std::vector<DeviceInfo>& devices, const std::string& hca_spec,
                                     int gid_index, std::string* why) {
  std::vector<PortChoice> out;
  std::vector<std::string> skipped;
  auto consider = [&](const DeviceInfo& d, const PortInfo& p) {
    if (!p.active) {
      skipped.push_back(fmt::format("{}:{} is {}", d.name, p.port, p.state));
      return false;
    }
    std::string gid_why;
    int gid = pick_gid_index(p, gid_index, &gid_why);
    if (gid < 0 && (p.is_ethernet() || gid_index >= 0)) {
      skipped.push_back(fmt::format("{}: {}", d.name, gid_why));
      return false;
    }
    out.push_back({d.name, p.port, gid, p.is_ethernet()});
    return true;
  };
  auto specs = parse_hca_list(hca_spec);
  if (specs.empty()) {
    for (const auto& d : devices)
      for (const auto& p : d.ports) consider(d, p);
  } else {
    for (const auto& s : specs) {
      auto d = std::find_if(devices.begin(), devices.end(), [&](const DeviceInfo& x) { return x.name == s.device; });
      if (d == devices.end()) {
        skipped.push_back(fmt::format("no device named {}", s.device));
        continue;
      }
      if (s.port > 0) {
        const PortInfo* p = d->port(s.port);
        if (p)
          consider(*d, *p);
        else
          skipped.push_back(fmt::format("{} has no port {}", d->name, s.port));
      } else {
        bool any = false;
        for (const auto& p : d->ports)
          if (!any) any = consider(*d, p);
      }
    }
  }
  if (out.empty() && why) {
    if (devices.empty())
      *why = "no RDMA device";
    else
      *why = skipped.empty() ? std::string("no active port") : fmt::format("no active port ({})", fmt::join(skipped, "; "));
  }
  return out;
}

std::string list_devices(const Options& options) {
  const std::string& hca = options.ib_hca;
  const std::string root = sysfs_root(options.ib_sysfs_root);
  std::string why;
  if (names_soft_device(hca)) {
    auto devices = query_devices(soft_verbs(), "", &why);
    return "software verbs (RINGLINK_IB_HCA=soft): a test double that moves bytes over loopback TCP; not RDMA\n" +
           format_devices(devices);
  }
  const VerbsApi* api = load_libibverbs(options.ib_verbs_library, &why);
  if (!api) {
    std::string out = fmt::format("verbs unavailable: {}\n", why);
    auto sys = scan_sysfs(root);
    if (!sys.empty()) out += fmt::format("{} lists these devices nonetheless:\n{}", root, format_devices(sys));
    return out;
  }
  auto devices = query_devices(*api, root, &why);
  if (devices.empty())
    return fmt::format("verbs unavailable: {} is installed, but {} (nothing under {})\n", api->origin, why, root);
  std::string out = fmt::format("verbs devices ({}):\n", api->origin) + format_devices(devices);
  try {
    std::string none;
    auto chosen = choose_ports(devices, hca, -1, &none);
    if (chosen.empty()) {
      out += fmt::format("usable: none: {}\n", none);
    } else {
      std::vector<std::string> names;
      for (const auto& c : chosen)
        names.push_back(c.gid_index >= 0 ? fmt::format("{}:{} (GID {})", c.device, c.port, c.gid_index)
                                         : fmt::format("{}:{}", c.device, c.port));
      out += fmt::format("usable{}: {}\n", hca.empty() ? "" : " (RINGLINK_IB_HCA=" + hca + ")", fmt::join(names, ", "));
    }
  } catch (const std::exception& e) {
    out += fmt::format("{}\n", e.what());
  }
  return out;
}

bool active_port_exists(const Options& options, std::string* why) {
  const std::string& hca = options.ib_hca;
  if (names_soft_device(hca)) {
    if (why) *why = "RINGLINK_IB_HCA=soft selects the software verbs";
    return true;
  }
  std::string reason;
  const VerbsApi* api = load_libibverbs(options.ib_verbs_library, &reason);
  if (!api) {
    if (why) *why = "verbs unavailable: " + reason;
    return false;
  }
  auto devices = query_devices(*api, sysfs_root(options.ib_sysfs_root), &reason);
  if (devices.empty()) {
    if (why) *why = fmt::format("{} is installed, but {}", api->origin, reason);
    return false;
  }
  std::vector<PortChoice> chosen;
  try {
    chosen = choose_ports(devices, hca, options.ib_gid_index, &reason);
  } catch (const std::exception& e) {
    reason = e.what();
  }
  if (chosen.empty()) {
    if (why) *why = reason;
    return false;
  }
  if (why)
    *why = fmt::format("{} port {} is active ({})", chosen[0].device, chosen[0].port,
                       chosen[0].ethernet ? "RoCE" : "InfiniBand");
  return true;
}

}  // namespace ringlink::verbs
