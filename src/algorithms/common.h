// Pieces every collective schedule uses: its arguments, element ranges, message posting.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include <fmt/format.h>

#include "algorithms/staging_pool.h"
#include "common/recycled.h"
#include "comm/operation.h"
#include "ringlink/error.h"
#include "ringlink/options.h"
#include "ringlink/types.h"
#include "transport.h"

namespace ringlink::detail {
class DeviceStaging;
}

namespace ringlink::algo {

// What a collective was asked to do. Pointers are host memory, or device memory when `device` is
// set (the chain pipeline then moves every byte through it).
struct Args {
  const std::byte* send = nullptr;
  std::byte* recv = nullptr;
  size_t count = 0;  // elements (per rank block for reduce_scatter and allgather)
  DataType type = DataType::Float32;
  ReduceOp op = ReduceOp::Sum;
  int root = 0;
  detail::DeviceStaging* device = nullptr;
  // A compressed wire format: set by the planner only where it applies (float32, host buffers,
  // the ring's reductions); the schedules that honour it say so.
  WireDtype wire = WireDtype::Off;
  size_t elem() const { return size_of(type); }
};

// [begin, end) in elements.
struct Range {
  size_t begin = 0, end = 0;
  size_t size() const { return end - begin; }
};

// Part i of n near-equal parts of `total` elements (the first total % n parts get one more).
inline Range split(size_t total, size_t parts, size_t i) {
  size_t base = total / parts, extra = total % parts;
  size_t begin = i * base + (i < extra ? i : extra);
  return Range{begin, begin + base + (i < extra ? 1 : 0)};
}

inline Range sub(Range r, size_t parts, size_t i) {
  Range s = split(r.size(), parts, i);
  return Range{r.begin + s.begin, r.begin + s.end};
}

inline int mod(int a, int n) { return ((a % n) + n) % n; }

// Posting helpers that skip empty messages: both sides compute the same lengths, so a 0-element
// chunk is simply not sent.
inline std::unique_ptr<Request> post_send(const detail::OpContext& ctx, int peer, const void* p, size_t bytes,
                                          Tag tag, MemoryRegion* mr = nullptr) {
  if (bytes == 0) return nullptr;
  return ctx.isend(peer, p, bytes, mr, tag);
}
// A schedule's receive: the message must be exactly as long as posted (a longer one already
// fails in the transport; a shorter one means the sender runs another schedule).
class ExactReceive final : public Request, public Recycled<ExactReceive> {
 public:
  ExactReceive(std::unique_ptr<Request> inner, size_t posted, int rank, int peer, Tag tag)
      : inner_(std::move(inner)), posted_(posted), rank_(rank), peer_(peer), tag_(tag) {}
  bool test() override {
    if (!inner_->test()) return false;
    if (inner_->bytes() != posted_)
      throw MismatchError(rank_, peer_, "receive",
                          fmt::format("rank {} sent {} bytes where {} were posted (message {} of the collective)",
                                      peer_, inner_->bytes(), posted_, tag_));
    return true;
  }
  size_t bytes() const override { return inner_->bytes(); }

 private:
  std::unique_ptr<Request> inner_;
  size_t posted_;
  int rank_, peer_;
  Tag tag_;
};

inline std::unique_ptr<Request> post_recv(const detail::OpContext& ctx, int peer, void* p, size_t bytes, Tag tag,
                                          MemoryRegion* mr = nullptr) {
  if (bytes == 0) return nullptr;
  return std::make_unique<ExactReceive>(ctx.irecv(peer, p, bytes, mr, tag), bytes, ctx.rank(), peer, tag);
}
// A null request counts as done.
inline bool done(std::unique_ptr<Request>& r) { return !r || r->test(); }

}  // namespace ringlink::algo
