#include "algorithms/recursive_doubling.h"

#include <cstring>

#include "reduce/reduce.h"

namespace ringlink::algo {

RecursiveDoubling::RecursiveDoubling(const Args& a, const Signature& sig, int rank, int size, Buffers* buffers)
    : a_(a), sig_(sig), rank_(rank), n_(size), buf_(buffers) {
  p_ = 1;
  while (p_ * 2 <= n_) p_ *= 2;
  rounds_ = 0;
  for (int x = p_; x > 1; x >>= 1) ++rounds_;
  neighbours_[0] = (rank + 1) % size;
  neighbours_[1] = (rank + size - 1) % size;
  nneighbours_ = neighbours_[0] == neighbours_[1] ? 1 : 2;
  bytes_ = a_.count * a_.elem();
  // The first round's partner, rank ^ 1, is a ring neighbour when every rank takes part in the
  // rounds (no ranks fold in first): its signature message then carries the data.
  if (p_ == n_ && bytes_ <= kSignedPayloadMaxBytes) {
    const int partner = rank ^ 1;
    data_neighbour_ = partner == neighbours_[0] ? 0 : 1;
  }
}

RecursiveDoubling::~RecursiveDoubling() {
  // Posted buffers of a failed operation are not freed under the transport (see Buffers).
  if (owned_ && pending()) owned_.release();
}

bool RecursiveDoubling::neighbours_checked() const {
  for (int i = 0; i < nneighbours_; ++i)
    if (!neighbour_checked_[i]) return false;
  return true;
}

bool RecursiveDoubling::pending() const { return send_ || recv_ || !neighbour_sends_done_ || !neighbours_checked(); }

int RecursiveDoubling::waiting_on() const {
  if (stage_ != Stage::Done) return partner_;
  for (int i = 0; i < nneighbours_; ++i)
    if (!neighbour_checked_[i]) return neighbours_[i];
  return -1;
}

void RecursiveDoubling::start(const detail::OpContext& ctx) {
  if (!buf_) {
    owned_ = std::make_unique<Buffers>();
    buf_ = owned_.get();
  }
  if (bytes_ > kSignedPayloadMaxBytes) {
    buf_->large.resize(2 * (kSignatureBytes + bytes_));
    in_ = buf_->large.data();
    out_ = in_ + kSignatureBytes + bytes_;
  } else {
    in_ = buf_->in.data();
    out_ = buf_->out.data();
  }
  sig_.seq = ctx.collective_seq();
  const SignatureWire header = encode(sig_);
  std::memcpy(buf_->header.data(), header.data(), kSignatureBytes);
  std::memcpy(out_, header.data(), kSignatureBytes);
  if (a_.recv != a_.send && bytes_) std::memcpy(a_.recv, a_.send, bytes_);

  for (int i = 0; i < nneighbours_; ++i)
    neighbour_recv_[i] = ctx.irecv(neighbours_[i], buf_->neighbour_in[i].data(), kSignatureMessageMaxBytes, nullptr,
                                   detail::kSignatureTag);
  for (int i = 0; i < nneighbours_; ++i) {
    if (i == data_neighbour_) {
      if (bytes_ > 0) std::memcpy(out_ + kSignatureBytes, a_.recv, bytes_);
      neighbour_send_[i] = ctx.isend(neighbours_[i], out_, kSignatureBytes + bytes_, nullptr, detail::kSignatureTag);
    } else {
      neighbour_send_[i] = ctx.isend(neighbours_[i], buf_->header.data(), kSignatureBytes, nullptr,
                                     detail::kSignatureTag);
    }
  }
  stage_ = rank_ >= p_ ? Stage::ExtraSend : (rank_ < n_ - p_ ? Stage::FoldIn : Stage::Round);
}

detail::Progress RecursiveDoubling::advance(const detail::OpContext& ctx) {
  moved_ = false;
  if (deferred_) {
    // A message that did not fit: the neighbours' signatures say what the peer called.
    try {
      poll_neighbours();
    } catch (const UnreadableSignature&) {
      // The verdict names the cause; wait for it until the grace ends.
    }
    if (neighbours_checked() || Clock::now() > deferred_until_) std::rethrow_exception(deferred_);
    return moved_ ? detail::Progress::Moved : detail::Progress::Waiting;
  }
  try {
    poll_neighbours();
    if (stage_ != Stage::Done && run(ctx)) stage_ = Stage::Done;
  } catch (const MismatchError&) {
    // A peer beyond the neighbours may have called something else; the neighbours' signatures
    // (or the job's verdict) name the calls.
    defer(std::current_exception());
    return detail::Progress::Moved;
  }
  if (stage_ == Stage::Done && !pending()) return detail::Progress::Done;
  return moved_ ? detail::Progress::Moved : detail::Progress::Waiting;
}

void RecursiveDoubling::defer(std::exception_ptr e) {
  // The neighbours agree: the mismatch is with a rank further away, and this error names it.
  if (neighbours_checked()) std::rethrow_exception(e);
  deferred_ = e;
  deferred_until_ = Clock::now() + kSignatureGrace;
}

bool RecursiveDoubling::poll_neighbours() {
  for (int i = 0; i < nneighbours_; ++i) {
    if (neighbour_checked_[i] || !neighbour_recv_[i]->test()) continue;
    const size_t payload = i == data_neighbour_ ? bytes_ : 0;
    check_signature(sig_, rank_, neighbours_[i], buf_->neighbour_in[i].data(), neighbour_recv_[i]->bytes(), payload);
    neighbour_checked_[i] = moved_ = true;
    neighbour_recv_[i].reset();
  }
  if (!neighbour_sends_done_) {
    bool all = true;
    for (int i = 0; i < nneighbours_; ++i) {
      if (neighbour_send_[i] && neighbour_send_[i]->test()) neighbour_send_[i].reset();
      all = all && !neighbour_send_[i];
    }
    neighbour_sends_done_ = all;
  }
  return moved_;
}

std::unique_ptr<Request> RecursiveDoubling::send_value(const detail::OpContext& ctx, int peer, Tag tag) {
  if (bytes_ > 0) std::memcpy(out_ + kSignatureBytes, a_.recv, bytes_);  // a zero count has no buffer
  return ctx.isend(peer, out_, kSignatureBytes + bytes_, nullptr, tag);
}

std::unique_ptr<Request> RecursiveDoubling::recv_value(const detail::OpContext& ctx, int peer, Tag tag) {
  return ctx.irecv(peer, in_, kSignatureBytes + bytes_, nullptr, tag);
}

bool RecursiveDoubling::received(std::unique_ptr<Request>& r, int peer) {
  if (!r) return true;
  if (!r->test()) return false;
  check_signature(sig_, rank_, peer, in_, r->bytes(), bytes_);
  r.reset();
  return true;
}

// Runs stages until one waits (false) or the result is complete (true).
bool RecursiveDoubling::run(const detail::OpContext& ctx) {
  auto sent = [](std::unique_ptr<Request>& r) {
    if (r && r->test()) r.reset();
    return !r;
  };
  for (;;) {
    switch (stage_) {
      case Stage::ExtraSend:  // rank >= p: give the data to rank - p, wait for the result
        partner_ = rank_ - p_;
        if (!posted_) {
          send_ = send_value(ctx, partner_, 0);
          recv_ = recv_value(ctx, partner_, static_cast<Tag>(1 + rounds_));
          posted_ = true;
        }
        if (!sent(send_) || !received(recv_, partner_)) return false;
        if (bytes_ > 0) std::memcpy(a_.recv, in_ + kSignatureBytes, bytes_);
        averaged_ = true;  // the result arrives averaged
        next(Stage::Done);
        return finish();
      case Stage::FoldIn:  // rank < n - p: absorb rank + p's data first
        partner_ = rank_ + p_;
        if (!posted_) {
          recv_ = recv_value(ctx, partner_, 0);
          posted_ = true;
        }
        if (!received(recv_, partner_)) return false;
        if (bytes_) reduce::combine(a_.recv, a_.recv, in_ + kSignatureBytes, a_.count, a_.type, a_.op);
        next(Stage::Round);
        break;
      case Stage::Round: {
        if (round_ == rounds_) {
          next(rank_ < n_ - p_ ? Stage::FoldOut : Stage::Done);
          break;
        }
        partner_ = rank_ ^ (1 << round_);
        const std::byte* theirs = in_ + kSignatureBytes;
        if (round_ == 0 && data_neighbour_ >= 0) {
          // The neighbour messages carry this round; our value went out with ours.
          if (!neighbour_checked_[data_neighbour_] || neighbour_send_[data_neighbour_]) return false;
          theirs = buf_->neighbour_in[data_neighbour_].data() + kSignatureBytes;
        } else {
          if (!posted_) {
            recv_ = recv_value(ctx, partner_, static_cast<Tag>(1 + round_));
            send_ = send_value(ctx, partner_, static_cast<Tag>(1 + round_));
            posted_ = true;
          }
          // The send reads our value: it must be out before the value changes.
          if (!received(recv_, partner_) || !sent(send_)) return false;
        }
        if (bytes_) {
          std::byte* mine = a_.recv;
          if (rank_ < partner_)
            reduce::combine(mine, mine, theirs, a_.count, a_.type, a_.op);
          else
            reduce::combine(mine, theirs, mine, a_.count, a_.type, a_.op);
        }
        ++round_;
        next(Stage::Round);
        break;
      }
      case Stage::FoldOut:
        partner_ = rank_ + p_;
        if (!posted_) {
          if (a_.op == ReduceOp::Avg && bytes_) reduce::divide(a_.recv, a_.count, a_.type, n_);
          averaged_ = true;
          send_ = send_value(ctx, partner_, static_cast<Tag>(1 + rounds_));
          posted_ = true;
        }
        if (!sent(send_)) return false;
        next(Stage::Done);
        return finish();
      case Stage::Done:
        return finish();
    }
  }
}

void RecursiveDoubling::next(Stage s) {
  stage_ = s;
  posted_ = false;
  moved_ = true;
}

bool RecursiveDoubling::finish() {
  if (!averaged_ && a_.op == ReduceOp::Avg && bytes_) reduce::divide(a_.recv, a_.count, a_.type, n_);
  averaged_ = true;
  partner_ = -1;
  return true;
}

std::unique_ptr<detail::Operation> make_recursive_doubling_allreduce(const Args& args, const Signature& sig, int rank,
                                                                     int size) {
  return std::make_unique<RecursiveDoubling>(args, sig, rank, size);
}

}  // namespace ringlink::algo
