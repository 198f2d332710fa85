// A link's life (control memory, QPs, drain, close) and its ops: posting, testing, cancelling
// and finishing sends and receives.
#include "transport/verbs/link.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "common/cuda_driver.h"
#include "common/log.h"
#include "ringlink/error.h"
#include "transport/verbs/verbs_region.h"
#include "transport/verbs/verbs_transport_impl.h"

namespace ringlink::verbs {
namespace {

constexpr uint32_t kInlineWanted = 128;

}  // namespace

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
    throw TransportError(rank_, peer, "connect",
                         fmt::format("registering {} bytes of control memory failed: {}", ctrl_.size(), std::strerror(errno)));
  slot_ops_.resize(d);
  cts_held_.assign(d, false);
  reader_ = wire::CtsReader(fifo_in_, depth_);

  const int nqps = t_.options().ib_qps;
  try {
    for (int i = 0; i < nqps; ++i) {
      SendQueue q;
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

// An RC QP in INIT; the link's inline limit is the least any of its QPs was granted.
ibv_qp* Link::make_qp(uint32_t max_recv) {
  uint32_t inline_room = kInlineWanted;
  ibv_qp* qp = create_qp(*dev_, t_.qp_settings(), max_recv, &inline_room, {rank_, peer_, "connect"});
  max_inline_ = qps_.empty() && !control_.qp ? inline_room : std::min(max_inline_, inline_room);
  return qp;
}

// Lets work already handed to the HCA finish before the QPs go: destroying a QP drops what it has
// not sent yet (an eager message, complete for its sender since it was posted, say). Bounded by
// the silence deadline.
void Link::drain() {
  if (!connected_ || closed_ || failure_) return;
  auto mark = [&](SendQueue& q, WrKind kind, uint32_t index) {
    if (!q.busy() || q.room() < 1) return;
    ibv_send_wr wr{};
    wr.wr_id = make_wr_id(kind, id_, index, 0);
    wr.num_sge = 0;  // a zero-length write touches no memory and checks no key
    wr.opcode = IBV_WR_RDMA_WRITE;
    wr.send_flags = IBV_SEND_SIGNALED;
    ibv_send_wr* bad = nullptr;
    if (api_.post_send(q.qp, &wr, &bad) == 0) q.count(true);
  };
  draining_ = true;
  for (uint32_t i = 0; i < qps_.size(); ++i) mark(qps_[i], WrKind::Drain, i);
  mark(control_, WrKind::DrainControl, 0);
  const Deadline deadline = Deadline::after(std::min<milliseconds>(t_.options().timeout, milliseconds(5000)));
  auto any_busy = [&] {
    return control_.busy() || std::any_of(qps_.begin(), qps_.end(), [](const SendQueue& q) { return q.busy(); });
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

// The registration for a message buffer, and its memory kind. `defer_host`: host memory that may
// go eagerly is registered later, if at all.
std::shared_ptr<Registration> Link::registration(std::byte* buf, size_t bytes, MemoryRegion* mr, MemoryKind& kind,
                                                 const char* what, bool defer_host) {
  if (auto* region = dynamic_cast<VerbsRegion*>(mr)) {
    if (!region->contains(buf, bytes))
      throw InvalidArgumentError(rank_, peer_, what,
                                 fmt::format("the buffer {}+{} is not inside the memory region passed with it",
                                             static_cast<void*>(buf), bytes));
    kind = region->kind();
    if (region->registration()) return region->registration();
  } else {
    kind = MemoryKind::Host;
    if (t_.gdr().cuda && cuda::is_device_pointer(*t_.gdr().cuda, buf)) kind = MemoryKind::Cuda;
  }
  // Without GPUDirect the transport reports no device-memory support, and the engine's staging
  // layer sends host slots instead; a device buffer here is a caller error, not a second stager.
  if (kind == MemoryKind::Cuda && !t_.gdr().direct())
    throw InvalidArgumentError(rank_, peer_, what,
                               fmt::format("device memory needs GPUDirect RDMA on this link ({}); the engine stages "
                                           "device buffers through host memory for it",
                                           to_string(t_.gdr().mode)));
  if (kind == MemoryKind::Host && defer_host) return nullptr;
  return t_.user_registration(buf, bytes, kind);
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

std::unique_ptr<Request> Link::irecv(void* buf, size_t bytes, MemoryRegion* mr, Tag tag) {
  auto op = std::make_shared<Op>();
  op->serial = next_recv_serial_++;
  op->tag = tag;
  op->buf = static_cast<std::byte*>(buf);
  op->bytes = bytes;
  if (bytes > 0 && !failure_) {
    op->reg = registration(op->buf, bytes, mr, op->kind, "recv");
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

void Link::finish(const std::shared_ptr<Op>& op) {
  log::trace("verbs: {} #{} (tag {}) to/from rank {} finished", op_name(*op), op->serial, op->tag, peer_);
  if (op->done) return;
  op->done = true;
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

}  // namespace ringlink::verbs
