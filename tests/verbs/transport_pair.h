// Two verbs transports over the software verbs, ranks 0 and 1 of one process, connected to each
// other through the two-phase connect (no store), and driven until requests complete.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "transport.h"
#include "transport/verbs/verbs_transport.h"

namespace ringlink::testing {

inline Options soft_verbs_options(int qps = 1) {
  Options o;
  o.transport = TransportKind::Verbs;
  o.ib_hca = "soft";
  o.ib_qps = qps;
  return o;
}

struct TransportPair {
  explicit TransportPair(int qps = 1) : TransportPair(soft_verbs_options(qps)) {}
  explicit TransportPair(const Options& both) : TransportPair(both, both) {}
  TransportPair(Options a, Options b) : opt{std::move(a), std::move(b)} {
    for (int r = 0; r < 2; ++r) {
      TransportSetup s{r, 2, r, 2, opt[r]};
      t[r] = create_verbs_transport(s);
    }
    auto e0 = t[0]->endpoint_info(1);
    auto e1 = t[1]->endpoint_info(0);
    c[0] = t[0]->connect(1, e1);
    c[1] = t[1]->connect(0, e0);
  }
  ~TransportPair() {
    c[0].reset();
    c[1].reset();
  }
  verbs::VerbsTransportInfo& info(int r) { return dynamic_cast<verbs::VerbsTransportInfo&>(*t[r]); }

  // Progresses both ranks until every request completes (or one throws); false at the deadline.
  bool drive(const std::vector<Request*>& reqs, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::vector<bool> done(reqs.size(), false);
    for (;;) {
      t[0]->progress();
      t[1]->progress();
      bool all = true;
      for (size_t i = 0; i < reqs.size(); ++i) {
        if (!done[i]) done[i] = reqs[i]->test();
        all = all && done[i];
      }
      if (all) return true;
      if (std::chrono::steady_clock::now() > deadline) return false;
    }
  }
  bool drive_all(const std::vector<std::unique_ptr<Request>>& reqs,
                 std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    std::vector<Request*> raw;
    for (const auto& r : reqs) raw.push_back(r.get());
    return drive(raw, limit);
  }

  Options opt[2];
  std::unique_ptr<Transport> t[2];
  std::unique_ptr<Connection> c[2];
};

// Bytes that differ from message to message (xorshift from `seed`).
inline std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<uint8_t>(x);
  }
  return v;
}

}  // namespace ringlink::testing
