#include "algorithms/chain_pipeline.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "reduce/reduce.h"

namespace ringlink::algo {

void ChainPipeline::start(StagingPool& pool, std::vector<size_t> chains, int depth, int slots_per_chain) {
  pool_ = &pool;
  chains_ = std::move(chains);
  next_chain_.assign(chains_.size(), 0);
  active_in_group_.assign(chains_.size(), 0);
  const int groups = std::max(1, static_cast<int>(chains_.size()));
  depth_ = std::max(1, std::min(depth, pool.available() / (slots_per_chain * groups)));
  total_ = std::accumulate(chains_.begin(), chains_.end(), size_t{0});
}

bool ChainPipeline::admit() {
  bool admitted = false;
  for (size_t g = 0; g < chains_.size(); ++g) {
    while (active_in_group_[g] < depth_ && next_chain_[g] < chains_[g]) {
      active_.emplace_back(static_cast<int>(g), next_chain_[g]++);
      ++active_in_group_[g];
      admitted = true;
    }
  }
  return admitted;
}

bool ChainPipeline::retire_sends(Chain& ch) {
  bool retired = false;
  while (!ch.sends_.empty() && done(ch.sends_.front().req)) {
    pool_->release(ch.sends_.front().slot);
    ch.sends_.pop_front();
    retired = true;
  }
  return retired;
}

void ChainPipeline::check_room(const Chain& ch, size_t receives) {
  if (ch.receives_ + receives > kMaxReceives)
    throw std::logic_error("a chain stage posted more receives than ChainPipeline::kMaxReceives");
}

bool ChainPipeline::receive_to_combine(Chain& ch, std::span<const int> peers, Tag tag, size_t count) {
  check_room(ch, peers.size());
  // Empty chunks are not sent, so they need no slot.
  if (count > 0 && pool_->available() < static_cast<int>(peers.size())) return false;
  for (int peer : peers) {
    ChunkBuffer slot;
    if (count > 0) {
      slot.slot = pool_->acquire();
      slot.data = pool_->at(slot.slot);
    }
    ch.recvs_[ch.receives_] = post_recv(*ctx_, peer, slot.data, bytes(count), tag, pool_->mr());
    ch.recv_peers_[ch.receives_] = peer;
    ch.landed_[ch.receives_] = slot;
    ++ch.receives_;
  }
  return true;
}

void ChainPipeline::receive_into(Chain& ch, int peer, Tag tag, std::byte* dst, size_t count) {
  check_room(ch, 1);
  ch.recvs_[ch.receives_] = post_recv(*ctx_, peer, dst, bytes(count), tag);
  ch.recv_peers_[ch.receives_] = peer;
  ch.landed_[ch.receives_] = ChunkBuffer{dst, -1};
  ++ch.receives_;
}

bool ChainPipeline::arrived(Chain& ch) {
  for (size_t i = 0; i < ch.receives_; ++i) {
    if (!done(ch.recvs_[i])) {
      waiting_on_ = ch.recv_peers_[i];
      return false;
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
  if (count) reduce::combine(dst, local, received.data, count, type_, op_);
}

void ChainPipeline::finish_reduction(std::byte* dst, size_t count) const {
  if (op_ == ReduceOp::Avg && count) reduce::divide(dst, count, type_, ranks_);
}

void ChainPipeline::send(Chain& ch, int peer, Tag tag, ChunkBuffer src, size_t count) {
  MemoryRegion* mr = src.slot >= 0 ? pool_->mr() : nullptr;
  ch.sends_.push_back(Chain::PendingSend{post_send(*ctx_, peer, src.data, bytes(count), tag, mr), src.slot});
}

void ChainPipeline::send(Chain& ch, int peer, Tag tag, const std::byte* caller_memory, size_t count) {
  ch.sends_.push_back(Chain::PendingSend{post_send(*ctx_, peer, caller_memory, bytes(count), tag), -1});
}

void ChainPipeline::release(ChunkBuffer& buffer) {
  pool_->release(buffer.slot);
  buffer.slot = -1;
}

}  // namespace ringlink::algo
