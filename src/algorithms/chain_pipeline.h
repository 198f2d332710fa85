// The chunk pipeline of the ring and tree schedules, and the one place where a chunk's data
// path lives.
//
// A schedule cuts its data into chunks; each chunk forms a chain of steps that travels
// independently of the other chunks, so that while one chain's chunk is being reduced others
// are on the wire. Chains come in groups (the ring has one, the double binary tree one per
// tree); at most `depth` chains of a group are active at once, which bounds the staging slots in
// use. The schedule decides what a chain does next (its step function); the pipeline admits
// chains, retires their sends and ends them, and moves the chunks' bytes: a receive into a
// staging slot or into place, the combination with local data, the send onward.
//
// Schedules touch a chunk's bytes only through receive_to_combine, receive_into, combine,
// finish_reduction and send, in elements: another data path (device memory through pinned host
// slots, a compressed wire format, reducing from a peer's mapped memory) changes those and not
// the schedules.
//
// A compressed wire format (float32 over host buffers, WireDtype BF16 or FP16): every message
// carries 16-bit values, and every staging slot holds wire values; the caller's buffers hold
// float32. A send of caller memory encodes it into a slot first (waiting, in order, for one
// to be free); a receive into caller memory lands in a slot, is decoded into place, and take()
// hands the slot on, so a forwarded chunk goes on unchanged. combine() decodes, reduces in
// float32 and, into a slot, encodes again; finish_reduction() rounds the finished result
// through the wire format, so the rank that finishes a chunk keeps exactly what it sends.
//
// Device buffers (a DeviceStaging given): the caller's buffers and the combining slots are device
// memory, and every byte the schedule asks for moves through device operations, each chain's in
// sequence (one fence per chain). Without a device-capable transport a received chunk lands in a
// pinned host slot and is copied to the device before anything uses it; a chunk to send is copied
// to a pinned host slot and goes on the wire only once that copy is complete. Slots are given back
// only after the device operations on them completed, and a chain ends only when its last
// operation did, so an operation is Done when its device result is ready.
#pragma once

#include <array>
#include <cstddef>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "algorithms/common.h"
#include "comm/device_ops.h"

namespace ringlink::detail {
class DeviceStaging;
}

namespace ringlink::algo {

// A chunk's bytes: in a staging slot its chain holds, or in the caller's buffers (slot -1).
struct ChunkBuffer {
  std::byte* data = nullptr;
  int slot = -1;
};

class ChainPipeline {
 public:
  // The most receives one stage of a chain waits for (a tree node's children).
  static constexpr size_t kMaxReceives = 2;

  class Chain {
   public:
    Chain(int group, size_t index) : group_(group), index_(index) {}
    int group() const { return group_; }     // which group of chains (tree: which of the trees)
    size_t index() const { return index_; }  // which chunk of the group
    int stage = 0;                           // the schedule's position in the chain, 0 when admitted

   private:
    friend class ChainPipeline;
    // An in-flight send, with the staging slot to give back when it completes (-1: none).
    struct PendingSend {
      std::unique_ptr<Request> req;
      int slot = -1;
      // Device buffers: the send is posted once the copy into its pinned slot (`fence`) completed.
      bool device = false, staged = false, posted = false;
      int peer = -1;
      Tag tag = 0;
      const std::byte* src = nullptr;
      size_t bytes = 0;
      int device_slot = -1;  // a device slot src is in, given back after the copy
      detail::Fence fence = 0;
      // Wire format: caller memory waiting for a slot to be encoded into, then posted.
      bool awaiting_slot = false;
      const float* encode_src = nullptr;
      size_t count = 0;
    };
    // Device buffers: a receive waiting for a pinned slot to be posted into.
    struct DeferredReceive {
      bool waiting = false;
      int peer = -1;
      Tag tag = 0;
    };
    int group_;
    size_t index_;
    std::array<std::unique_ptr<Request>, kMaxReceives> recvs_;
    std::array<int, kMaxReceives> recv_peers_{};
    std::array<ChunkBuffer, kMaxReceives> landed_;  // where each receive puts its data
    std::array<int, kMaxReceives> wire_slots_{};    // device buffers: the pinned slot received into, -1 none
    std::array<size_t, kMaxReceives> recv_bytes_{};
    std::array<DeferredReceive, kMaxReceives> deferred_{};
    detail::Fence fence_ = 0;  // device buffers: the chain's last device operation
    size_t receives_ = 0;                           // posted and not yet taken
    std::deque<PendingSend> sends_;                 // complete in order, each giving back its slot
    bool closed_ = false;
  };

  // What combine() and finish_reduction() compute.
  // `device`: the buffers are device memory, staged through it (null: host memory).
  // `wire`: a compressed wire format (float32 host buffers only; Off for anything else).
  ChainPipeline(DataType type, ReduceOp op, int ranks, detail::DeviceStaging* device = nullptr,
                WireDtype wire = WireDtype::Off);

  // Bytes of one element in a message and in a staging slot (a schedule sizes chunks by it).
  size_t wire_elem_bytes() const;

  // Before the first advance: chains[g] chains in group g, at most `depth` active per group,
  // each holding up to `slots_per_chain` staging slots at once (depth shrinks to fit the pool).
  void start(StagingPool& pool, std::vector<size_t> chains, int depth, int slots_per_chain);

  // Admits chains and calls step(chain) -> bool (whether it moved anything) for every active
  // chain until nothing moves. A chain ends when the schedule has closed it and its sends are
  // out.
  template <typename Step>
  detail::Progress advance(const detail::OpContext& ctx, Step&& step) {
    ctx_ = &ctx;
    bool any = false;
    for (bool moved = true; moved; any = any || moved) {
      moved = admit();
      for (auto it = active_.begin(); it != active_.end();) {
        if (retire_sends(*it)) moved = true;
        current_ = &*it;
        if (!it->closed_ && step(*it)) moved = true;
        current_ = nullptr;
        if (it->closed_ && it->sends_.empty() && chain_device_done(*it)) {
          --active_in_group_[static_cast<size_t>(it->group())];
          ++finished_;
          it = active_.erase(it);
          moved = true;
        } else {
          ++it;
        }
      }
    }
    ctx_ = nullptr;
    if (finished_ == total_ && drain_releases()) return detail::Progress::Done;
    return any ? detail::Progress::Moved : detail::Progress::Waiting;
  }

  // ---- The data path, for step functions. Counts are elements, tags the schedule's own.

  // Receives `count` elements from each of `peers` into a staging slot apiece, to be combined.
  // All or nothing: false, with nothing posted, while too few slots are free.
  bool receive_to_combine(Chain& ch, std::span<const int> peers, Tag tag, size_t count);
  bool receive_to_combine(Chain& ch, int peer, Tag tag, size_t count) {
    return receive_to_combine(ch, std::span<const int>(&peer, 1), tag, count);
  }
  // Receives `count` elements from `peer` straight into `dst` (data that only moves on).
  void receive_into(Chain& ch, int peer, Tag tag, std::byte* dst, size_t count);
  // Whether receives are posted that take() has not collected.
  bool receiving(const Chain& ch) const { return ch.receives_ > 0; }
  // Whether everything posted since the last take() has arrived; notes whom the chain waits on.
  bool arrived(Chain& ch);
  // After arrived(): where the data landed, in posting order. Their slots are the schedule's now
  // (to combine into, send on or release); the chain may post receives again, which ends the
  // returned view.
  std::span<const ChunkBuffer> take(Chain& ch);

  // dst = local (op) received, element by element; dst may be `local` or the received slot.
  void combine(std::byte* dst, const std::byte* local, const ChunkBuffer& received, size_t count) const;
  // The last contribution to a chunk: dst = local (op) received, then finish_reduction(dst).
  // `received` is the pipeline's again; returns what to send on: `dst`, or, with a wire format,
  // received's slot, now holding the finished chunk's wire values (whose decoding is in dst).
  ChunkBuffer complete(std::byte* dst, const std::byte* local, ChunkBuffer received, size_t count);
  // The chunk's reduction over all ranks is complete in `dst`: avg divides by the rank count;
  // a wire format rounds it through the format (reduce_scatter too, so it gives what allreduce
  // gives).
  void finish_reduction(std::byte* dst, size_t count) const;

  // Sends `count` elements of `src` to `peer`; a slot src is in goes back once the send is out.
  void send(Chain& ch, int peer, Tag tag, ChunkBuffer src, size_t count);
  void send(Chain& ch, int peer, Tag tag, const std::byte* caller_memory, size_t count);
  // Gives back a slot the schedule holds (nothing for the caller's memory).
  void release(ChunkBuffer& buffer);

  // Before start(): copies caller memory to caller memory (a schedule's own block into place);
  // every chain follows it.
  void copy_local(std::byte* dst, const std::byte* src, size_t bytes);

  // The schedule has posted everything for this chain: it ends once its sends are out.
  void close(Chain& ch) { ch.closed_ = true; }

  // The peer of the last receive found still outstanding, or -1.
  int waiting_on() const { return waiting_on_; }

 private:
  bool admit();
  bool retire_sends(Chain& ch);
  bool device() const { return dev_ != nullptr; }
  bool staged_wire() const;  // device buffers through pinned host slots
  bool chain_device_done(Chain& ch);
  bool post_deferred(Chain& ch, size_t i);
  bool stage_send(Chain& ch, Chain::PendingSend& s);
  void push_device_send(Chain& ch, int peer, Tag tag, const std::byte* src, int device_slot, size_t count);
  // Gives `slot` of `pool` back once `after` completed.
  void release_after(StagingPool& pool, int slot, detail::Fence after);
  bool drain_releases();
  static void check_room(const Chain& ch, size_t receives);
  size_t bytes(size_t count) const { return count * wire_elem_bytes(); }
  bool compressed() const { return wire_ != WireDtype::Off; }
  bool post_wire_receive(Chain& ch, size_t i);
  void decode_wire_receives(Chain& ch);
  bool post_encoded_send(Chain::PendingSend& s);

  DataType type_;
  ReduceOp op_;
  int ranks_;
  WireDtype wire_ = WireDtype::Off;
  StagingPool* pool_ = nullptr;
  const detail::OpContext* ctx_ = nullptr;  // during advance()
  std::vector<size_t> chains_;              // per group
  std::vector<size_t> next_chain_;          // per group: the next to admit
  std::vector<int> active_in_group_;
  int depth_ = 1;
  size_t total_ = 0, finished_ = 0;
  std::deque<Chain> active_;
  int waiting_on_ = -1;
  Chain* current_ = nullptr;  // the chain being stepped

  detail::DeviceStaging* dev_ = nullptr;
  detail::DeviceOps* ops_ = nullptr;
  detail::Fence start_fence_ = 0;
  struct Release {
    StagingPool* pool;
    int slot;
    detail::Fence after;
  };
  std::vector<Release> releases_;
};

}  // namespace ringlink::algo
