// The verbs transport: choosing and opening the device and port, registration, links by peer,
// and progress.
#include "transport/verbs/verbs_transport.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "common/log.h"
#include "ringlink/error.h"
#include "transport/verbs/devices.h"
#include "transport/verbs/soft/soft_verbs.h"
#include "transport/verbs/verbs_region.h"
#include "transport/verbs/verbs_transport_impl.h"
#include "transport/verbs/wire.h"

namespace ringlink::verbs {
namespace {

constexpr size_t kMrCacheBytes = size_t{64} << 30;

const VerbsApi& pick_api(const Options& o, int rank) {
  if (names_soft_device(o.ib_hca)) return soft_verbs();
  std::string why;
  const VerbsApi* api = load_libibverbs(o.ib_verbs_library, &why);
  if (!api) throw TransportError(rank, -1, "create transport", "verbs unavailable: " + why);
  return *api;
}

}  // namespace

VerbsTransport::VerbsTransport(const TransportSetup& setup)
    : api_(pick_api(setup.options, setup.rank)),
      rank_(setup.rank),
      opts_(setup.options) {
  open(setup);
}

void VerbsTransport::open(const TransportSetup& setup) {
  std::string why;
  auto devices = query_devices(api_, sysfs_root(opts_.ib_sysfs_root), &why);
  if (devices.empty()) throw TransportError(rank_, -1, "create transport", "verbs unavailable: " + why);
  std::vector<PortChoice> ports;
  try {
    ports = choose_ports(devices, api_.is_soft ? std::string() : opts_.ib_hca, opts_.ib_gid_index, &why);
  } catch (const std::invalid_argument& e) {
    throw InvalidArgumentError(rank_, -1, "create transport", e.what());
  }
  if (ports.empty()) throw TransportError(rank_, -1, "create transport", "verbs unavailable: " + why);
  // Ranks on one host spread over the usable ports.
  const PortChoice& choice = ports[static_cast<size_t>(std::max(0, setup.local_rank)) % ports.size()];
  device_name_ = choice.device;
  const uint8_t port = static_cast<uint8_t>(choice.port);
  gid_index_ = choice.gid_index;
  ethernet_ = choice.ethernet;
  qp_settings_ = {port, gid_index_, ethernet_ || gid_index_ >= 0, static_cast<uint8_t>(opts_.ib_timeout),
                  static_cast<uint8_t>(opts_.ib_retry_cnt)};

  dev_ = std::make_shared<Device>(api_);
  int n = 0;
  ibv_device** list = api_.get_device_list(&n);
  for (int i = 0; list && i < n && !dev_->ctx; ++i)
    if (device_name_ == api_.get_device_name(list[i])) dev_->ctx = api_.open_device(list[i]);
  if (list) api_.free_device_list(list);
  if (!dev_->ctx)
    throw TransportError(rank_, -1, "create transport",
                         fmt::format("verbs unavailable: cannot open {}: {}", device_name_, std::strerror(errno)));
  if (api_.is_soft && !opts_.soft_verbs_fault.empty()) arm_soft_fault();
  if (api_.query_device(dev_->ctx, &dev_attr_) != 0 || api_.query_port(dev_->ctx, port, &port_attr_) != 0)
    throw TransportError(rank_, -1, "create transport",
                         fmt::format("verbs unavailable: querying {} port {} failed", device_name_, port));
  link_gbit_ = port_rate(port_attr_).gbit();
  if (gid_index_ >= 0 && api_.query_gid(dev_->ctx, port, gid_index_, &gid_) != 0)
    throw TransportError(rank_, -1, "create transport",
                         fmt::format("reading GID {} of {} port {} failed", gid_index_, device_name_, port));
  dev_->pd = api_.alloc_pd(dev_->ctx);
  if (!dev_->pd) throw TransportError(rank_, -1, "create transport", fmt::format("ibv_alloc_pd failed: {}", std::strerror(errno)));
  // One CQ for every QP: progress polls one queue however many peers there are.
  const int peers = std::max(1, setup.world_size - 1);
  const int want = peers * opts_.ib_qps * static_cast<int>(kSqDepth + wire::kFifoDepth) + 2 * static_cast<int>(kSqDepth);
  const int cqe = std::min(want, std::max(1, dev_attr_.max_cqe));
  dev_->cq = api_.create_cq(dev_->ctx, cqe, nullptr, nullptr, 0);
  if (!dev_->cq) throw TransportError(rank_, -1, "create transport", fmt::format("ibv_create_cq({}) failed: {}", cqe, std::strerror(errno)));

  gdr_ = detect_gpudirect(api_, dev_->pd, opts_);
  cache_ = std::make_unique<MrCache>(
      [this](uintptr_t start, size_t length, MemoryKind kind) { return register_range(start, length, kind); },
      kMrCacheBytes,
      [this](uintptr_t p, MemoryKind kind) -> uint64_t {
        return kind == MemoryKind::Cuda ? cuda_buffer_id(gdr_, p) : 0;
      });

  async_ = std::make_unique<AsyncEventReader>(api_, dev_->ctx);

  name_ = api_.is_soft ? "verbs/soft" : fmt::format("verbs/{}:{}", device_name_, port);
  std::string addressing = gid_index_ >= 0 ? fmt::format("GID {} ({})", gid_index_, ethernet_ ? "RoCE" : "InfiniBand GRH")
                                           : fmt::format("LID {:#x}", port_attr_.lid);
  log::info("transport {}: {} port {}, {}, MTU {}, {} QP(s) per peer, GPUDirect: {} ({})", name_, device_name_, port,
            addressing, mtu_bytes(port_attr_.active_mtu), opts_.ib_qps, to_string(gdr_.mode), gdr_.reason);
  if (api_.is_soft) log::info("transport {}: the software verbs test double (loopback TCP), not RDMA", name_);
}

// RINGLINK_SOFT_VERBS_FAULT ("spec[@rank]"), for the rank this transport serves.
void VerbsTransport::arm_soft_fault() {
  try {
    soft::Fault fault = soft::fault_for_rank(opts_.soft_verbs_fault, rank_);
    if (fault.kind != soft::Fault::Kind::None) soft::set_fault(dev_->ctx, fault);
  } catch (const std::invalid_argument& e) {
    log::warn("ignoring RINGLINK_SOFT_VERBS_FAULT: {}", e.what());
  }
}

VerbsTransport::~VerbsTransport() {
  async_.reset();
  for (auto& [peer, link] : pending_) link->close();
  pending_.clear();
  for (Link* l : std::vector<Link*>(links_))
    if (l) l->close();
  flush_.reset();
  cache_->clear();
}

LinkProperties VerbsTransport::properties() const {
  // The software verbs: ringlink-bench p2p on a 2-core VM (docs/transports.md). Hardware: the
  // port's signalling rate less protocol overhead, and a typical RC round trip; neither has been
  // measured here.
  if (api_.is_soft) return {35.0, 1.5, false};
  return {ethernet_ ? 5.0 : 3.0, link_gbit_ > 0 ? link_gbit_ / 8.0 * 0.9 : 10.0, false};
}

std::shared_ptr<Registration> VerbsTransport::register_range(uintptr_t start, size_t length, MemoryKind kind) {
  auto dev = dev_;
  ibv_mr* mr = nullptr;
  uintptr_t lo = start;
  size_t len = length;
  if (kind == MemoryKind::Cuda) {
    mr = register_cuda(api_, dev->pd, gdr_, start, kAccess, rank_, &lo, &len);
  } else {
    mr = api_.reg_mr(dev->pd, reinterpret_cast<void*>(start), length, kAccess);
    if (!mr)
      throw TransportError(rank_, -1, "register memory",
                           fmt::format("ibv_reg_mr of {} bytes at {:#x} failed: {}", length, start, std::strerror(errno)));
  }
  return std::make_shared<Registration>(lo, len, kind, mr->lkey, mr->rkey, [dev, mr] { dev->api.dereg_mr(mr); });
}

std::shared_ptr<Registration> VerbsTransport::user_registration(const void* buf, size_t bytes, MemoryKind kind) {
  if (opts_.ib_mr_cache || kind != MemoryKind::Host) return cache_->acquire(buf, bytes, kind);
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE)), p = reinterpret_cast<uintptr_t>(buf);
  const uintptr_t start = p & ~(page - 1), end = (p + bytes + page - 1) & ~(page - 1);
  return register_range(start, end - start, kind);
}

std::vector<std::byte> VerbsTransport::endpoint_info(int peer) {
  auto it = pending_.find(peer);
  if (it == pending_.end()) {
    auto link = std::make_shared<Link>(*this, peer, static_cast<uint32_t>(links_.size()));
    links_.push_back(link.get());
    it = pending_.emplace(peer, std::move(link)).first;
  }
  return it->second->local_info();
}

std::unique_ptr<Connection> VerbsTransport::connect(int peer, std::span<const std::byte> remote) {
  if (!pending_.count(peer)) endpoint_info(peer);
  auto link = pending_[peer];
  pending_.erase(peer);
  link->connect(remote);
  return std::make_unique<VerbsConnection>(peer, std::move(link));
}

std::shared_ptr<MemoryRegion> VerbsTransport::register_memory(void* ptr, size_t bytes, MemoryKind kind) {
  if (kind == MemoryKind::Cuda) {
    if (gdr_.mode == GpuDirectMode::NoCuda)
      throw InvalidArgumentError(rank_, -1, "register memory", "CUDA memory without a CUDA driver: " + gdr_.reason);
    if (!gdr_.direct())
      throw InvalidArgumentError(rank_, -1, "register memory",
                                 fmt::format("device memory needs GPUDirect RDMA ({}); the engine stages device "
                                             "buffers through host memory for this transport",
                                             to_string(gdr_.mode)));
  }
  return std::make_shared<VerbsRegion>(ptr, bytes, kind, bytes ? cache_->acquire(ptr, bytes, kind) : nullptr);
}

void VerbsTransport::add_hungry(Link* l) {
  if (l->in_hungry_list) return;
  l->in_hungry_list = true;
  hungry_.push_back(l);
}

void VerbsTransport::forget_link(Link* l) {
  if (l->id() < links_.size()) links_[l->id()] = nullptr;
  for (uint32_t qpn : l->qp_numbers()) qp_links_.erase(qpn);
  hungry_.erase(std::remove(hungry_.begin(), hungry_.end(), l), hungry_.end());
  l->in_hungry_list = false;
}

void VerbsTransport::flush(const std::shared_ptr<Link>& link, const std::shared_ptr<Op>& op) {
  if (!flush_) {
    flush_ = std::make_unique<GpuDirectFlush>(dev_, qp_settings_, port_attr_, gid_, *cache_, rank_);
    log::info("transport {}: GPUDirect flush enabled (a 1-byte RDMA READ after each receive into GPU memory)", name_);
  }
  flush_->issue(link, op);
}

bool VerbsTransport::progress() {
  bool moved = false;
  if (async_->pending()) moved = handle_async_events();
  ibv_wc wc[32];
  for (int round = 0; round < 8; ++round) {
    int n = api_.poll_cq(dev_->cq, 32, wc);
    if (n < 0) {
      fail_all({ErrorKind::Transport, "ibv_poll_cq failed: the completion queue is broken"});
      return true;
    }
    for (int i = 0; i < n; ++i) {
      WrId id = parse_wr_id(wc[i].wr_id);
      if (id.kind == WrKind::Flush) {
        if (flush_) flush_->on_completion(wc[i], id.serial);
        continue;
      }
      Link* link = id.link < links_.size() ? links_[id.link] : nullptr;
      if (link) link->on_completion(wc[i], id);  // a closed link's leftovers are dropped
    }
    if (n > 0) moved = true;
    if (n < 32) break;
  }
  for (size_t i = 0; i < hungry_.size();) {
    Link* l = hungry_[i];
    if (l->poll_fifo()) moved = true;
    if (!l->hungry()) {
      l->in_hungry_list = false;
      hungry_[i] = hungry_.back();
      hungry_.pop_back();
    } else {
      ++i;
    }
  }
  return moved;
}

void VerbsTransport::fail_all(const Failure& f) {
  if (!transport_failure_) transport_failure_ = f;
  for (Link* l : links_)
    if (l) l->fail(f);
}

}  // namespace ringlink::verbs

namespace ringlink {

std::unique_ptr<Transport> create_verbs_transport(const TransportSetup& setup) {
  return std::make_unique<verbs::VerbsTransport>(setup);
}

}  // namespace ringlink
