#include "algorithms/chain_pipeline.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "comm/device_staging.h"
#include "reduce/reduce.h"
#include "reduce/wire_format.h"

namespace ringlink::algo {

ChainPipeline::ChainPipeline(DataType type, ReduceOp op, int ranks, detail::DeviceStaging* device, WireDtype wire)
    : type_(type), op_(op), ranks_(ranks), wire_(wire), dev_(device), ops_(device ? &device->ops() : nullptr) {
  if (wire_ != WireDtype::Off && (type_ != DataType::Float32 || device))
    throw std::logic_error("a compressed wire format carries float32 host buffers only");
}

size_t ChainPipeline::wire_elem_bytes() const {
  return compressed() ? reduce::wire_elem_bytes(wire_) : size_of(type_);
}

void ChainPipeline::start(StagingPool& pool, std::vector<size_t> chains, int depth, int slots_per_chain) {
  // Device buffers combine in device slots; the host pool is not used.
  pool_ = device() ? &dev_->device_slots() : &pool;
  chains_ = std::move(chains);
  next_chain_.assign(chains_.size(), 0);
  active_in_group_.assign(chains_.size(), 0);
  const int groups = std::max(1, static_cast<int>(chains_.size()));
  // A wire format also encodes the chain's first send (caller memory) into a slot.
  if (compressed()) ++slots_per_chain;
  depth_ = std::max(1, std::min(depth, pool_->available() / (slots_per_chain * groups)));
  total_ = std::accumulate(chains_.begin(), chains_.end(), size_t{0});
}

bool ChainPipeline::staged_wire() const { return device() && !dev_->wire_on_device(); }

void ChainPipeline::copy_local(std::byte* dst, const std::byte* src, size_t bytes) {
  if (!bytes || dst == src) return;
  if (device())
    start_fence_ = ops_->copy(dst, src, bytes, {start_fence_});
  else
    std::memcpy(dst, src, bytes);
}

bool ChainPipeline::admit() {
  bool admitted = false;
  for (size_t g = 0; g < chains_.size(); ++g) {
    while (active_in_group_[g] < depth_ && next_chain_[g] < chains_[g]) {
      active_.emplace_back(static_cast<int>(g), next_chain_[g]++);
      active_.back().fence_ = start_fence_;
      ++active_in_group_[g];
      admitted = true;
    }
  }
  return admitted;
}

bool ChainPipeline::chain_device_done(Chain& ch) { return !device() || ops_->done(ch.fence_); }

void ChainPipeline::release_after(StagingPool& pool, int slot, detail::Fence after) {
  if (slot < 0) return;
  if (ops_->done(after))
    pool.release(slot);
  else
    releases_.push_back(Release{&pool, slot, after});
}

bool ChainPipeline::drain_releases() {
  for (auto it = releases_.begin(); it != releases_.end();) {
    if (ops_->done(it->after)) {
      it->pool->release(it->slot);
      it = releases_.erase(it);
    } else {
      ++it;
    }
  }
  return releases_.empty();
}

bool ChainPipeline::stage_send(Chain& ch, Chain::PendingSend& s) {
  if (s.staged) return true;
  if (staged_wire()) {
    StagingPool& host = dev_->send_slots();
    s.slot = host.acquire();
    if (s.slot < 0) return false;
    // The chunk leaves for pinned memory after everything the chain did to it.
    s.fence = ops_->copy(host.at(s.slot), s.src, s.bytes, {ch.fence_});
    ch.fence_ = s.fence;
    if (s.device_slot >= 0) release_after(*pool_, s.device_slot, s.fence);
    s.device_slot = -1;
  } else {
    s.fence = ch.fence_;  // sent from device memory once the chain's kernels wrote it
  }
  s.staged = true;
  return true;
}

bool ChainPipeline::post_encoded_send(Chain::PendingSend& s) {
  s.slot = pool_->acquire();
  if (s.slot < 0) return false;
  auto* wire = reinterpret_cast<uint16_t*>(pool_->at(s.slot));
  reduce::encode(wire, s.encode_src, s.count, wire_);
  s.req = post_send(*ctx_, s.peer, wire, bytes(s.count), s.tag, pool_->mr());
  s.awaiting_slot = false;
  return true;
}

bool ChainPipeline::retire_sends(Chain& ch) {
  bool moved = false;
  if (compressed()) {
    // In order: a later chunk never overtakes an earlier one for a slot.
    for (auto& s : ch.sends_) {
      if (!s.awaiting_slot) continue;
      if (!post_encoded_send(s)) break;
      moved = true;
    }
  }
  if (device()) {
    drain_releases();
    for (auto& s : ch.sends_) {
      if (s.posted || !s.device) continue;
      if (!stage_send(ch, s)) break;  // in order: a later chunk never overtakes for a slot
      if (!ops_->done(s.fence)) break;
      const bool pinned = staged_wire();
      const std::byte* wire = pinned ? dev_->send_slots().at(s.slot) : s.src;
      MemoryRegion* mr = pinned ? dev_->send_slots().mr() : (s.device_slot >= 0 ? pool_->mr() : nullptr);
      s.req = post_send(*ctx_, s.peer, wire, s.bytes, s.tag, mr);
      s.posted = true;
      moved = true;
    }
  }
  while (!ch.sends_.empty() && (!ch.sends_.front().device || ch.sends_.front().posted) &&
         !ch.sends_.front().awaiting_slot && done(ch.sends_.front().req)) {
    auto& s = ch.sends_.front();
    if (s.device) {
      if (staged_wire()) dev_->send_slots().release(s.slot);
      else pool_->release(s.device_slot);  // sent straight from the device slot
    } else {
      pool_->release(s.slot);
    }
    ch.sends_.pop_front();
    moved = true;
  }
  return moved;
}

void ChainPipeline::check_room(const Chain& ch, size_t receives) {
  if (ch.receives_ + receives > kMaxReceives)
    throw std::logic_error("a chain stage posted more receives than ChainPipeline::kMaxReceives");
}

bool ChainPipeline::receive_to_combine(Chain& ch, std::span<const int> peers, Tag tag, size_t count) {
  check_room(ch, peers.size());
  const int need = static_cast<int>(peers.size());
  // Empty chunks are not sent, so they need no slot.
  if (count > 0 && pool_->available() < need) return false;
  if (count > 0 && staged_wire() && dev_->recv_slots().available() < need) return false;
  for (int peer : peers) {
    const size_t i = ch.receives_;
    ChunkBuffer slot;
    int wire = -1;
    if (count > 0) {
      slot.slot = pool_->acquire();
      slot.data = pool_->at(slot.slot);
      if (staged_wire()) wire = dev_->recv_slots().acquire();
    }
    if (wire >= 0)
      ch.recvs_[i] = post_recv(*ctx_, peer, dev_->recv_slots().at(wire), bytes(count), tag, dev_->recv_slots().mr());
    else
      ch.recvs_[i] = post_recv(*ctx_, peer, slot.data, bytes(count), tag, pool_->mr());
    ch.recv_peers_[i] = peer;
    ch.landed_[i] = slot;
    ch.wire_slots_[i] = wire;
    ch.recv_bytes_[i] = bytes(count);
    ch.deferred_[i] = {};
    ++ch.receives_;
  }
  return true;
}

void ChainPipeline::receive_into(Chain& ch, int peer, Tag tag, std::byte* dst, size_t count) {
  check_room(ch, 1);
  const size_t i = ch.receives_;
  ch.recv_peers_[i] = peer;
  ch.landed_[i] = ChunkBuffer{dst, -1};
  ch.wire_slots_[i] = -1;
  ch.recv_bytes_[i] = bytes(count);
  ch.deferred_[i] = {};
  ch.recvs_[i].reset();
  ++ch.receives_;
  if (compressed() && count > 0) {
    // Lands in a slot of wire values, decoded into `dst` on arrival.
    ch.deferred_[i] = Chain::DeferredReceive{true, peer, tag};
    post_wire_receive(ch, i);
  } else if (staged_wire() && count > 0) {
    ch.deferred_[i] = Chain::DeferredReceive{true, peer, tag};
    post_deferred(ch, i);
  } else {
    ch.recvs_[i] = post_recv(*ctx_, peer, dst, bytes(count), tag);
  }
}

bool ChainPipeline::post_deferred(Chain& ch, size_t i) {
  auto& d = ch.deferred_[i];
  if (!d.waiting) return true;
  int wire = dev_->recv_slots().acquire();
  if (wire < 0) return false;
  ch.recvs_[i] = post_recv(*ctx_, d.peer, dev_->recv_slots().at(wire), ch.recv_bytes_[i], d.tag,
                           dev_->recv_slots().mr());
  ch.wire_slots_[i] = wire;
  d.waiting = false;
  return true;
}

bool ChainPipeline::post_wire_receive(Chain& ch, size_t i) {
  auto& d = ch.deferred_[i];
  if (!d.waiting) return true;
  const int slot = pool_->acquire();
  if (slot < 0) return false;
  ch.recvs_[i] = post_recv(*ctx_, d.peer, pool_->at(slot), ch.recv_bytes_[i], d.tag, pool_->mr());
  ch.wire_slots_[i] = slot;
  d.waiting = false;
  return true;
}

void ChainPipeline::decode_wire_receives(Chain& ch) {
  for (size_t i = 0; i < ch.receives_; ++i) {
    const int slot = ch.wire_slots_[i];
    if (slot < 0) continue;
    const size_t count = ch.recv_bytes_[i] / wire_elem_bytes();
    reduce::decode(reinterpret_cast<float*>(ch.landed_[i].data), reinterpret_cast<const uint16_t*>(pool_->at(slot)),
                   count, wire_);
    // The schedule forwards or releases the slot: the wire values go on as they came.
    ch.landed_[i] = ChunkBuffer{pool_->at(slot), slot};
    ch.wire_slots_[i] = -1;
  }
}

bool ChainPipeline::arrived(Chain& ch) {
  for (size_t i = 0; i < ch.receives_; ++i) {
    if (compressed() && !post_wire_receive(ch, i)) {
      waiting_on_ = ch.recv_peers_[i];
      return false;
    }
    if (staged_wire() && !post_deferred(ch, i)) {
      waiting_on_ = ch.recv_peers_[i];
      return false;
    }
    if (!done(ch.recvs_[i])) {
      waiting_on_ = ch.recv_peers_[i];
      return false;
    }
  }
  if (compressed()) decode_wire_receives(ch);
  if (staged_wire()) {
    // Everything is in pinned memory: copy it to the device, in the chain's sequence, and give
    // the pinned slots back once the copies completed.
    for (size_t i = 0; i < ch.receives_; ++i) {
      const int wire = ch.wire_slots_[i];
      if (wire < 0) continue;
      ch.fence_ = ops_->copy(ch.landed_[i].data, dev_->recv_slots().at(wire), ch.recv_bytes_[i], {ch.fence_});
      release_after(dev_->recv_slots(), wire, ch.fence_);
      ch.wire_slots_[i] = -1;
    }
  }
  return true;
}

std::span<const ChunkBuffer> ChainPipeline::take(Chain& ch) {
  const size_t n = ch.receives_;
  for (size_t i = 0; i < n; ++i) ch.recvs_[i].reset();
  ch.receives_ = 0;
  return std::span<const ChunkBuffer>(ch.landed_.data(), n);
}

void ChainPipeline::combine(std::byte* dst, const std::byte* local, const ChunkBuffer& received, size_t count) const {
  if (!count) return;
  if (device()) {
    current_->fence_ = ops_->combine(dst, local, received.data, count, type_, op_, {current_->fence_});
    return;
  }
  if (compressed()) {
    // Slots hold wire values, the caller's memory float32.
    const auto* mine = reinterpret_cast<const float*>(local);
    if (dst == received.data)
      reduce::combine_into_wire(reinterpret_cast<uint16_t*>(dst), mine, count, wire_, op_);
    else
      reduce::combine_from_wire(reinterpret_cast<float*>(dst), mine, reinterpret_cast<const uint16_t*>(received.data),
                                count, wire_, op_);
    return;
  }
  reduce::combine(dst, local, received.data, count, type_, op_);
}

ChunkBuffer ChainPipeline::complete(std::byte* dst, const std::byte* local, ChunkBuffer received, size_t count) {
  if (compressed() && count > 0) {
    // One pass: the rounded result goes into the slot for the next rank and, decoded, into dst.
    reduce::complete_from_wire(reinterpret_cast<float*>(dst), reinterpret_cast<const float*>(local),
                               reinterpret_cast<uint16_t*>(received.data), count, wire_, op_,
                               op_ == ReduceOp::Avg ? ranks_ : 1);
    return received;
  }
  combine(dst, local, received, count);
  release(received);
  finish_reduction(dst, count);
  return ChunkBuffer{dst};
}

void ChainPipeline::finish_reduction(std::byte* dst, size_t count) const {
  if (compressed() && count) {
    reduce::divide(dst, count, type_, op_ == ReduceOp::Avg ? ranks_ : 1);
    reduce::round_through_wire(reinterpret_cast<float*>(dst), count, wire_);
    return;
  }
  if (op_ != ReduceOp::Avg || !count) return;
  if (device()) {
    current_->fence_ = ops_->divide(dst, count, type_, ranks_, {current_->fence_});
    return;
  }
  reduce::divide(dst, count, type_, ranks_);
}

void ChainPipeline::push_device_send(Chain& ch, int peer, Tag tag, const std::byte* src, int device_slot,
                                     size_t count) {
  Chain::PendingSend s;
  s.device = true;
  s.peer = peer;
  s.tag = tag;
  s.src = src;
  s.bytes = bytes(count);
  s.device_slot = device_slot;
  if (s.bytes == 0) {
    s.staged = s.posted = true;  // nothing goes on the wire
    release_after(*pool_, device_slot, ch.fence_);
    s.device_slot = -1;
  }
  ch.sends_.push_back(std::move(s));
  retire_sends(ch);
}

void ChainPipeline::send(Chain& ch, int peer, Tag tag, ChunkBuffer src, size_t count) {
  if (device()) return push_device_send(ch, peer, tag, src.data, src.slot, count);
  if (compressed() && src.slot < 0) return send(ch, peer, tag, static_cast<const std::byte*>(src.data), count);
  MemoryRegion* mr = src.slot >= 0 ? pool_->mr() : nullptr;
  ch.sends_.push_back(Chain::PendingSend{post_send(*ctx_, peer, src.data, bytes(count), tag, mr), src.slot});
}

void ChainPipeline::send(Chain& ch, int peer, Tag tag, const std::byte* caller_memory, size_t count) {
  if (device()) return push_device_send(ch, peer, tag, caller_memory, -1, count);
  if (compressed() && count > 0) {
    Chain::PendingSend s;
    s.peer = peer;
    s.tag = tag;
    s.awaiting_slot = true;
    s.encode_src = reinterpret_cast<const float*>(caller_memory);
    s.count = count;
    ch.sends_.push_back(std::move(s));
    retire_sends(ch);
    return;
  }
  ch.sends_.push_back(Chain::PendingSend{post_send(*ctx_, peer, caller_memory, bytes(count), tag), -1});
}

void ChainPipeline::release(ChunkBuffer& buffer) {
  if (device())
    release_after(*pool_, buffer.slot, current_ ? current_->fence_ : 0);
  else
    pool_->release(buffer.slot);
  buffer.slot = -1;
}

}  // namespace ringlink::algo
