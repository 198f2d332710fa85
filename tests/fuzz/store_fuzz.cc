// libFuzzer target for the rendezvous store's protocol: the input drives a StoreService (the
// store without its sockets, store_service.h) through connections that open, send frames or raw
// bytes, authenticate as the harness knows how, close, and let time pass. Whatever arrives, the
// service must not crash, must keep its connections within the caps, and everything it answers
// must be a well-formed reply or event.
//
// Input: a sequence of commands, each a selector byte and its arguments:
//   0 open | 1 k: close connection k | 2 k len(2) bytes: frame to k | 3 k spec: handshake on k
//   (spec: rank = spec % 4, channel = bit 2, epoch = bits 3-4, WORLD_SIZE 4 instead of 3 if
//   bit 7) | 4 t: t * 37 ms pass | 5 k len bytes: raw bytes to k through the frame reader.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bootstrap/store_auth.h"
#include "bootstrap/store_protocol.h"
#include "bootstrap/store_service.h"
#include "bootstrap/wire.h"
#include "common/log.h"

using namespace ringlink;
using namespace ringlink::store_protocol;

namespace {

constexpr int kWorld = 3;
const std::string kToken = "fuzz-token";

class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  bool empty() const { return p_ == end_; }
  uint8_t byte() { return p_ == end_ ? 0 : *p_++; }
  std::string take(size_t n) {
    n = std::min<size_t>(n, static_cast<size_t>(end_ - p_));
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// Every output must decode as something the clients understand.
void check(const std::vector<StoreService::Output>& out) {
  for (auto& o : out) {
    if (o.payload.empty()) continue;
    if (o.payload.size() > kMaxFrameBytes) __builtin_trap();
    // Either a reply (status first) or a pushed event (event first); both parse without
    // throwing anything but FormatError.
    try {
      wire::Reader r(o.payload);
      uint8_t first = r.u8();
      if (first == static_cast<uint8_t>(Status::Failed)) read_failure(r);
    } catch (const wire::FormatError&) {
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = [] {
    log::set_level(LogLevel::Warn);
    return true;
  }();
  (void)quiet;
  uint64_t counter = 0;
  StoreService svc(StoreService::Config{kToken, kWorld, milliseconds(1000), [&](size_t n) {
                                          return std::string(n, static_cast<char>(counter++));
                                        }});
  Clock::time_point now{};
  std::vector<int> ids;  // connections opened, open or not
  std::map<int, wire::FrameReader> readers;
  std::map<int, std::string> challenges;  // the last reply each connection got
  int next = 1;
  auto conn = [&](uint8_t k) { return ids.empty() ? 0 : ids[k % ids.size()]; };
  auto collect = [&] {
    auto out = svc.take_output();
    check(out);
    for (auto& o : out) {
      if (!o.payload.empty()) challenges[o.conn] = o.payload;
      if (o.close) readers.erase(o.conn);
    }
  };

  Input in(data, size);
  while (!in.empty()) {
    switch (in.byte() % 6) {
      case 0: {
        int id = next++;
        ids.push_back(id);
        readers.emplace(id, wire::FrameReader(kMaxHandshakeFrameBytes));
        svc.on_open(id, "10.0.0.1:" + std::to_string(id), now);
        break;
      }
      case 1: svc.on_closed(conn(in.byte()), now); break;
      case 2: {
        int id = conn(in.byte());
        size_t len = in.byte() | (static_cast<size_t>(in.byte()) << 8);
        svc.on_frame(id, in.take(len), now);
        break;
      }
      case 3: {
        int id = conn(in.byte());
        uint8_t spec = in.byte();
        Hello h;
        h.rank = spec % 4;
        h.world_size = (spec & 0x80) ? kWorld + 1 : kWorld;
        h.channel = (spec & 4) ? Channel::Watch : Channel::Request;
        h.epoch = (spec >> 3) & 3;
        h.heartbeat_ms = 100;
        h.nonce = std::string(kNonceBytes, static_cast<char>(spec));
        std::string hello = encode(h);
        svc.on_frame(id, hello, now);
        collect();
        std::string challenge = challenges[id];
        if (challenge.size() == 1 + kNonceBytes + kProofBytes && challenge[0] == 0) {
          std::string nonce = challenge.substr(1, kNonceBytes);
          svc.on_frame(id,
                       wire::Writer()
                           .u8(static_cast<uint8_t>(Op::Proof))
                           .fixed(store_auth::client_proof(kToken, hello, nonce))
                           .take(),
                       now);
        }
        break;
      }
      case 4:
        now += milliseconds(37 * in.byte());
        svc.on_tick(now);
        break;
      case 5: {
        int id = conn(in.byte());
        std::string bytes = in.take(in.byte());
        auto r = readers.find(id);
        if (r == readers.end()) break;
        r->second.append(bytes);
        try {
          for (;;) {
            r->second.set_limit(svc.frame_limit(id));
            auto frame = r->second.next();
            if (!frame) break;
            svc.on_frame(id, *frame, now);
            collect();
            r = readers.find(id);
            if (r == readers.end()) break;
          }
        } catch (const wire::FormatError&) {
          readers.erase(id);
          svc.on_closed(id, now);
        }
        break;
      }
    }
    collect();
    if (svc.connections() > kMaxPendingHandshakes + 2 * static_cast<size_t>(kWorld + 1) * kMaxLiveEpochs)
      __builtin_trap();
  }
  return 0;
}
