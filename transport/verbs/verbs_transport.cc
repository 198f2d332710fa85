// The verbs transport. Layout: device resources and helpers; Link (everything about one peer:
// its queue pairs, its CTS FIFO and size table, the matching of sends to clear-to-sends, the
// completion of receives); the requests and the connection; the transport (device choice,
// registration, progress, asynchronous events, the GPUDirect flush).
//
// Progress costs no system call on real hardware: ibv_poll_cq and the CTS FIFO are reads of
// memory the HCA writes, and asynchronous events are read by a thread that sleeps in poll().
#include "transport/verbs/verbs_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include "common/host_buffer.h"
#include "common/log.h"
#include "ringlink/error.h"
#include "transport/verbs/devices.h"
#include "transport/verbs/wire.h"

namespace ringlink::verbs {
namespace {

constexpr uint32_t kSqDepth = 512;
constexpr uint32_t kInlineWanted = 128;
constexpr uint64_t kMaxWriteBytes = uint64_t{1} << 30;  // one work request moves at most this
constexpr int kAccess = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
constexpr uint32_t kEndpointMagic = 0x31425652;  // "RVB1"
constexpr uint16_t kEndpointVersion = 2;
constexpr size_t kMrCacheBytes = size_t{64} << 30;
constexpr uint8_t kMinRnrTimer = 12;  // 0.64 ms; receives are pre-posted, so RNR never happens by design

// ---- work request ids -----------------------------------------------------------------------
// [63:60] kind  [59:36] link id  [35:32] QP index  [31:0] serial (send #, CTS sequence, ...)
enum class WrKind : uint64_t {
  Recv = 1, Cts = 2, Data = 3, SizeWrite = 4, Flush = 5, InlineData = 6, Void = 7,
  Drain = 11,
  // On the link's control QP:
  EagerRecv = 8, EagerSend = 9, Credit = 10, DrainControl = 12,
};
bool on_control_qp(WrKind k) {
  return k == WrKind::EagerRecv || k == WrKind::EagerSend || k == WrKind::Credit || k == WrKind::DrainControl;
}

uint64_t make_wr_id(WrKind k, uint32_t link, uint32_t qp, uint32_t serial) {
  return (static_cast<uint64_t>(k) << 60) | (static_cast<uint64_t>(link & 0xffffff) << 36) |
         (static_cast<uint64_t>(qp & 0xf) << 32) | serial;
}
struct WrId {
  WrKind kind;
  uint32_t link, qp, serial;
};
WrId parse(uint64_t v) {
  return {static_cast<WrKind>(v >> 60), static_cast<uint32_t>((v >> 36) & 0xffffff), static_cast<uint32_t>((v >> 32) & 0xf),
          static_cast<uint32_t>(v)};
}

// Context, protection domain and CQ, shared by the transport, its links and every registration,
// so the last of them to go releases them in the right order.
struct Device {
  explicit Device(const VerbsApi& a) : api(a) {}
  ~Device() {
    if (cq) api.destroy_cq(cq);
    if (pd) api.dealloc_pd(pd);
    if (ctx) api.close_device(ctx);
  }
  const VerbsApi& api;
  ibv_context* ctx = nullptr;
  ibv_pd* pd = nullptr;
  ibv_cq* cq = nullptr;
};

struct Failure {
  ErrorKind kind = ErrorKind::Transport;
  std::string detail;
  bool weak = false;  // a consequence (a flush), replaced by the cause when it arrives
};

// One isend or irecv.
struct Op {
  bool is_send = false;
  uint32_t serial = 0;  // per link and direction, for messages
  Tag tag = 0;
  std::byte* buf = nullptr;  // where the bytes go / come from on the wire (the bounce buffer when staged)
  size_t bytes = 0;
  MemoryKind kind = MemoryKind::Host;
  std::shared_ptr<Registration> reg;
  // CUDA memory staged through host memory: the user's device buffer.
  void* device_buf = nullptr;
  std::unique_ptr<HostBuffer> bounce;

  bool done = false;
  bool visible = false;  // done, and so is every earlier op of the same tag and direction
  bool cancelled = false;
  std::optional<Failure> failed;
  size_t result_bytes = 0;

  uint64_t msn = 0;  // its number among the messages of its tag and direction
  // send
  wire::CtsEntry cts{};
  uint32_t stripes_left = 0;
  // receive
  uint32_t slot = UINT32_MAX;
  uint64_t seq = 0;
  uint32_t stripes_got = 0;
  bool eager_done = false;  // completed by an eager message while its CTS was out: the slot awaits a void
};

const char* op_name(const Op& op) { return op.is_send ? "send" : "recv"; }

class VerbsTransport;

// ---- a connection to one peer -----------------------------------------------------------------

class Link : public std::enable_shared_from_this<Link> {
 public:
  Link(VerbsTransport& t, int peer, uint32_t id);
  ~Link() { close(); }

  std::vector<std::byte> local_info() const;
  void connect(std::span<const std::byte> remote);
  void close();
  void drain();

  std::unique_ptr<Request> isend(const void* buf, size_t bytes, MemoryRegion* mr, Tag tag);
  std::unique_ptr<Request> irecv(void* buf, size_t bytes, MemoryRegion* mr, Tag tag);
  bool test(Op& op);
  void cancel(const std::shared_ptr<Op>& op);

  void on_completion(const ibv_wc& wc, const WrId& id);
  bool poll_fifo();
  bool hungry() const { return unmatched_sends_ > 0 && !closed_; }
  void fail(Failure f);
  void finish(const std::shared_ptr<Op>& op);
  int peer() const { return peer_; }
  uint32_t id() const { return id_; }
  const std::vector<uint32_t>& qp_numbers() const { return qpns_; }
  bool in_hungry_list = false;

 private:
  struct Qp {
    ibv_qp* qp = nullptr;
    uint64_t posted = 0, retired = 0, last_signaled = 0;
    std::deque<uint64_t> signaled;  // the `posted` count of each signalled WR not yet completed
    uint32_t room() const { return kSqDepth - static_cast<uint32_t>(posted - retired); }
  };
  struct Piece {
    uint32_t qp;
    WrKind kind;
    ibv_wr_opcode opcode;
    uint64_t local;
    uint32_t length;
    uint32_t lkey;
    uint64_t remote;
    uint32_t rkey;
    uint32_t imm;
    bool inlined;
    bool signal;  // ends a stripe: its completion counts toward the send's
  };

  bool post_cts(const std::shared_ptr<Op>& op);
  bool post_data(const std::shared_ptr<Op>& op);
  bool post_eager(const std::shared_ptr<Op>& op);
  bool post_void(uint32_t slot);
  void return_credits(bool force);
  uint32_t eager_credits();
  void resolve(Tag tag);
  void on_eager(uint32_t index, uint32_t bytes);
  void deliver_eager(const std::shared_ptr<Op>& op, const std::byte* data, uint64_t size);
  ibv_qp* make_qp(uint32_t max_recv);
  void connect_qp(ibv_qp* qp, uint32_t remote_qpn, const struct EndpointHeader& h, ibv_mtu mtu, bool global);
  bool post_pieces(std::vector<Piece>& pieces, uint32_t serial);
  void post_receives(uint32_t qp, uint32_t n);
  void post_eager_receive(uint32_t index);
  void retire(Qp& q);
  void drain_backlogs();
  void match(const std::shared_ptr<Op>& op, const wire::CtsEntry& cts);
  void on_imm(uint32_t imm);
  void on_error(const ibv_wc& wc, const WrId& id);
  void settle(const Op& op);
  std::string describe(const WrId& id) const;
  std::shared_ptr<Registration> registration(std::byte* buf, size_t bytes, MemoryRegion* mr, MemoryKind& kind,
                                             const char* what, bool defer_host = false);
  void stage(Op& op, void* user_buf, const char* what);
  [[noreturn]] void throw_failure(const Failure& f, const Op& op) const;

  VerbsTransport& t_;
  std::shared_ptr<Device> dev_;
  const VerbsApi& api_;
  int rank_;
  int peer_;
  uint32_t id_;
  bool connected_ = false;
  bool closed_ = false;
  bool draining_ = false;
  std::vector<Qp> qps_;
  Qp control_;  // the control QP: eager messages and credit returns
  std::vector<uint32_t> qpns_;  // data QPs, then the control QP
  uint32_t max_inline_ = 0;
  uint32_t depth_ = wire::kFifoDepth;

  // Control memory: the peer writes fifo_in_ and sizes_in_; we write from cts_out_ and sizes_out_.
  HostBuffer ctrl_;
  ibv_mr* ctrl_mr_ = nullptr;
  wire::CtsEntry* fifo_in_ = nullptr;
  wire::CtsEntry* cts_out_ = nullptr;
  uint64_t* sizes_in_ = nullptr;
  uint64_t* sizes_out_ = nullptr;
  std::byte* eager_in_ = nullptr;   // kEagerSlots posted receive buffers on the control QP
  std::byte* eager_out_ = nullptr;  // sources of our eager SENDs
  uint64_t* credits_in_ = nullptr;  // the peer's count of our eager messages it has freed
  uint64_t* credits_out_ = nullptr;
  uint64_t remote_fifo_ = 0, remote_sizes_ = 0, remote_credits_ = 0;
  uint32_t remote_fifo_rkey_ = 0, remote_sizes_rkey_ = 0;

  // Eager messages and per-tag numbering.
  std::unordered_map<Tag, uint64_t> send_msn_, recv_msn_;
  uint64_t eager_sent_ = 0, remote_released_ = 0;      // as sender
  uint64_t eager_released_ = 0, credits_returned_ = 0;  // as receiver
  bool credit_starved_ = false;  // a small send waits for credits
  std::unordered_map<Tag, std::map<uint64_t, std::shared_ptr<Op>>> posted_recvs_;      // by msn, not yet matched
  std::unordered_map<Tag, std::map<uint64_t, std::vector<std::byte>>> unexpected_;   // eager, not yet received
  std::deque<uint32_t> void_backlog_;

  // Receiver side.
  wire::CtsSlots slots_;
  std::vector<std::shared_ptr<Op>> slot_ops_;
  std::deque<std::shared_ptr<Op>> cts_backlog_;  // waiting for a FIFO slot or send-queue room
  uint32_t next_recv_serial_ = 0;

  // Sender side.
  wire::CtsReader reader_;
  std::unordered_map<Tag, std::deque<std::shared_ptr<Op>>> sends_by_tag_;  // waiting for a CTS
  std::unordered_map<Tag, std::deque<wire::CtsEntry>> cts_by_tag_;        // waiting for a send
  size_t unmatched_sends_ = 0;
  std::deque<std::shared_ptr<Op>> ready_;  // matched, waiting for send-queue room
  std::unordered_map<uint32_t, std::shared_ptr<Op>> posted_;  // on the wire, by serial
  uint32_t next_send_serial_ = 0;
  uint32_t next_qp_ = 0;

  // Completion order per tag.
  std::unordered_map<Tag, std::deque<std::shared_ptr<Op>>> send_order_, recv_order_;

  std::optional<Failure> failure_;
};

class VerbsRequest final : public Request {
 public:
  VerbsRequest(std::shared_ptr<Link> link, std::shared_ptr<Op> op) : link_(std::move(link)), op_(std::move(op)) {}
  ~VerbsRequest() override {
    if (!op_->done) link_->cancel(op_);
  }
  bool test() override { return link_->test(*op_); }
  size_t bytes() const override { return op_->is_send ? op_->bytes : op_->result_bytes; }

 private:
  std::shared_ptr<Link> link_;
  std::shared_ptr<Op> op_;
};

class VerbsConnection final : public Connection {
 public:
  VerbsConnection(int peer, std::shared_ptr<Link> link) : Connection(peer), link_(std::move(link)) {}
  ~VerbsConnection() override {
    link_->drain();
    link_->close();
  }
  std::unique_ptr<Request> isend(const void* buf, size_t bytes, MemoryRegion* mr, Tag tag) override {
    return link_->isend(buf, bytes, mr, tag);
  }
  std::unique_ptr<Request> irecv(void* buf, size_t bytes, MemoryRegion* mr, Tag tag) override {
    return link_->irecv(buf, bytes, mr, tag);
  }

 private:
  std::shared_ptr<Link> link_;
};

class VerbsRegion final : public MemoryRegion {
 public:
  VerbsRegion(void* addr, size_t bytes, MemoryKind kind, std::shared_ptr<Registration> reg)
      : MemoryRegion(addr, bytes, kind), reg_(std::move(reg)) {}
  const std::shared_ptr<Registration>& registration() const { return reg_; }

 private:
  std::shared_ptr<Registration> reg_;  // null for CUDA memory that is staged
};

struct AsyncEvent {
  ibv_event_type type;
  uint32_t qp_num = 0;
  int port = 0;
};

// ---- the transport ----------------------------------------------------------------------------

class VerbsTransport final : public Transport, public VerbsTransportInfo {
 public:
  explicit VerbsTransport(const TransportSetup& setup);
  ~VerbsTransport() override;

  std::string name() const override { return name_; }
  std::vector<std::byte> endpoint_info(int peer) override;
  std::unique_ptr<Connection> connect(int peer, std::span<const std::byte> remote) override;
  std::shared_ptr<MemoryRegion> register_memory(void* ptr, size_t bytes, MemoryKind kind) override;
  bool supports(MemoryKind kind) const override { return kind == MemoryKind::Host || gdr_.direct(); }
  LinkProperties properties() const override {
    // The software verbs: ringlink-bench p2p on a 2-core VM (docs/transports.md). Hardware:
    // the port's signalling rate less protocol overhead, and a typical RC round trip; neither has
    // been measured here.
    if (api_.is_soft) return {35.0, 1.5, false};
    return {ethernet_ ? 5.0 : 3.0, link_gbit_ > 0 ? link_gbit_ / 8.0 * 0.9 : 10.0, false};
  }
  bool progress() override;

  MrCache& mr_cache() override { return *cache_; }
  ibv_context* verbs_context() override { return dev_->ctx; }
  GpuDirectMode gpudirect_mode() const override { return gdr_.mode; }
  uint64_t flushes_issued() const override { return next_flush_; }

  // For links.
  const VerbsApi& api() const { return api_; }
  const std::shared_ptr<Device>& device() const { return dev_; }
  int rank() const { return rank_; }
  const Options& options() const { return opts_; }
  const ibv_port_attr& port_attr() const { return port_attr_; }
  const ibv_gid& gid() const { return gid_; }
  int gid_index() const { return gid_index_; }
  bool ethernet() const { return ethernet_; }
  uint8_t port_num() const { return port_num_; }
  uint32_t max_qp_wr() const { return static_cast<uint32_t>(dev_attr_.max_qp_wr); }
  const GpuDirect& gdr() const { return gdr_; }
  MrCache& cache() { return *cache_; }
  // A user buffer's registration: from the cache, or (RINGLINK_IB_MR_CACHE=0, host memory) made
  // for this message and released after it.
  std::shared_ptr<Registration> user_registration(const void* buf, size_t bytes, MemoryKind kind) {
    if (cache_user_buffers_ || kind != MemoryKind::Host) return cache_->acquire(buf, bytes, kind);
    const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE)), p = reinterpret_cast<uintptr_t>(buf);
    const uintptr_t start = p & ~(page - 1), end = (p + bytes + page - 1) & ~(page - 1);
    return register_range(start, end - start, kind);
  }
  const std::optional<Failure>& transport_failure() const { return transport_failure_; }
  void add_hungry(Link* l);
  void register_qp(uint32_t qpn, Link* l) { qp_links_[qpn] = l; }
  void forget_link(Link* l);
  std::unique_ptr<HostBuffer> take_bounce(size_t bytes);
  void give_bounce(std::unique_ptr<HostBuffer> b);
  // Issues the GPUDirect flush for a receive into device memory; the op completes after it.
  void flush(const std::shared_ptr<Link>& link, const std::shared_ptr<Op>& op);

 private:
  void open(const TransportSetup& setup);
  std::shared_ptr<Registration> register_range(uintptr_t start, size_t length, MemoryKind kind);
  void async_main();
  bool drain_async();
  void on_flush_completion(const ibv_wc& wc, uint32_t serial);
  void make_flush_qp();
  void fail_all(const Failure& f);

  const VerbsApi& api_;
  int rank_;
  int local_rank_;
  int world_;
  Options opts_;
  std::string name_;
  std::shared_ptr<Device> dev_;
  ibv_device_attr dev_attr_{};
  ibv_port_attr port_attr_{};
  uint8_t port_num_ = 1;
  ibv_gid gid_{};
  int gid_index_ = -1;
  bool ethernet_ = false;
  std::string device_name_;
  bool cache_user_buffers_ = true;  // RINGLINK_IB_MR_CACHE
  double link_gbit_ = 0;  // the port's data rate, Gb/s (0: unknown)
  GpuDirect gdr_;
  std::unique_ptr<MrCache> cache_;

  std::unordered_map<int, std::shared_ptr<Link>> pending_;  // endpoint published, not yet connected
  std::vector<Link*> links_;                                 // by id; null once closed
  std::unordered_map<uint32_t, Link*> qp_links_;            // by QP number, for async events
  std::vector<Link*> hungry_;                                // links with sends waiting for a CTS
  std::optional<Failure> transport_failure_;

  std::multimap<size_t, std::unique_ptr<HostBuffer>> bounces_;

  // GPUDirect flush: a QP connected to itself, reading 1 byte of each received buffer.
  ibv_qp* flush_qp_ = nullptr;
  HostBuffer flush_target_;
  std::shared_ptr<Registration> flush_reg_;
  uint32_t next_flush_ = 0;
  std::unordered_map<uint32_t, std::pair<std::shared_ptr<Link>, std::shared_ptr<Op>>> flushes_;

  // Asynchronous events.
  std::thread async_thread_;
  int async_stop_fd_ = -1;
  std::mutex async_mu_;
  std::vector<AsyncEvent> async_events_;
  std::atomic<bool> async_pending_{false};
};

// ---- Link ---------------------------------------------------------------------------------------

struct EndpointHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t nqps;
  uint32_t fifo_depth;
  uint16_t lid;
  uint8_t ethernet;
  uint8_t mtu;  // enum ibv_mtu
  uint8_t gid[16];
  int32_t gid_index;
  uint32_t fifo_rkey;
  uint64_t fifo_addr;
  uint64_t sizes_addr;
  uint32_t sizes_rkey;
  uint32_t eager_slots;
  uint64_t credits_addr;
};
static_assert(sizeof(EndpointHeader) == 72);

Link::Link(VerbsTransport& t, int peer, uint32_t id)
    : t_(t), dev_(t.device()), api_(t.api()), rank_(t.rank()), peer_(peer), id_(id), slots_(wire::kFifoDepth) {
  const size_t d = depth_;
  const size_t eager = wire::kEagerSlots * wire::kEagerSlotBytes;
  ctrl_ = HostBuffer(d * (2 * sizeof(wire::CtsEntry) + 2 * sizeof(uint64_t)) + 2 * eager + 64);
  std::memset(ctrl_.data(), 0, ctrl_.size());
  auto* base = ctrl_.as<std::byte>();
  fifo_in_ = reinterpret_cast<wire::CtsEntry*>(base);
  cts_out_ = fifo_in_ + d;
  sizes_in_ = reinterpret_cast<uint64_t*>(cts_out_ + d);
  sizes_out_ = sizes_in_ + d;
  eager_in_ = reinterpret_cast<std::byte*>(sizes_out_ + d);
  eager_out_ = eager_in_ + eager;
  credits_in_ = reinterpret_cast<uint64_t*>(eager_out_ + eager);
  credits_out_ = credits_in_ + 1;
  ctrl_mr_ = api_.reg_mr(dev_->pd, ctrl_.data(), ctrl_.size(), kAccess);
  if (!ctrl_mr_)
    throw TransportError(t_.rank(), peer, "connect",
                         fmt::format("registering {} bytes of control memory failed: {}", ctrl_.size(), std::strerror(errno)));
  slot_ops_.resize(d);
  reader_ = wire::CtsReader(fifo_in_, depth_);

  const int nqps = t_.options().ib_qps;
  try {
    for (int i = 0; i < nqps; ++i) {
      Qp q;
      q.qp = make_qp(depth_);
      qps_.push_back(q);
    }
    control_.qp = make_qp(wire::kEagerSlots);
  } catch (...) {
    // No destructor runs for a half-built link: release what it has.
    for (auto& q : qps_) api_.destroy_qp(q.qp);
    api_.dereg_mr(ctrl_mr_);
    throw;
  }
  for (auto& q : qps_) qpns_.push_back(q.qp->qp_num);
  qpns_.push_back(control_.qp->qp_num);
  for (uint32_t qpn : qpns_) t_.register_qp(qpn, this);
}

// An RC QP in INIT, on the transport's CQ.
ibv_qp* Link::make_qp(uint32_t max_recv) {
  ibv_qp_init_attr a{};
  a.send_cq = dev_->cq;
  a.recv_cq = dev_->cq;
  a.qp_type = IBV_QPT_RC;
  a.cap.max_send_wr = kSqDepth;
  a.cap.max_recv_wr = max_recv;
  a.cap.max_send_sge = 1;
  a.cap.max_recv_sge = 1;
  ibv_qp* qp = nullptr;
  // Ask for room for inline data; some devices offer less (or none).
  for (uint32_t want : {kInlineWanted, 64u, 0u}) {
    a.cap.max_inline_data = want;
    qp = api_.create_qp(dev_->pd, &a);
    if (qp) break;
  }
  if (!qp) throw TransportError(t_.rank(), peer_, "connect", fmt::format("ibv_create_qp failed: {}", std::strerror(errno)));
  max_inline_ = qps_.empty() && !control_.qp ? a.cap.max_inline_data : std::min(max_inline_, a.cap.max_inline_data);
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_INIT;
  attr.pkey_index = 0;
  attr.port_num = t_.port_num();
  attr.qp_access_flags = kAccess;
  if (int rc = api_.modify_qp(qp, &attr, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) {
    uint32_t qpn = qp->qp_num;
    api_.destroy_qp(qp);
    throw TransportError(t_.rank(), peer_, "connect", fmt::format("moving QP {:#x} to INIT failed: {}", qpn, std::strerror(rc)));
  }
  return qp;
}

std::vector<std::byte> Link::local_info() const {
  EndpointHeader h{};
  h.magic = kEndpointMagic;
  h.version = kEndpointVersion;
  h.nqps = static_cast<uint16_t>(qps_.size());
  h.fifo_depth = depth_;
  h.lid = t_.port_attr().lid;
  h.ethernet = t_.ethernet() ? 1 : 0;
  h.mtu = static_cast<uint8_t>(t_.port_attr().active_mtu);
  std::memcpy(h.gid, t_.gid().raw, 16);
  h.gid_index = t_.gid_index();
  h.fifo_addr = reinterpret_cast<uint64_t>(fifo_in_);
  h.fifo_rkey = ctrl_mr_->rkey;
  h.sizes_addr = reinterpret_cast<uint64_t>(sizes_in_);
  h.sizes_rkey = ctrl_mr_->rkey;
  h.eager_slots = wire::kEagerSlots;
  h.credits_addr = reinterpret_cast<uint64_t>(credits_in_);
  std::vector<std::byte> out(sizeof h + qpns_.size() * sizeof(uint32_t));
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + sizeof h, qpns_.data(), qpns_.size() * sizeof(uint32_t));
  return out;
}

void Link::connect(std::span<const std::byte> remote) {
  const int rank = t_.rank();
  EndpointHeader h{};
  if (remote.size() < sizeof h)
    throw MismatchError(rank, peer_, "connect",
                        fmt::format("rank {} published a {}-byte address, not a verbs endpoint (is RINGLINK_TRANSPORT "
                                    "the same on every rank?)",
                                    peer_, remote.size()));
  std::memcpy(&h, remote.data(), sizeof h);
  if (h.magic != kEndpointMagic || h.version != kEndpointVersion)
    throw MismatchError(rank, peer_, "connect",
                        fmt::format("rank {} uses another transport or ringlink version (is RINGLINK_TRANSPORT the "
                                    "same on every rank?)",
                                    peer_));
  if (h.nqps != qps_.size())
    throw MismatchError(rank, peer_, "connect",
                        fmt::format("RINGLINK_IB_QPS differs: {} here, {} on rank {}", qps_.size(), h.nqps, peer_));
  if (h.fifo_depth != depth_ || h.eager_slots != wire::kEagerSlots ||
      remote.size() != sizeof h + (h.nqps + 1u) * sizeof(uint32_t))
    throw MismatchError(rank, peer_, "connect", fmt::format("rank {} runs an incompatible verbs transport", peer_));
  if (static_cast<bool>(h.ethernet) != t_.ethernet())
    throw MismatchError(rank, peer_, "connect",
                        fmt::format("link layers differ: {} here, {} on rank {}", t_.ethernet() ? "Ethernet" : "InfiniBand",
                                    h.ethernet ? "Ethernet" : "InfiniBand", peer_));
  std::vector<uint32_t> remote_qpns(h.nqps + 1u);
  std::memcpy(remote_qpns.data(), remote.data() + sizeof h, remote_qpns.size() * sizeof(uint32_t));
  remote_fifo_ = h.fifo_addr;
  remote_fifo_rkey_ = h.fifo_rkey;
  remote_sizes_ = h.sizes_addr;
  remote_sizes_rkey_ = h.sizes_rkey;
  remote_credits_ = h.credits_addr;
  // Path MTU: the smaller of both ports'.
  auto mtu = static_cast<ibv_mtu>(std::min<int>(t_.port_attr().active_mtu, h.mtu));
  const bool global = t_.ethernet() || t_.gid_index() >= 0;
  for (size_t i = 0; i < qps_.size(); ++i) {
    connect_qp(qps_[i].qp, remote_qpns[i], h, mtu, global);
    // Every WRITE WITH IMM consumes one receive; at most `depth_` can be outstanding per QP.
    post_receives(static_cast<uint32_t>(i), depth_);
  }
  connect_qp(control_.qp, remote_qpns.back(), h, mtu, global);
  for (uint32_t i = 0; i < wire::kEagerSlots; ++i) post_eager_receive(i);
  connected_ = true;
  log::trace("verbs: connected to rank {} over {} QP(s), path MTU {}, {}", peer_, qps_.size(), mtu_bytes(mtu),
             global ? "GID routed" : fmt::format("LID {:#x}", h.lid));
}

// RESET -> INIT happened at creation; INIT -> RTR -> RTS here.
void Link::connect_qp(ibv_qp* qp, uint32_t remote_qpn, const EndpointHeader& h, ibv_mtu mtu, bool global) {
  const int rank = t_.rank();
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_RTR;
  a.path_mtu = mtu;
  a.dest_qp_num = remote_qpn;
  a.rq_psn = 0;
  a.max_dest_rd_atomic = 1;
  a.min_rnr_timer = kMinRnrTimer;
  a.ah_attr.dlid = h.lid;
  a.ah_attr.sl = 0;
  a.ah_attr.src_path_bits = 0;
  a.ah_attr.port_num = t_.port_num();
  if (global) {
    // RoCE (or IB across subnets): addressed by GID through a global route header.
    a.ah_attr.is_global = 1;
    std::memcpy(a.ah_attr.grh.dgid.raw, h.gid, 16);
    a.ah_attr.grh.sgid_index = static_cast<uint8_t>(std::max(0, t_.gid_index()));
    a.ah_attr.grh.hop_limit = 255;
    a.ah_attr.grh.traffic_class = 0;
  }
  int rc = api_.modify_qp(qp, &a,
                          IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                              IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
  if (rc)
    throw TransportError(rank, peer_, "connect",
                         fmt::format("moving QP {:#x} to RTR (remote QP {:#x}, LID {:#x}, MTU {}) failed: {}", qp->qp_num,
                                     remote_qpn, h.lid, mtu_bytes(mtu), std::strerror(rc)));
  a = {};
  a.qp_state = IBV_QPS_RTS;
  a.timeout = static_cast<uint8_t>(t_.options().ib_timeout);
  a.retry_cnt = static_cast<uint8_t>(t_.options().ib_retry_cnt);
  a.rnr_retry = 7;
  a.sq_psn = 0;
  a.max_rd_atomic = 1;
  rc = api_.modify_qp(qp, &a,
                      IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                          IBV_QP_MAX_QP_RD_ATOMIC);
  if (rc)
    throw TransportError(rank, peer_, "connect", fmt::format("moving QP {:#x} to RTS failed: {}", qp->qp_num, std::strerror(rc)));
}

// Lets work already handed to the HCA finish before the QPs go: destroying a QP drops what it has
// not sent yet (an eager message, complete for its sender since it was posted, say). Bounded by
// the silence deadline.
void Link::drain() {
  if (!connected_ || closed_ || failure_) return;
  auto busy = [](const Qp& q) { return q.qp && q.posted != q.retired; };
  auto mark = [&](Qp& q, WrKind kind, uint32_t index) {
    if (!busy(q) || q.room() < 1) return;
    ibv_send_wr wr{};
    wr.wr_id = make_wr_id(kind, id_, index, 0);
    wr.num_sge = 0;  // a zero-length write touches no memory and checks no key
    wr.opcode = IBV_WR_RDMA_WRITE;
    wr.send_flags = IBV_SEND_SIGNALED;
    ibv_send_wr* bad = nullptr;
    if (api_.post_send(q.qp, &wr, &bad) == 0) {
      ++q.posted;
      q.signaled.push_back(q.posted);
      q.last_signaled = q.posted;
    }
  };
  draining_ = true;
  for (uint32_t i = 0; i < qps_.size(); ++i) mark(qps_[i], WrKind::Drain, i);
  mark(control_, WrKind::DrainControl, 0);
  const Deadline deadline = Deadline::after(std::min<milliseconds>(t_.options().timeout, milliseconds(5000)));
  auto any_busy = [&] {
    return busy(control_) || std::any_of(qps_.begin(), qps_.end(), [&](const Qp& q) { return busy(q); });
  };
  while (any_busy() && !failure_ && !deadline.expired()) t_.progress();
}

void Link::close() {
  if (closed_) return;
  closed_ = true;
  for (auto& q : qps_) {
    if (q.qp) api_.destroy_qp(q.qp);
    q.qp = nullptr;
  }
  if (control_.qp) api_.destroy_qp(control_.qp);
  control_.qp = nullptr;
  if (ctrl_mr_) api_.dereg_mr(ctrl_mr_);
  ctrl_mr_ = nullptr;
  t_.forget_link(this);
  if (!failure_) failure_ = Failure{ErrorKind::Transport, fmt::format("the connection to rank {} was closed", peer_)};
}

void Link::post_receives(uint32_t qp, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) {
    ibv_recv_wr wr{};
    wr.wr_id = make_wr_id(WrKind::Recv, id_, qp, 0);
    wr.num_sge = 0;  // immediates only: the data arrives by RDMA WRITE
    ibv_recv_wr* bad = nullptr;
    if (int rc = api_.post_recv(qps_[qp].qp, &wr, &bad)) {
      fail({ErrorKind::Transport, fmt::format("ibv_post_recv on QP {:#x} failed: {}", qps_[qp].qp->qp_num, std::strerror(rc))});
      return;
    }
  }
}

void Link::post_eager_receive(uint32_t index) {
  ibv_sge sge{reinterpret_cast<uint64_t>(eager_in_ + index * wire::kEagerSlotBytes),
              static_cast<uint32_t>(wire::kEagerSlotBytes), ctrl_mr_->lkey};
  ibv_recv_wr wr{};
  wr.wr_id = make_wr_id(WrKind::EagerRecv, id_, 0, index);
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  if (int rc = api_.post_recv(control_.qp, &wr, &bad))
    fail({ErrorKind::Transport, fmt::format("ibv_post_recv on QP {:#x} failed: {}", control_.qp->qp_num, std::strerror(rc))});
}

// The registration for a message buffer, and its memory kind. `defer_host`: host memory that may
// go eagerly is registered later, if at all.
std::shared_ptr<Registration> Link::registration(std::byte* buf, size_t bytes, MemoryRegion* mr, MemoryKind& kind,
                                                 const char* what, bool defer_host) {
  if (auto* region = dynamic_cast<VerbsRegion*>(mr)) {
    if (!region->contains(buf, bytes))
      throw InvalidArgumentError(t_.rank(), peer_, what,
                                 fmt::format("the buffer {}+{} is not inside the memory region passed with it",
                                             static_cast<void*>(buf), bytes));
    kind = region->kind();
    if (region->registration()) return region->registration();
  } else {
    kind = MemoryKind::Host;
    if (t_.gdr().cuda && cuda::is_device_pointer(*t_.gdr().cuda, buf)) kind = MemoryKind::Cuda;
  }
  if (kind == MemoryKind::Cuda && !t_.gdr().direct()) return nullptr;  // staged
  if (kind == MemoryKind::Host && defer_host) return nullptr;
  return t_.user_registration(buf, bytes, kind);
}

// CUDA memory without GPUDirect: the message goes through a registered host buffer.
void Link::stage(Op& op, void* user_buf, const char* what) {
  const cuda::CudaDriver& cuda = *t_.gdr().cuda;
  op.device_buf = user_buf;
  op.bounce = t_.take_bounce(op.bytes);
  op.buf = op.bounce->as<std::byte>();
  op.reg = t_.cache().acquire(op.buf, op.bytes, MemoryKind::Host);
  if (op.is_send) {
    cuda::make_pointer_context_current(cuda, user_buf);
    cuda::CUresult r = cuda.memcpy_dtoh(op.buf, reinterpret_cast<cuda::CUdeviceptr>(user_buf), op.bytes);
    if (r != cuda::kCudaSuccess)
      throw TransportError(t_.rank(), peer_, what,
                           fmt::format("copying {} bytes from the GPU for staging failed: {}", op.bytes,
                                       cuda::cuda_error_text(cuda, r)));
  }
}

std::unique_ptr<Request> Link::isend(const void* buf, size_t bytes, MemoryRegion* mr, Tag tag) {
  auto op = std::make_shared<Op>();
  op->is_send = true;
  op->serial = next_send_serial_++;
  op->tag = tag;
  op->buf = static_cast<std::byte*>(const_cast<void*>(buf));
  op->bytes = bytes;
  if (bytes > 0 && !failure_) {
    op->reg = registration(op->buf, bytes, mr, op->kind, "send", bytes <= wire::kEagerBytes);
    if (op->kind == MemoryKind::Cuda && !op->reg) stage(*op, const_cast<void*>(buf), "send");
  }
  op->msn = send_msn_[tag]++;
  send_order_[tag].push_back(op);
  auto req = std::make_unique<VerbsRequest>(shared_from_this(), op);
  if (failure_ || !connected_) return req;  // test() reports the failure
  sends_by_tag_[tag].push_back(op);
  ++unmatched_sends_;
  poll_fifo();
  resolve(tag);
  if (unmatched_sends_ > 0) t_.add_hungry(this);
  return req;
}

// Sends the tag's waiting messages, in order: into the buffer a clear-to-send advertises, or
// eagerly when no clear-to-send has come for a small one. Entries for messages that went eagerly
// are voided.
void Link::resolve(Tag tag) {
  auto sit = sends_by_tag_.find(tag);
  auto cit = cts_by_tag_.find(tag);
  const uint64_t next_msn = sit != sends_by_tag_.end() ? sit->second.front()->msn : send_msn_[tag];
  if (cit != cts_by_tag_.end()) {
    auto& entries = cit->second;
    while (!entries.empty() && entries.front().msn < next_msn) {
      void_backlog_.push_back(entries.front().slot);
      entries.pop_front();
    }
    if (entries.empty()) {
      cts_by_tag_.erase(cit);
      cit = cts_by_tag_.end();
    }
  }
  while (!void_backlog_.empty() && post_void(void_backlog_.front())) void_backlog_.pop_front();
  if (sit == sends_by_tag_.end()) return;
  auto& sends = sit->second;
  while (!sends.empty()) {
    auto op = sends.front();
    if (cit != cts_by_tag_.end() && cit->second.front().msn == op->msn) {
      match(op, cit->second.front());
      cit->second.pop_front();
      if (cit->second.empty()) {
        cts_by_tag_.erase(cit);
        cit = cts_by_tag_.end();
      }
    } else if (op->bytes <= wire::kEagerBytes && op->kind == MemoryKind::Host && !op->device_buf) {
      if (!post_eager(op)) break;  // no credit (or no room) yet
    } else {
      break;  // waits for its clear-to-send
    }
    sends.pop_front();
    --unmatched_sends_;
  }
  if (sends.empty()) sends_by_tag_.erase(sit);
}

uint32_t Link::eager_credits() {
  remote_released_ = std::max(remote_released_, __atomic_load_n(credits_in_, __ATOMIC_ACQUIRE));
  return wire::kEagerSlots - static_cast<uint32_t>(eager_sent_ - remote_released_);
}

bool Link::post_eager(const std::shared_ptr<Op>& op) {
  if (eager_credits() == 0 || control_.room() < 1) {
    credit_starved_ = true;
    return false;
  }
  const uint32_t index = static_cast<uint32_t>(eager_sent_ % wire::kEagerSlots);
  std::byte* slot = eager_out_ + index * wire::kEagerSlotBytes;
  wire::EagerHeader hdr{op->tag, op->msn, op->bytes, 0};
  std::memcpy(slot, &hdr, sizeof hdr);
  if (op->bytes) std::memcpy(slot + sizeof hdr, op->buf, op->bytes);
  const uint32_t len = static_cast<uint32_t>(sizeof hdr + op->bytes);
  ibv_sge sge{reinterpret_cast<uint64_t>(slot), len, ctrl_mr_->lkey};
  ibv_send_wr wr{};
  wr.wr_id = make_wr_id(WrKind::EagerSend, id_, 0, op->serial);
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_SEND;
  ++control_.posted;
  const bool signal = control_.posted - control_.last_signaled >= kSqDepth / 2;
  wr.send_flags = (signal ? IBV_SEND_SIGNALED : 0) | (len <= max_inline_ ? IBV_SEND_INLINE : 0);
  if (signal) {
    control_.signaled.push_back(control_.posted);
    control_.last_signaled = control_.posted;
  }
  ibv_send_wr* bad = nullptr;
  if (int rc = api_.post_send(control_.qp, &wr, &bad)) {
    fail({ErrorKind::Transport,
          fmt::format("ibv_post_send (eager) on QP {:#x} to rank {} failed: {}", control_.qp->qp_num, peer_, std::strerror(rc))});
    return true;
  }
  ++eager_sent_;
  finish(op);  // the bytes are copied: the caller's buffer is free again
  return true;
}

// A clear-to-send arrived for a message that went eagerly: free its slot at the receiver.
bool Link::post_void(uint32_t slot) {
  log::trace("verbs: voiding slot {} of rank {}", slot, peer_);
  std::vector<Piece> pieces{{0, WrKind::Void, IBV_WR_RDMA_WRITE_WITH_IMM, 0, 0, 0, 0, 0, wire::encode_void(slot), false, false}};
  if (qps_[0].room() < 1) return false;
  post_pieces(pieces, slot);
  return true;
}

// Tells the sender how many eager buffers are free again, when CTS entries have not.
void Link::return_credits(bool force) {
  if (eager_released_ == credits_returned_) return;
  if (!force && eager_released_ - credits_returned_ < wire::kEagerSlots / 4) return;
  if (control_.room() < 1) return;
  *credits_out_ = eager_released_;
  ibv_sge sge{reinterpret_cast<uint64_t>(credits_out_), 8, ctrl_mr_->lkey};
  ibv_send_wr wr{};
  wr.wr_id = make_wr_id(WrKind::Credit, id_, 0, 0);
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_RDMA_WRITE;
  wr.wr.rdma.remote_addr = remote_credits_;
  wr.wr.rdma.rkey = remote_fifo_rkey_;
  ++control_.posted;
  const bool signal = control_.posted - control_.last_signaled >= kSqDepth / 2;
  wr.send_flags = (signal ? IBV_SEND_SIGNALED : 0) | (max_inline_ >= 8 ? IBV_SEND_INLINE : 0);
  if (signal) {
    control_.signaled.push_back(control_.posted);
    control_.last_signaled = control_.posted;
  }
  ibv_send_wr* bad = nullptr;
  if (int rc = api_.post_send(control_.qp, &wr, &bad)) {
    fail({ErrorKind::Transport, fmt::format("ibv_post_send (credits) to rank {} failed: {}", peer_, std::strerror(rc))});
    return;
  }
  credits_returned_ = eager_released_;
}

// An eager message landed in buffer `index`: hand it to its receive, or keep it until one is
// posted; the buffer goes straight back to the control QP.
void Link::on_eager(uint32_t index, uint32_t bytes) {
  const std::byte* slot = eager_in_ + index * wire::kEagerSlotBytes;
  wire::EagerHeader hdr;
  std::memcpy(&hdr, slot, sizeof hdr);
  if (bytes < sizeof hdr || hdr.size != bytes - sizeof hdr) {
    fail({ErrorKind::Transport, fmt::format("rank {} sent a malformed eager message ({} bytes)", peer_, bytes)});
    return;
  }
  const std::byte* data = slot + sizeof hdr;
  auto pit = posted_recvs_.find(hdr.tag);
  std::shared_ptr<Op> op;
  if (pit != posted_recvs_.end()) {
    auto it = pit->second.find(hdr.msn);
    if (it != pit->second.end()) {
      op = it->second;
      pit->second.erase(it);
      if (pit->second.empty()) posted_recvs_.erase(pit);
    }
  }
  if (op) {
    deliver_eager(op, data, hdr.size);
  } else {
    unexpected_[hdr.tag][hdr.msn].assign(data, data + hdr.size);
  }
  post_eager_receive(index);
  ++eager_released_;
  return_credits(false);
}

void Link::deliver_eager(const std::shared_ptr<Op>& op, const std::byte* data, uint64_t size) {
  if (size > op->bytes) {
    op->failed = Failure{ErrorKind::Mismatch,
                         fmt::format("the message from rank {} with tag {} is {} bytes, larger than the {} bytes posted",
                                     peer_, op->tag, size, op->bytes)};
  } else if (size > 0 && (op->device_buf || op->kind == MemoryKind::Cuda)) {
    // Into device memory (staged or not): a driver copy, not memcpy.
    const cuda::CudaDriver& cuda = *t_.gdr().cuda;
    void* dst = op->device_buf ? op->device_buf : op->buf;
    cuda::make_pointer_context_current(cuda, dst);
    cuda::CUresult r = cuda.memcpy_htod(reinterpret_cast<cuda::CUdeviceptr>(dst), data, size);
    if (r != cuda::kCudaSuccess)
      op->failed = Failure{ErrorKind::Transport,
                           fmt::format("copying a {}-byte eager message to the GPU failed: {}", size, cuda::cuda_error_text(cuda, r))};
    op->result_bytes = size;
  } else {
    if (size) std::memcpy(op->buf, data, size);
    op->result_bytes = size;
  }
  if (op->seq != 0) {
    op->eager_done = true;  // its clear-to-send is out: the slot waits for the sender's void
  } else {
    cts_backlog_.erase(std::remove(cts_backlog_.begin(), cts_backlog_.end(), op), cts_backlog_.end());
  }
  finish(op);
}

std::unique_ptr<Request> Link::irecv(void* buf, size_t bytes, MemoryRegion* mr, Tag tag) {
  auto op = std::make_shared<Op>();
  op->serial = next_recv_serial_++;
  op->tag = tag;
  op->buf = static_cast<std::byte*>(buf);
  op->bytes = bytes;
  if (bytes > 0 && !failure_) {
    op->reg = registration(op->buf, bytes, mr, op->kind, "recv");
    if (op->kind == MemoryKind::Cuda && !op->reg) stage(*op, buf, "recv");
  }
  op->msn = recv_msn_[tag]++;
  recv_order_[tag].push_back(op);
  auto req = std::make_unique<VerbsRequest>(shared_from_this(), op);
  if (failure_ || !connected_) return req;
  // Already here as an eager message?
  if (auto uit = unexpected_.find(tag); uit != unexpected_.end()) {
    if (auto m = uit->second.find(op->msn); m != uit->second.end()) {
      std::vector<std::byte> data = std::move(m->second);
      uit->second.erase(m);
      if (uit->second.empty()) unexpected_.erase(uit);
      deliver_eager(op, data.data(), data.size());
      return req;
    }
  }
  posted_recvs_[tag][op->msn] = op;
  if (!cts_backlog_.empty() || !slots_.can_post() || !post_cts(op)) cts_backlog_.push_back(op);
  return req;
}

// Writes the clear-to-send for `op` into the peer's FIFO.
bool Link::post_cts(const std::shared_ptr<Op>& op) {
  Qp& q = qps_[0];
  if (q.room() < 1) return false;
  const uint64_t seq = slots_.post();
  const uint32_t slot = slots_.slot_of(seq);
  wire::CtsEntry& e = cts_out_[slot];
  e.seq_head = seq;
  e.addr = reinterpret_cast<uint64_t>(op->buf);
  e.size = op->bytes;
  e.tag = op->tag;
  e.rkey = op->reg ? op->reg->rkey() : 0;
  e.slot = slot;
  e.msn = op->msn;
  e.eager_released = eager_released_;
  credits_returned_ = eager_released_;  // the entry carries them
  e.seq_tail = seq;
  op->slot = slot;
  op->seq = seq;
  slot_ops_[slot] = op;
  log::trace("verbs: CTS #{} (slot {}, tag {}, {} bytes) to rank {}", seq, slot, op->tag, op->bytes, peer_);
  std::vector<Piece> pieces{{0, WrKind::Cts, IBV_WR_RDMA_WRITE, reinterpret_cast<uint64_t>(&e),
                             static_cast<uint32_t>(sizeof e), ctrl_mr_->lkey, remote_fifo_ + slot * sizeof(wire::CtsEntry),
                             remote_fifo_rkey_, 0, max_inline_ >= sizeof e, false}};
  return post_pieces(pieces, static_cast<uint32_t>(seq));
}

void Link::match(const std::shared_ptr<Op>& op, const wire::CtsEntry& cts) {
  op->cts = cts;
  // Small messages are registered only when they do not go eagerly.
  if (!op->reg && op->bytes > 0 && !failure_) {
    try {
      op->reg = t_.user_registration(op->buf, op->bytes, op->kind);
    } catch (const Error& e) {
      op->failed = Failure{e.kind(), e.detail()};
      finish(op);
      return;
    }
  }
  if (!ready_.empty() || !post_data(op)) ready_.push_back(op);
}

// Turns a matched send into work requests: the data as RDMA WRITEs, each stripe ending with a
// WRITE WITH IMM. False when the send queues have no room (the caller retries later).
bool Link::post_data(const std::shared_ptr<Op>& op) {
  const wire::CtsEntry& cts = op->cts;
  const uint64_t m = op->bytes;
  const uint32_t slot = cts.slot;
  const uint32_t nqps = static_cast<uint32_t>(qps_.size());
  std::vector<Piece> pieces;
  auto size_write = [&](uint32_t qp) {
    sizes_out_[slot] = m;
    pieces.push_back({qp, WrKind::SizeWrite, IBV_WR_RDMA_WRITE, reinterpret_cast<uint64_t>(&sizes_out_[slot]), 8,
                      ctrl_mr_->lkey, remote_sizes_ + slot * sizeof(uint64_t), remote_sizes_rkey_, 0, max_inline_ >= 8,
                      false});
  };
  if (m > cts.size) {
    // Larger than the posted receive: nothing lands; the receiver learns the size and fails it.
    size_write(0);
    pieces.push_back({0, WrKind::Data, IBV_WR_RDMA_WRITE_WITH_IMM, 0, 0, 0, cts.addr, cts.rkey,
                      wire::encode_large(slot, 1, true, true), false, true});
  } else {
    const uint32_t stripes = wire::stripe_count(m, nqps);
    const bool small = stripes == 1 && m < wire::kImmSmallLimit;
    const bool table = !small && m != cts.size;
    const uint32_t imm = small ? wire::encode_small(slot, static_cast<uint32_t>(m))
                               : wire::encode_large(slot, stripes, table, false);
    const uint32_t first = next_qp_++ % nqps;
    const uint64_t chunk = stripes == 1 ? m : ((m + stripes - 1) / stripes + 4095) & ~uint64_t{4095};
    // Inline data is copied by the CPU inside ibv_post_send: never from device memory.
    const bool inlined = stripes == 1 && m <= max_inline_ && op->kind == MemoryKind::Host;
    const uint32_t lkey = op->reg ? op->reg->lkey() : 0;
    for (uint32_t s = 0; s < stripes; ++s) {
      const uint32_t qp = (first + s) % nqps;
      const uint64_t off = s * chunk;
      const uint64_t len = std::min(chunk, m - std::min(m, off));
      if (s == 0 && table) size_write(qp);
      uint64_t done = 0;
      do {
        const uint64_t piece = std::min(len - done, kMaxWriteBytes);
        const bool last = done + piece == len;
        pieces.push_back({qp, inlined ? WrKind::InlineData : WrKind::Data,
                          last ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE,
                          reinterpret_cast<uint64_t>(op->buf) + off + done, static_cast<uint32_t>(piece), lkey,
                          cts.addr + off + done, cts.rkey, last ? imm : 0, inlined, last && !inlined});
        done += piece;
      } while (done < len);
    }
  }
  // Room on every QP involved first, so a message is never half posted.
  std::vector<uint32_t> need(nqps, 0);
  for (const auto& p : pieces) ++need[p.qp];
  for (uint32_t q = 0; q < nqps; ++q)
    if (need[q] > qps_[q].room()) return false;
  op->stripes_left = 0;
  for (const auto& p : pieces) op->stripes_left += p.signal ? 1 : 0;
  if (op->stripes_left > 0) posted_[op->serial] = op;
  if (!post_pieces(pieces, op->serial)) return true;  // the failure is recorded; the op reports it
  if (op->stripes_left == 0) finish(op);  // inline: the data left with the work request
  return true;
}

bool Link::post_pieces(std::vector<Piece>& pieces, uint32_t serial) {
  const uint32_t nqps = static_cast<uint32_t>(qps_.size());
  for (uint32_t qi = 0; qi < nqps; ++qi) {
    ibv_send_wr wrs[16];
    ibv_sge sges[16];
    int n = 0;
    Qp& q = qps_[qi];
    auto flush_chain = [&]() -> bool {
      if (n == 0) return true;
      for (int i = 0; i + 1 < n; ++i) wrs[i].next = &wrs[i + 1];
      wrs[n - 1].next = nullptr;
      ibv_send_wr* bad = nullptr;
      int rc = api_.post_send(q.qp, wrs, &bad);
      n = 0;
      if (rc) {
        fail({ErrorKind::Transport,
              fmt::format("ibv_post_send on QP {:#x} to rank {} failed: {}", q.qp->qp_num, peer_, std::strerror(rc))});
        return false;
      }
      return true;
    };
    for (const Piece& p : pieces) {
      if (p.qp != qi) continue;
      if (n == 16 && !flush_chain()) return false;
      ibv_send_wr& wr = wrs[n];
      ibv_sge& sge = sges[n];
      wr = {};
      sge = {p.local, p.length, p.lkey};
      wr.wr_id = make_wr_id(p.kind, id_, qi, serial);
      wr.sg_list = &sge;
      wr.num_sge = p.length ? 1 : 0;
      wr.opcode = p.opcode;
      wr.imm_data = htonl(p.imm);
      wr.wr.rdma.remote_addr = p.remote;
      wr.wr.rdma.rkey = p.rkey;
      ++q.posted;
      // Unsignalled work requests retire only with a later signalled one: signal at least every
      // half queue so the send queue never fills with requests nobody will report.
      bool signal = p.signal || q.posted - q.last_signaled >= kSqDepth / 2;
      wr.send_flags = (signal ? IBV_SEND_SIGNALED : 0) | (p.inlined ? IBV_SEND_INLINE : 0);
      if (signal) {
        q.signaled.push_back(q.posted);
        q.last_signaled = q.posted;
      }
      ++n;
    }
    if (!flush_chain()) return false;
  }
  return true;
}

void Link::retire(Qp& q) {
  if (q.signaled.empty()) return;
  q.retired = q.signaled.front();
  q.signaled.pop_front();
}

void Link::drain_backlogs() {
  while (!void_backlog_.empty() && !failure_ && post_void(void_backlog_.front())) void_backlog_.pop_front();
  if (credits_returned_ != eager_released_) return_credits(false);
  while (!ready_.empty() && !failure_) {
    auto op = ready_.front();
    if (!post_data(op)) break;
    ready_.pop_front();
  }
  while (!cts_backlog_.empty() && !failure_ && slots_.can_post()) {
    if (!post_cts(cts_backlog_.front())) break;
    cts_backlog_.pop_front();
  }
}

bool Link::poll_fifo() {
  if (!connected_ || closed_) return false;
  bool moved = false;
  while (auto e = reader_.poll()) {
    moved = true;
    log::trace("verbs: rank {} cleared to send #{} (tag {}, msn {}, {} bytes)", peer_, e->seq_head, e->tag, e->msn, e->size);
    remote_released_ = std::max(remote_released_, e->eager_released);
    cts_by_tag_[e->tag].push_back(*e);
    resolve(e->tag);
  }
  // Credits came back: small sends that waited for them may go now.
  if (credit_starved_ && eager_credits() > 0) {
    credit_starved_ = false;
    std::vector<Tag> tags;
    for (auto& [tag, q] : sends_by_tag_) tags.push_back(tag);
    for (Tag tag : tags) resolve(tag);
    moved = true;
  }
  return moved;
}

void Link::on_completion(const ibv_wc& wc, const WrId& id) {
  if (closed_) return;
  if (wc.status != IBV_WC_SUCCESS) {
    on_error(wc, id);
    return;
  }
  Qp& q = on_control_qp(id.kind) ? control_ : qps_[id.qp];
  switch (id.kind) {
    case WrKind::Recv:
      post_receives(id.qp, 1);
      if (wc.wc_flags & IBV_WC_WITH_IMM) on_imm(ntohl(wc.imm_data));
      break;
    case WrKind::EagerRecv:
      on_eager(id.serial, wc.byte_len);
      break;
    case WrKind::Data: {
      retire(q);
      auto it = posted_.find(id.serial);
      if (it != posted_.end() && --it->second->stripes_left == 0) {
        auto op = it->second;
        posted_.erase(it);
        finish(op);
      }
      break;
    }
    default:
      retire(q);
      break;
  }
  drain_backlogs();
}

// A WRITE WITH IMM arrived: one more stripe of the receive in that slot has landed.
void Link::on_imm(uint32_t imm) {
  const wire::Imm m = wire::decode(imm);
  if (m.slot >= depth_ || !slot_ops_[m.slot]) {
    fail({ErrorKind::Transport, fmt::format("rank {} completed FIFO slot {}, which holds no receive", peer_, m.slot)});
    return;
  }
  auto op = slot_ops_[m.slot];
  if (m.void_slot) {  // the message went eagerly; its receive is complete already
    slot_ops_[m.slot] = nullptr;
    slots_.release(m.slot);
    drain_backlogs();
    return;
  }
  if (++op->stripes_got < m.stripes) return;
  slot_ops_[m.slot] = nullptr;
  slots_.release(m.slot);
  if (auto pit = posted_recvs_.find(op->tag); pit != posted_recvs_.end()) {
    pit->second.erase(op->msn);
    if (pit->second.empty()) posted_recvs_.erase(pit);
  }
  uint64_t size = op->bytes;
  if (m.small)
    size = m.size;
  else if (m.size_in_table || m.truncated)
    size = __atomic_load_n(&sizes_in_[m.slot], __ATOMIC_ACQUIRE);
  if (m.truncated) {
    op->failed = Failure{ErrorKind::Mismatch,
                         fmt::format("the message from rank {} with tag {} is {} bytes, larger than the {} bytes posted",
                                     peer_, op->tag, size, op->bytes)};
    finish(op);
  } else {
    op->result_bytes = size;
    if (op->device_buf && size > 0) {
      const cuda::CudaDriver& cuda = *t_.gdr().cuda;
      cuda::make_pointer_context_current(cuda, op->device_buf);
      cuda::CUresult r = cuda.memcpy_htod(reinterpret_cast<cuda::CUdeviceptr>(op->device_buf), op->buf, size);
      if (r != cuda::kCudaSuccess)
        op->failed = Failure{ErrorKind::Transport, fmt::format("copying {} staged bytes to the GPU failed: {}", size,
                                                               cuda::cuda_error_text(cuda, r))};
      finish(op);
    } else if (op->kind == MemoryKind::Cuda && size > 0 && t_.gdr().flush_needed(op->buf)) {
      t_.flush(shared_from_this(), op);
    } else {
      finish(op);
    }
  }
  drain_backlogs();
}

void Link::finish(const std::shared_ptr<Op>& op) {
  log::trace("verbs: {} #{} (tag {}) to/from rank {} finished", op_name(*op), op->serial, op->tag, peer_);
  if (op->done) return;
  op->done = true;
  if (op->bounce) t_.give_bounce(std::move(op->bounce));
  op->reg.reset();
  settle(*op);
}

// Marks completed ops visible in posting order, per tag and direction.
void Link::settle(const Op& op) {
  auto& order = op.is_send ? send_order_ : recv_order_;
  auto it = order.find(op.tag);
  if (it == order.end()) return;
  auto& q = it->second;
  while (!q.empty() && q.front()->done) {
    q.front()->visible = true;
    q.pop_front();
  }
  if (q.empty()) order.erase(it);
}

std::string Link::describe(const WrId& id) const {
  switch (id.kind) {
    case WrKind::Recv: return "a receive for immediates";
    case WrKind::Cts: return fmt::format("the clear-to-send write for receive slot {}", (id.serial - 1) % depth_);
    case WrKind::SizeWrite: return fmt::format("the size write of send #{}", id.serial);
    case WrKind::Data:
    case WrKind::InlineData: {
      auto it = posted_.find(id.serial);
      if (it != posted_.end())
        return fmt::format("send #{} (tag {}, {} bytes)", id.serial, it->second->tag, it->second->bytes);
      return fmt::format("send #{}", id.serial);
    }
    case WrKind::Flush: return "the GPUDirect flush read";
    case WrKind::Void: return fmt::format("the void for receive slot {}", id.serial);
    case WrKind::EagerRecv: return "an eager receive buffer";
    case WrKind::EagerSend: return fmt::format("eager send #{}", id.serial);
    case WrKind::Credit: return "the eager credit return";
    case WrKind::Drain:
    case WrKind::DrainControl: return "the closing drain";
  }
  return "a work request";
}

void Link::on_error(const ibv_wc& wc, const WrId& id) {
  const VerbsApi& api = api_;
  if (wc.status == IBV_WC_WR_FLUSH_ERR) {
    // A consequence: the QP is in the error state because of something reported elsewhere.
    fail({ErrorKind::Transport,
          fmt::format("work on QP {:#x} to rank {} was flushed: the queue pair is in the error state", wc.qp_num, peer_),
          true});
    return;
  }
  const char* verb = id.kind == WrKind::Recv || id.kind == WrKind::EagerRecv ? "receive"
                     : id.kind == WrKind::EagerSend                           ? "SEND"
                     : id.kind == WrKind::Data || id.kind == WrKind::InlineData || id.kind == WrKind::Void
                         ? "RDMA WRITE WITH IMM"
                         : "RDMA WRITE";
  std::string vendor = fmt::format("vendor error {:#x}", wc.vendor_err);
  if (api.vendor_error_str && wc.vendor_err) vendor += fmt::format(": {}", api.vendor_error_str(wc.vendor_err));
  std::string hint;
  if (wc.status == IBV_WC_RETRY_EXC_ERR)
    hint = fmt::format("; rank {} is unreachable or gone (retries exhausted)", peer_);
  else if (wc.status == IBV_WC_REM_ACCESS_ERR)
    hint = fmt::format("; rank {} refused the access (wrong key, outside the region, or not permitted)", peer_);
  else if (wc.status == IBV_WC_RNR_RETRY_EXC_ERR)
    hint = fmt::format("; rank {} had no receive posted", peer_);
  Failure f{wc.status == IBV_WC_RETRY_EXC_ERR ? ErrorKind::PeerLost : ErrorKind::Transport,
            fmt::format("{} of {} failed on QP {:#x} (rank {} -> rank {}): {} (status {}, {}){}", verb, describe(id),
                        wc.qp_num, t_.rank(), peer_, api.wc_status_str(wc.status), static_cast<int>(wc.status), vendor,
                        hint)};
  if (id.kind == WrKind::Data) {
    auto it = posted_.find(id.serial);
    if (it != posted_.end()) it->second->failed = f;
  }
  fail(f);
}

void Link::fail(Failure f) {
  if (failure_ && !(failure_->weak && !f.weak)) return;
  if (draining_)
    log::trace("verbs: closing the connection to rank {}: {}", peer_, f.detail);  // the peer closed first
  else if (!failure_ || failure_->weak)
    log::info("verbs: connection to rank {} failed: {}", peer_, f.detail);
  failure_ = std::move(f);
}

[[noreturn]] void Link::throw_failure(const Failure& f, const Op& op) const {
  throw_error(f.kind, rank_, peer_, op_name(op), f.detail);
}

bool Link::test(Op& op) {
  // A device-wide failure (port down) explains whatever else failed, so it is reported first.
  // A closed link always has a failure of its own and is not asked about the transport (which may
  // be gone).
  if (!closed_)
    if (const auto& tf = t_.transport_failure(); tf && !op.visible) throw_failure(*tf, op);
  if (op.failed) throw_failure(*op.failed, op);
  if (op.visible) return true;
  if (failure_) throw_failure(*failure_, op);
  return false;
}

void Link::cancel(const std::shared_ptr<Op>& op) {
  // Work already handed to the HCA cannot be recalled: it completes into memory as posted.
  op->cancelled = true;
  if (op->is_send) {
    auto it = sends_by_tag_.find(op->tag);
    if (it != sends_by_tag_.end()) {
      auto& q = it->second;
      auto pos = std::find(q.begin(), q.end(), op);
      if (pos != q.end()) {
        q.erase(pos);
        --unmatched_sends_;
        if (q.empty()) sends_by_tag_.erase(it);
      }
    }
    ready_.erase(std::remove(ready_.begin(), ready_.end(), op), ready_.end());
  } else {
    cts_backlog_.erase(std::remove(cts_backlog_.begin(), cts_backlog_.end(), op), cts_backlog_.end());
    // Its message, should it come eagerly, is dropped rather than copied into a buffer the caller
    // may have freed. (One already cleared to send may still be written there: RDMA cannot be
    // recalled.)
    if (auto pit = posted_recvs_.find(op->tag); pit != posted_recvs_.end()) {
      pit->second.erase(op->msn);
      if (pit->second.empty()) posted_recvs_.erase(pit);
    }
  }
  op->done = true;  // later ops of the same tag need not wait for it
  settle(*op);
}

// ---- VerbsTransport -----------------------------------------------------------------------------

const VerbsApi& pick_api(const Options& o, int rank) {
  if (names_soft_device(o.ib_hca)) return soft_verbs();
  std::string why;
  const VerbsApi* api = load_libibverbs(&why);
  if (!api) throw TransportError(rank, -1, "create transport", "verbs unavailable: " + why);
  return *api;
}

VerbsTransport::VerbsTransport(const TransportSetup& setup)
    : api_(pick_api(setup.options, setup.rank)),
      rank_(setup.rank),
      local_rank_(setup.local_rank),
      world_(setup.world_size),
      opts_(setup.options) {
  open(setup);
}

void VerbsTransport::open(const TransportSetup&) {
  std::string why;
  auto devices = query_devices(api_, default_sysfs_root(), &why);
  if (devices.empty()) throw TransportError(rank_, -1, "create transport", "verbs unavailable: " + why);
  std::vector<PortChoice> ports;
  try {
    ports = choose_ports(devices, api_.is_soft ? std::string() : opts_.ib_hca, opts_.ib_gid_index, &why);
  } catch (const std::invalid_argument& e) {
    throw InvalidArgumentError(rank_, -1, "create transport", e.what());
  }
  if (ports.empty()) throw TransportError(rank_, -1, "create transport", "verbs unavailable: " + why);
  // Ranks on one host spread over the usable ports.
  const PortChoice& choice = ports[static_cast<size_t>(std::max(0, local_rank_)) % ports.size()];
  device_name_ = choice.device;
  port_num_ = static_cast<uint8_t>(choice.port);
  gid_index_ = choice.gid_index;
  ethernet_ = choice.ethernet;

  dev_ = std::make_shared<Device>(api_);
  int n = 0;
  ibv_device** list = api_.get_device_list(&n);
  for (int i = 0; list && i < n && !dev_->ctx; ++i)
    if (device_name_ == api_.get_device_name(list[i])) dev_->ctx = api_.open_device(list[i]);
  if (list) api_.free_device_list(list);
  if (!dev_->ctx)
    throw TransportError(rank_, -1, "create transport",
                         fmt::format("verbs unavailable: cannot open {}: {}", device_name_, std::strerror(errno)));
  if (api_.query_device(dev_->ctx, &dev_attr_) != 0 || api_.query_port(dev_->ctx, port_num_, &port_attr_) != 0)
    throw TransportError(rank_, -1, "create transport",
                         fmt::format("verbs unavailable: querying {} port {} failed", device_name_, port_num_));
  {
    const int lanes = port_attr_.active_width == 1 ? 1 : port_attr_.active_width == 2 ? 4 : port_attr_.active_width == 4 ? 8
                      : port_attr_.active_width == 8 ? 12 : port_attr_.active_width == 16 ? 2 : 0;
    const double per_lane = port_attr_.active_speed == 1 ? 2.5 : port_attr_.active_speed == 2 ? 5 : port_attr_.active_speed == 4 ? 10
                            : port_attr_.active_speed == 8 ? 10 : port_attr_.active_speed == 16 ? 14 : port_attr_.active_speed == 32 ? 25
                            : port_attr_.active_speed == 64 ? 50 : port_attr_.active_speed == 128 ? 100 : 0;
    link_gbit_ = lanes * per_lane;
  }
  if (gid_index_ >= 0 && api_.query_gid(dev_->ctx, port_num_, gid_index_, &gid_) != 0)
    throw TransportError(rank_, -1, "create transport",
                         fmt::format("reading GID {} of {} port {} failed", gid_index_, device_name_, port_num_));
  dev_->pd = api_.alloc_pd(dev_->ctx);
  if (!dev_->pd) throw TransportError(rank_, -1, "create transport", fmt::format("ibv_alloc_pd failed: {}", std::strerror(errno)));
  // One CQ for every QP: progress polls one queue however many peers there are.
  const int peers = std::max(1, world_ - 1);
  const int want = peers * opts_.ib_qps * static_cast<int>(kSqDepth + wire::kFifoDepth) + 2 * static_cast<int>(kSqDepth);
  const int cqe = std::min(want, std::max(1, dev_attr_.max_cqe));
  dev_->cq = api_.create_cq(dev_->ctx, cqe, nullptr, nullptr, 0);
  if (!dev_->cq) throw TransportError(rank_, -1, "create transport", fmt::format("ibv_create_cq({}) failed: {}", cqe, std::strerror(errno)));

  gdr_ = detect_gpudirect(api_, dev_->pd);
  if (const char* v = std::getenv("RINGLINK_IB_MR_CACHE"); v && std::string(v) == "0") cache_user_buffers_ = false;
  cache_ = std::make_unique<MrCache>(
      [this](uintptr_t start, size_t length, MemoryKind kind) { return register_range(start, length, kind); },
      kMrCacheBytes,
      [this](uintptr_t p, MemoryKind kind) -> uint64_t {
        return kind == MemoryKind::Cuda ? cuda_buffer_id(gdr_, p) : 0;
      });

  // The async fd is polled by a thread; reading it must never block.
  ::fcntl(dev_->ctx->async_fd, F_SETFL, ::fcntl(dev_->ctx->async_fd, F_GETFL) | O_NONBLOCK);
  async_stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  async_thread_ = std::thread([this] { async_main(); });

  name_ = api_.is_soft ? "verbs/soft" : fmt::format("verbs/{}:{}", device_name_, port_num_);
  std::string addressing = gid_index_ >= 0 ? fmt::format("GID {} ({})", gid_index_, ethernet_ ? "RoCE" : "InfiniBand GRH")
                                           : fmt::format("LID {:#x}", port_attr_.lid);
  log::info("transport {}: {} port {}, {}, MTU {}, {} QP(s) per peer, GPUDirect: {} ({})", name_, device_name_,
            port_num_, addressing, mtu_bytes(port_attr_.active_mtu), opts_.ib_qps, to_string(gdr_.mode), gdr_.reason);
  if (api_.is_soft) log::info("transport {}: the software verbs test double (loopback TCP), not RDMA", name_);
}

VerbsTransport::~VerbsTransport() {
  if (async_thread_.joinable()) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(async_stop_fd_, &one, sizeof one);
    async_thread_.join();
  }
  if (async_stop_fd_ >= 0) ::close(async_stop_fd_);
  for (auto& [peer, link] : pending_) link->close();
  pending_.clear();
  for (Link* l : std::vector<Link*>(links_))
    if (l) l->close();
  flushes_.clear();
  if (flush_qp_) api_.destroy_qp(flush_qp_);
  flush_reg_.reset();
  cache_->clear();
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
    if (!gdr_.direct()) return std::make_shared<VerbsRegion>(ptr, bytes, kind, nullptr);  // staged per message
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

std::unique_ptr<HostBuffer> VerbsTransport::take_bounce(size_t bytes) {
  auto it = bounces_.lower_bound(bytes);
  if (it != bounces_.end() && it->first <= 2 * bytes + 4096) {
    auto b = std::move(it->second);
    bounces_.erase(it);
    return b;
  }
  return std::make_unique<HostBuffer>(bytes);
}

void VerbsTransport::give_bounce(std::unique_ptr<HostBuffer> b) {
  if (bounces_.size() >= 64) bounces_.erase(bounces_.begin());
  size_t size = b->size();
  bounces_.emplace(size, std::move(b));
}

bool VerbsTransport::progress() {
  bool moved = false;
  if (async_pending_.load(std::memory_order_acquire)) moved = drain_async();
  ibv_wc wc[32];
  for (int round = 0; round < 8; ++round) {
    int n = api_.poll_cq(dev_->cq, 32, wc);
    if (n < 0) {
      fail_all({ErrorKind::Transport, "ibv_poll_cq failed: the completion queue is broken"});
      return true;
    }
    for (int i = 0; i < n; ++i) {
      WrId id = parse(wc[i].wr_id);
      if (id.kind == WrKind::Flush) {
        on_flush_completion(wc[i], id.serial);
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

// ---- asynchronous events ---------------------------------------------------------------------

void VerbsTransport::async_main() {
  for (;;) {
    pollfd fds[2] = {{dev_->ctx->async_fd, POLLIN, 0}, {async_stop_fd_, POLLIN, 0}};
    int rc = ::poll(fds, 2, -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0 || fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    ibv_async_event ev{};
    if (api_.get_async_event(dev_->ctx, &ev) != 0) continue;
    AsyncEvent e{ev.event_type};
    switch (ev.event_type) {
      case IBV_EVENT_QP_FATAL:
      case IBV_EVENT_QP_REQ_ERR:
      case IBV_EVENT_QP_ACCESS_ERR:
      case IBV_EVENT_COMM_EST:
      case IBV_EVENT_SQ_DRAINED:
      case IBV_EVENT_PATH_MIG:
      case IBV_EVENT_PATH_MIG_ERR:
      case IBV_EVENT_QP_LAST_WQE_REACHED: e.qp_num = ev.element.qp ? ev.element.qp->qp_num : 0; break;
      case IBV_EVENT_PORT_ACTIVE:
      case IBV_EVENT_PORT_ERR:
      case IBV_EVENT_LID_CHANGE:
      case IBV_EVENT_PKEY_CHANGE:
      case IBV_EVENT_SM_CHANGE:
      case IBV_EVENT_CLIENT_REREGISTER:
      case IBV_EVENT_GID_CHANGE: e.port = ev.element.port_num; break;
      default: break;
    }
    api_.ack_async_event(&ev);
    {
      std::lock_guard lk(async_mu_);
      async_events_.push_back(e);
    }
    async_pending_.store(true, std::memory_order_release);
  }
}

bool VerbsTransport::drain_async() {
  std::vector<AsyncEvent> events;
  {
    std::lock_guard lk(async_mu_);
    events.swap(async_events_);
    async_pending_.store(false, std::memory_order_release);
  }
  for (const auto& e : events) {
    const char* what = api_.event_type_str(e.type);
    switch (e.type) {
      case IBV_EVENT_QP_FATAL:
      case IBV_EVENT_QP_REQ_ERR:
      case IBV_EVENT_QP_ACCESS_ERR:
      case IBV_EVENT_PATH_MIG_ERR: {
        auto it = qp_links_.find(e.qp_num);
        std::string detail = fmt::format("asynchronous event on QP {:#x}: {} (event {})", e.qp_num, what,
                                         static_cast<int>(e.type));
        if (e.type == IBV_EVENT_QP_ACCESS_ERR && it != qp_links_.end())
          detail += fmt::format("; rank {} wrote outside what this rank advertised, or with a wrong key",
                                it->second->peer());
        log::warn("transport {}: {}", name_, detail);
        if (it != qp_links_.end()) it->second->fail({ErrorKind::Transport, detail});
        break;
      }
      case IBV_EVENT_PORT_ERR:
      case IBV_EVENT_DEVICE_FATAL:
      case IBV_EVENT_CQ_ERR: {
        std::string detail = e.type == IBV_EVENT_PORT_ERR
                                 ? fmt::format("port {}:{} went down ({})", device_name_, e.port, what)
                                 : fmt::format("{} on {} ({})", what, device_name_, static_cast<int>(e.type));
        log::warn("transport {}: {}", name_, detail);
        if (e.type != IBV_EVENT_PORT_ERR || e.port == port_num_) fail_all({ErrorKind::Transport, detail});
        break;
      }
      default:
        log::info("transport {}: asynchronous event: {} (QP {:#x}, port {})", name_, what, e.qp_num, e.port);
        break;
    }
  }
  return !events.empty();
}

// ---- GPUDirect flush ---------------------------------------------------------------------------

void VerbsTransport::make_flush_qp() {
  ibv_qp_init_attr a{};
  a.send_cq = dev_->cq;
  a.recv_cq = dev_->cq;
  a.qp_type = IBV_QPT_RC;
  a.cap.max_send_wr = kSqDepth;
  a.cap.max_recv_wr = 1;
  a.cap.max_send_sge = 1;
  a.cap.max_recv_sge = 1;
  flush_qp_ = api_.create_qp(dev_->pd, &a);
  if (!flush_qp_) throw TransportError(rank_, -1, "flush", fmt::format("creating the flush QP failed: {}", std::strerror(errno)));
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_INIT;
  attr.port_num = port_num_;
  attr.qp_access_flags = kAccess;
  int rc = api_.modify_qp(flush_qp_, &attr, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
  // Connected to itself: a READ through it cannot complete before earlier writes into the GPU
  // buffer have reached it.
  attr = {};
  attr.qp_state = IBV_QPS_RTR;
  attr.path_mtu = port_attr_.active_mtu;
  attr.dest_qp_num = flush_qp_->qp_num;
  attr.max_dest_rd_atomic = 1;
  attr.min_rnr_timer = kMinRnrTimer;
  attr.ah_attr.dlid = port_attr_.lid;
  attr.ah_attr.port_num = port_num_;
  if (ethernet_ || gid_index_ >= 0) {
    attr.ah_attr.is_global = 1;
    attr.ah_attr.grh.dgid = gid_;
    attr.ah_attr.grh.sgid_index = static_cast<uint8_t>(std::max(0, gid_index_));
    attr.ah_attr.grh.hop_limit = 255;
  }
  if (!rc)
    rc = api_.modify_qp(flush_qp_, &attr,
                        IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                            IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
  attr = {};
  attr.qp_state = IBV_QPS_RTS;
  attr.timeout = static_cast<uint8_t>(opts_.ib_timeout);
  attr.retry_cnt = static_cast<uint8_t>(opts_.ib_retry_cnt);
  attr.rnr_retry = 7;
  attr.max_rd_atomic = 1;
  if (!rc)
    rc = api_.modify_qp(flush_qp_, &attr,
                        IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                            IBV_QP_MAX_QP_RD_ATOMIC);
  if (rc) throw TransportError(rank_, -1, "flush", fmt::format("connecting the flush QP failed: {}", std::strerror(rc)));
  flush_target_ = HostBuffer(4096);
  flush_reg_ = cache_->acquire(flush_target_.data(), 4, MemoryKind::Host);
  log::info("transport {}: GPUDirect flush enabled (a 1-byte RDMA READ after each receive into GPU memory)", name_);
}

void VerbsTransport::flush(const std::shared_ptr<Link>& link, const std::shared_ptr<Op>& op) {
  if (!flush_qp_) make_flush_qp();
  ibv_sge sge{reinterpret_cast<uint64_t>(flush_target_.data()), 1, flush_reg_->lkey()};
  ibv_send_wr wr{};
  const uint32_t serial = next_flush_++;
  wr.wr_id = make_wr_id(WrKind::Flush, 0, 0, serial);
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_RDMA_READ;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = reinterpret_cast<uint64_t>(op->buf);
  wr.wr.rdma.rkey = op->reg->rkey();
  ibv_send_wr* bad = nullptr;
  if (int rc = api_.post_send(flush_qp_, &wr, &bad)) {
    op->failed = Failure{ErrorKind::Transport, fmt::format("posting the GPUDirect flush failed: {}", std::strerror(rc))};
    link->finish(op);
    return;
  }
  flushes_[serial] = {link, op};
}

void VerbsTransport::on_flush_completion(const ibv_wc& wc, uint32_t serial) {
  auto it = flushes_.find(serial);
  if (it == flushes_.end()) return;
  auto [link, op] = it->second;
  flushes_.erase(it);
  if (wc.status != IBV_WC_SUCCESS)
    op->failed = Failure{ErrorKind::Transport, fmt::format("the GPUDirect flush read failed: {} (vendor error {:#x})",
                                                           api_.wc_status_str(wc.status), wc.vendor_err)};
  link->finish(op);
}

}  // namespace
}  // namespace ringlink::verbs

namespace ringlink {

std::unique_ptr<Transport> create_verbs_transport(const TransportSetup& setup) {
  return std::make_unique<verbs::VerbsTransport>(setup);
}

}  // namespace ringlink
