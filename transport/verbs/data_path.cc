// The clear-to-send data path of a link (wire.h): the receiver writes CTS entries into the
// sender's FIFO, the sender matches them to its sends by tag and message number and RDMA-writes
// the data, each stripe finished by a WRITE WITH IMM; and the completions of all of it.
#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "common/cuda_driver.h"
#include "common/log.h"
#include "ringlink/error.h"
#include "transport/verbs/link.h"
#include "transport/verbs/verbs_transport_impl.h"
#include "transport/verbs/wire_checks.h"

namespace ringlink::verbs {
namespace {

constexpr uint64_t kMaxWriteBytes = uint64_t{1} << 30;  // one work request moves at most this

}  // namespace

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
    } else if (op->bytes <= wire::kEagerBytes && op->kind == MemoryKind::Host) {
      if (!post_eager(op)) break;  // no credit (or no room) yet
    } else {
      break;  // waits for its clear-to-send
    }
    sends.pop_front();
    --unmatched_sends_;
  }
  if (sends.empty()) sends_by_tag_.erase(sit);
}

// Writes the clear-to-send for `op` into the peer's FIFO.
bool Link::post_cts(const std::shared_ptr<Op>& op) {
  if (qps_[0].room() < 1) return false;
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
  cts_held_[slot] = false;  // answered: the receiver may reuse the slot once the immediate lands
  if (!post_pieces(pieces, op->serial)) return true;  // the failure is recorded; the op reports it
  if (op->stripes_left == 0) finish(op);  // inline: the data left with the work request
  return true;
}

// A clear-to-send arrived for a message that went eagerly: free its slot at the receiver.
bool Link::post_void(uint32_t slot) {
  log::trace("verbs: voiding slot {} of rank {}", slot, peer_);
  std::vector<Piece> pieces{{0, WrKind::Void, IBV_WR_RDMA_WRITE_WITH_IMM, 0, 0, 0, 0, 0, wire::encode_void(slot), false, false}};
  if (qps_[0].room() < 1) return false;
  cts_held_[slot] = false;
  post_pieces(pieces, slot);
  return true;
}

// Posts the pieces QP by QP, chained up to 16 work requests per call.
bool Link::post_pieces(std::vector<Piece>& pieces, uint32_t serial) {
  const uint32_t nqps = static_cast<uint32_t>(qps_.size());
  for (uint32_t qi = 0; qi < nqps; ++qi) {
    ibv_send_wr wrs[16];
    ibv_sge sges[16];
    int n = 0;
    SendQueue& q = qps_[qi];
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
      wr.send_flags = (q.count(p.signal) ? IBV_SEND_SIGNALED : 0) | (p.inlined ? IBV_SEND_INLINE : 0);
      ++n;
    }
    if (!flush_chain()) return false;
  }
  return true;
}

// Receives for immediates on data QP `qp`: the data arrives by RDMA WRITE.
void Link::post_receives(uint32_t qp, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) {
    ibv_recv_wr wr{};
    wr.wr_id = make_wr_id(WrKind::Recv, id_, qp, 0);
    wr.num_sge = 0;
    ibv_recv_wr* bad = nullptr;
    if (int rc = api_.post_recv(qps_[qp].qp, &wr, &bad)) {
      fail({ErrorKind::Transport, fmt::format("ibv_post_recv on QP {:#x} failed: {}", qps_[qp].qp->qp_num, std::strerror(rc))});
      return;
    }
  }
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
  while (!failure_) {
    auto e = reader_.poll();
    if (!e) break;
    moved = true;
    log::trace("verbs: rank {} cleared to send #{} (tag {}, msn {}, {} bytes)", peer_, e->seq_head, e->tag, e->msn, e->size);
    // The peer wrote this memory: its slot, size and counts are checked before they index or
    // size anything. A slot comes back only after the message for it was sent (wire.h).
    std::string why = wire::check_cts(*e, e->seq_head, depth_, eager_sent_);
    if (why.empty() && cts_held_[e->slot])
      why = fmt::format("clear-to-send #{} reuses FIFO slot {} before the message for it was sent", e->seq_head, e->slot);
    if (!why.empty()) {
      fail({ErrorKind::Transport, fmt::format("rank {} wrote a malformed clear-to-send: {}", peer_, why)});
      break;
    }
    cts_held_[e->slot] = true;
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
  SendQueue& q = on_control_qp(id.kind) ? control_ : qps_[id.qp];
  switch (id.kind) {
    case WrKind::Recv:
      post_receives(id.qp, 1);
      if (wc.wc_flags & IBV_WC_WITH_IMM) on_imm(ntohl(wc.imm_data));
      break;
    case WrKind::EagerRecv:
      on_eager(id.serial, wc.byte_len);
      break;
    case WrKind::Data: {
      q.retire();
      auto it = posted_.find(id.serial);
      if (it != posted_.end() && --it->second->stripes_left == 0) {
        auto op = it->second;
        posted_.erase(it);
        finish(op);
      }
      break;
    }
    default:
      q.retire();
      break;
  }
  drain_backlogs();
}

// A WRITE WITH IMM arrived: one more stripe of the receive in that slot has landed. The
// immediate, and the size-table word it may point at, are the peer's: checked against the
// receive they complete before any size is used.
void Link::on_imm(uint32_t imm) {
  const uint32_t stripes = static_cast<uint32_t>(qps_.size());
  if (std::string why = wire::check_imm(imm, depth_, stripes); !why.empty()) {
    fail({ErrorKind::Transport, fmt::format("rank {} sent a malformed immediate: {}", peer_, why)});
    return;
  }
  const wire::Imm m = wire::decode(imm);
  if (!slot_ops_[m.slot]) {
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
  if (op->stripes_got > 0 && m.stripes != op->stripes_want) {
    fail({ErrorKind::Transport, fmt::format("rank {} announced {} stripes for FIFO slot {}, then {}", peer_,
                                            op->stripes_want, m.slot, m.stripes)});
    return;
  }
  op->stripes_want = m.stripes;
  if (++op->stripes_got < m.stripes) return;
  const uint64_t table_word =
      m.size_in_table || m.truncated ? __atomic_load_n(&sizes_in_[m.slot], __ATOMIC_ACQUIRE) : 0;
  const wire::Arrival got = wire::arrival(m, op->bytes, stripes, table_word);
  if (got.kind == wire::Arrival::Kind::Invalid) {
    fail({ErrorKind::Transport,
          fmt::format("rank {} completed the {}-byte receive of tag {} in FIFO slot {} inconsistently: {}", peer_,
                      op->bytes, op->tag, m.slot, got.why)});
    return;
  }
  slot_ops_[m.slot] = nullptr;
  slots_.release(m.slot);
  if (auto pit = posted_recvs_.find(op->tag); pit != posted_recvs_.end()) {
    pit->second.erase(op->msn);
    if (pit->second.empty()) posted_recvs_.erase(pit);
  }
  const uint64_t size = got.size;
  if (got.kind == wire::Arrival::Kind::TooLong) {
    op->failed = too_long(peer_, *op, size);
    finish(op);
  } else {
    op->result_bytes = size;
    if (op->kind == MemoryKind::Cuda && size > 0 && t_.gdr().flush_needed(op->buf)) {
      t_.flush(shared_from_this(), op);
    } else {
      finish(op);
    }
  }
  drain_backlogs();
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
  if (api_.vendor_error_str && wc.vendor_err) vendor += fmt::format(": {}", api_.vendor_error_str(wc.vendor_err));
  std::string hint;
  if (wc.status == IBV_WC_RETRY_EXC_ERR)
    hint = fmt::format("; rank {} is unreachable or gone (retries exhausted)", peer_);
  else if (wc.status == IBV_WC_REM_ACCESS_ERR)
    hint = fmt::format("; rank {} refused the access (wrong key, outside the region, or not permitted)", peer_);
  else if (wc.status == IBV_WC_RNR_RETRY_EXC_ERR)
    hint = fmt::format("; rank {} had no receive posted", peer_);
  Failure f{wc.status == IBV_WC_RETRY_EXC_ERR ? ErrorKind::PeerLost : ErrorKind::Transport,
            fmt::format("{} of {} failed on QP {:#x} (rank {} -> rank {}): {} (status {}, {}){}", verb, describe(id),
                        wc.qp_num, rank_, peer_, api_.wc_status_str(wc.status), static_cast<int>(wc.status), vendor,
                        hint)};
  if (id.kind == WrKind::Data) {
    auto it = posted_.find(id.serial);
    if (it != posted_.end()) it->second->failed = f;
  }
  fail(f);
}

}  // namespace ringlink::verbs
