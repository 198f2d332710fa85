// Recursive doubling allreduce: log2(n) rounds of whole-vector exchanges, for tiny messages
// (latency-bound; the cost model decides up to which size).
//
// It checks its own signature: every message starts with the collective's signature, and a
// receiver compares it before it uses the data behind it, so nothing is combined that another
// call sent. The ring neighbours also get the signature on the signature tag, as from every
// other collective (signature.h), so a neighbour that called something else is told. Where the
// first round's partner is a ring neighbour (n a power of two) and the vector is small, that
// message is the first round's data too: an 8-byte allreduce on 2 ranks is one message each way.
#pragma once

#include <array>
#include <exception>
#include <memory>
#include <vector>

#include "algorithms/common.h"
#include "algorithms/signature.h"
#include "common/clock.h"

namespace ringlink::algo {

// Over n ranks, ranks p..n-1 (p the largest power of two <= n) first hand their data to rank
// r-p and get the result back at the end. In each round partners combine as op(lower rank's
// value, higher rank's value), so both compute bitwise the same result.
//
// Public so that the engine's inline path can run one without an allocation (collectives.cc).
class RecursiveDoubling final : public detail::Operation {
 public:
  using Message = std::array<std::byte, kSignatureMessageMaxBytes>;
  // Where the messages go: inline up to kSignedPayloadMaxBytes, so the latency path allocates
  // nothing. A transport may write into a posted receive after a failure (verbs, until the
  // communicator closes), so buffers of an operation that failed are kept: the engine's own
  // (its inline path) live as long as it; an operation's own are left allocated.
  struct Buffers {
    std::array<std::byte, kSignatureBytes> header;
    Message neighbour_in[2];
    Message in, out;
    std::vector<std::byte> large;  // in and out, for vectors above kSignedPayloadMaxBytes
  };

  // `buffers` null: the operation allocates its own.
  RecursiveDoubling(const Args& a, const Signature& sig, int rank, int size, Buffers* buffers = nullptr);
  ~RecursiveDoubling() override;
  const char* name() const override { return "allreduce"; }
  int waiting_on() const override;
  void start(const detail::OpContext& ctx) override;
  detail::Progress advance(const detail::OpContext& ctx) override;

 private:
  enum class Stage { ExtraSend, FoldIn, Round, FoldOut, Done };

  bool run(const detail::OpContext& ctx);
  bool poll_neighbours();
  // The stage's message from `peer`, checked; false until it has arrived.
  bool received(std::unique_ptr<Request>& r, int peer);
  std::unique_ptr<Request> send_value(const detail::OpContext& ctx, int peer, Tag tag);
  std::unique_ptr<Request> recv_value(const detail::OpContext& ctx, int peer, Tag tag);
  void next(Stage s);
  bool finish();
  // A message that does not fit is explained by the neighbours' signatures: wait for them (or,
  // briefly, the job's verdict) before raising it.
  void defer(std::exception_ptr e);
  bool pending() const;
  bool neighbours_checked() const;  // both neighbours' signatures arrived and agree

  Args a_;
  Signature sig_;
  int rank_, n_, p_, rounds_;
  size_t bytes_ = 0;
  int round_ = 0;
  int partner_ = -1;
  Stage stage_ = Stage::Round;
  bool posted_ = false;
  bool averaged_ = false;
  bool moved_ = false;
  std::unique_ptr<Request> send_, recv_;

  // Ring neighbours: [0] the next rank, [1] the previous (one of them on 2 ranks).
  int neighbours_[2] = {0, 0};
  int nneighbours_ = 1;
  int data_neighbour_ = -1;  // the neighbour whose signature message is the first round's data
  std::unique_ptr<Request> neighbour_recv_[2], neighbour_send_[2];
  bool neighbour_checked_[2] = {false, false};
  bool neighbour_sends_done_ = false;

  std::exception_ptr deferred_;
  Clock::time_point deferred_until_{};

  std::unique_ptr<Buffers> owned_;
  Buffers* buf_;
  std::byte* in_ = nullptr;   // this stage's received message
  std::byte* out_ = nullptr;  // this stage's sent message
};

std::unique_ptr<detail::Operation> make_recursive_doubling_allreduce(const Args& args, const Signature& sig, int rank,
                                                                     int size);

}  // namespace ringlink::algo
