#include "algorithms/signature.h"

#include <exception>

#include <fmt/format.h>

#include "common/clock.h"
#include "ringlink/error.h"

namespace ringlink::algo {
namespace {

constexpr uint64_t kMagic = 0x524C5347;  // "RLSG"
constexpr uint64_t kVersion = 2;

void put(SignatureWire& w, size_t word, uint64_t v) {
  for (size_t i = 0; i < 8; ++i) w[word * 8 + i] = static_cast<std::byte>(v >> (8 * i));
}
uint64_t get(std::span<const std::byte> b, size_t word) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v |= static_cast<uint64_t>(b[word * 8 + i]) << (8 * i);
  return v;
}

// Names as users write them in code (float32, not "float"), so both calls read alike.
const char* type_name(DataType t) {
  switch (t) {
    case DataType::Float32: return "float32";
    case DataType::Float64: return "float64";
    case DataType::Float16: return "float16";
    case DataType::BFloat16: return "bfloat16";
    case DataType::Int8: return "int8";
    case DataType::UInt8: return "uint8";
    case DataType::Int32: return "int32";
    case DataType::Int64: return "int64";
  }
  return "?";
}

bool is_reduction(CollectiveKind k) {
  return k == CollectiveKind::Allreduce || k == CollectiveKind::ReduceScatter || k == CollectiveKind::Reduce;
}
bool is_rooted(CollectiveKind k) { return k == CollectiveKind::Broadcast || k == CollectiveKind::Reduce; }

// Small collectives where every rank is a ring neighbour (up to 3 ranks) run beside the
// signature exchange, and finish only once every other rank's signature arrived and agrees: a
// result is never returned unchecked, and the check costs no round trip. Larger ones wait for
// the check before posting data: one small message is nothing beside their transfer, and no
// large transfer (UCX rendezvous) is left in flight when a mismatch fails the call. A message
// of another call that does not fit (a MismatchError from the schedule) waits, briefly, for
// the signatures, which say what the peer called. With more ranks, a rank's neighbours may
// agree with it while ranks further away differ, so the schedule waits for the check: no data
// is combined or forwarded before it. Ranks that differ always include a neighbouring pair
// that differs, and the engine reports that pair's MismatchError through the store to every
// other rank.
class Signed final : public detail::Operation {
 public:
  Signed(std::unique_ptr<detail::Operation> schedule, Signature sig, int rank, int size)
      : schedule_(std::move(schedule)),
        sig_(sig),
        rank_(rank),
        overlap_(size <= 3 && sig.count <= kOverlapMaxBytes / size_of(sig.type)) {
    peers_[0] = (rank + 1) % size;
    peers_[1] = (rank + size - 1) % size;
    npeers_ = peers_[0] == peers_[1] ? 1 : 2;
  }
  ~Signed() override {
    // A collective that failed may leave a signature's receive or send posted, and a transport
    // that writes into advertised memory (verbs) may still do so until the communicator
    // closes: such buffers are left allocated rather than freed under it (8 KiB a failure).
    bool pending = false;
    for (int i = 0; i < npeers_; ++i) pending = pending || !arrived_[i] || !sends_done_;
    if (pending) wire_.release();
  }
  const char* name() const override { return schedule_->name(); }
  int waiting_on() const override {
    if (!checked_)
      for (int i = 0; i < npeers_; ++i)
        if (!arrived_[i]) return peers_[i];
    return schedule_->waiting_on();
  }
  void start(const detail::OpContext& ctx) override {
    sig_.seq = ctx.collective_seq();
    wire_->mine = encode(sig_);
    for (int i = 0; i < npeers_; ++i)
      recvs_[i] = ctx.irecv(peers_[i], wire_->theirs[i].data(), kSignatureMessageMaxBytes, nullptr,
                            detail::kSignatureTag);
    for (int i = 0; i < npeers_; ++i)
      sends_[i] = ctx.isend(peers_[i], wire_->mine.data(), kSignatureBytes, nullptr, detail::kSignatureTag);
    schedule_->start(ctx);
  }
  detail::Progress advance(const detail::OpContext& ctx) override {
    bool moved = poll_signatures();
    if (deferred_) {
      // The schedule failed on a message that did not fit (the signatures name the cause), or
      // a peer's signature was unreadable (the store's verdict names it: a peer that fails
      // may abandon its signature's send, and the transport may then carry freed memory).
      if ((checked_ && !await_verdict_) || Clock::now() > deferred_until_) std::rethrow_exception(deferred_);
      return moved ? detail::Progress::Moved : detail::Progress::Waiting;
    }
    if (!schedule_done_ && (checked_ || overlap_)) {
      detail::Progress p = detail::Progress::Waiting;
      try {
        p = schedule_->advance(ctx);
      } catch (const MismatchError&) {
        if (checked_) throw;
        deferred_ = std::current_exception();
        deferred_until_ = Clock::now() + kSignatureGrace;
        return detail::Progress::Moved;
      }
      if (p == detail::Progress::Done) schedule_done_ = true;
      if (p == detail::Progress::Moved) moved = true;
    }
    if (!schedule_done_ || !checked_) return moved ? detail::Progress::Moved : detail::Progress::Waiting;
    // Our signature buffer must outlive its sends.
    for (int i = 0; i < npeers_; ++i)
      if (!sends_[i]->test()) return moved ? detail::Progress::Moved : detail::Progress::Waiting;
    sends_done_ = true;
    return detail::Progress::Done;
  }

 private:
  // Below the transports' eager limits: such messages are sent whole, without a handshake.
  static constexpr size_t kOverlapMaxBytes = 8 * 1024;

  bool poll_signatures() {
    if (checked_) return false;
    bool moved = false;
    for (int i = 0; i < npeers_; ++i) {
      if (arrived_[i] || !recvs_[i]->test()) continue;
      arrived_[i] = moved = true;
      try {
        check(i);
      } catch (const UnreadableSignature&) {
        deferred_ = std::current_exception();
        deferred_until_ = Clock::now() + kSignatureGrace;
        await_verdict_ = true;
      }
    }
    checked_ = arrived_[0] && (npeers_ == 1 || arrived_[1]);
    return moved;
  }

  void check(int i) {
    check_signature(sig_, rank_, peers_[i], wire_->theirs[i].data(), recvs_[i]->bytes(), 0);
  }

  std::unique_ptr<detail::Operation> schedule_;
  Signature sig_;
  int rank_;
  int peers_[2] = {0, 0};
  int npeers_ = 1;
  struct Wire {
    SignatureWire mine{};
    std::array<std::byte, kSignatureMessageMaxBytes> theirs[2];
  };
  std::unique_ptr<Wire> wire_ = std::make_unique<Wire>();
  bool sends_done_ = false;
  std::unique_ptr<Request> recvs_[2], sends_[2];
  bool arrived_[2] = {false, false};
  bool checked_ = false;
  bool overlap_;
  bool schedule_done_ = false;
  std::exception_ptr deferred_;
  Clock::time_point deferred_until_{};
  bool await_verdict_ = false;
};

}  // namespace

const char* to_string(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::Allreduce: return "allreduce";
    case CollectiveKind::ReduceScatter: return "reduce_scatter";
    case CollectiveKind::Allgather: return "allgather";
    case CollectiveKind::Broadcast: return "broadcast";
    case CollectiveKind::Reduce: return "reduce";
    case CollectiveKind::Barrier: return "barrier";
  }
  return "?";
}

SignatureWire encode(const Signature& s) {
  SignatureWire w{};
  put(w, 0,
      kMagic << 32 | kVersion << 24 | uint64_t{static_cast<uint8_t>(s.kind)} << 16 |
          uint64_t{static_cast<uint8_t>(s.type)} << 8 | static_cast<uint8_t>(s.op));
  put(w, 1, s.seq);
  put(w, 2, s.count);
  put(w, 3, uint64_t{static_cast<uint8_t>(s.wire)} << 32 | static_cast<uint32_t>(s.root));
  return w;
}

std::optional<Signature> decode(std::span<const std::byte> b) {
  if (b.size() != kSignatureBytes) return std::nullopt;
  const uint64_t w0 = get(b, 0);
  if (w0 >> 32 != kMagic || (w0 >> 24 & 0xff) != kVersion) return std::nullopt;
  const uint64_t kind = w0 >> 16 & 0xff, type = w0 >> 8 & 0xff, op = w0 & 0xff;
  if (kind < 1 || kind > static_cast<uint64_t>(CollectiveKind::Barrier)) return std::nullopt;
  if (type > static_cast<uint64_t>(DataType::Int64) || op > static_cast<uint64_t>(ReduceOp::Avg)) return std::nullopt;
  const uint64_t w3 = get(b, 3);
  const uint64_t wire = w3 >> 32 & 0xff;
  if (w3 >> 40 != 0 || wire > static_cast<uint64_t>(WireDtype::FP16)) return std::nullopt;
  Signature s;
  s.kind = static_cast<CollectiveKind>(kind);
  s.type = static_cast<DataType>(type);
  s.op = static_cast<ReduceOp>(op);
  s.seq = get(b, 1);
  s.count = get(b, 2);
  s.root = static_cast<int32_t>(static_cast<uint32_t>(w3));
  s.wire = static_cast<WireDtype>(wire);
  return s;
}

void check_signature(const Signature& mine, int rank, int peer, const std::byte* message, size_t bytes,
                     size_t payload) {
  std::optional<Signature> theirs =
      bytes >= kSignatureBytes ? decode(std::span<const std::byte>(message, kSignatureBytes)) : std::nullopt;
  if (!theirs)
    throw UnreadableSignature(rank, peer, to_string(mine.kind),
                              fmt::format("rank {} called {}; rank {} sent {} bytes that are not a collective signature "
                                          "(a different ringlink version?)",
                                          rank, describe(mine), peer, bytes));
  if (*theirs != mine)
    throw MismatchError(rank, peer, to_string(mine.kind), mismatch_message(rank, mine, peer, describe(*theirs)));
  if (bytes != kSignatureBytes + payload)
    throw UnreadableSignature(rank, peer, to_string(mine.kind),
                              fmt::format("rank {} called {}, as did rank {}, which sent {} bytes where {} belong "
                                          "(a different ringlink version?)",
                                          rank, describe(mine), peer, bytes, kSignatureBytes + payload));
}

std::string describe(const Signature& s) {
  if (s.kind == CollectiveKind::Barrier) return "barrier()";
  std::string out = fmt::format("{}(count={}, {}", to_string(s.kind), s.count, type_name(s.type));
  if (is_reduction(s.kind)) out += fmt::format(", {}", ringlink::to_string(s.op));
  if (is_rooted(s.kind)) out += fmt::format(", root={}", s.root);
  if (s.wire != WireDtype::Off) out += fmt::format(", wire={}", ringlink::to_string(s.wire));
  return out + ")";
}

std::string mismatch_message(int rank, const Signature& mine, int peer, const std::string& theirs) {
  // Lower rank first, so both ranks (and every rank the store tells) print the same line.
  std::string a = fmt::format("rank {} called {}", rank, describe(mine));
  std::string b = fmt::format("rank {} called {}", peer, theirs);
  if (peer < rank) std::swap(a, b);
  return fmt::format("{}; {} (collective #{} on this communicator)", a, b, mine.seq);
}

std::unique_ptr<detail::Operation> with_signature(std::unique_ptr<detail::Operation> schedule, Signature signature,
                                                  int rank, int size) {
  return std::make_unique<Signed>(std::move(schedule), signature, rank, size);
}

}  // namespace ringlink::algo
