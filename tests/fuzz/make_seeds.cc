// Writes the seed corpora of the transport fuzz targets: make-fuzz-seeds DIR fills
// DIR/<name>/ with well-formed inputs made by the real encoders (and a few near misses), so the
// fuzzers start from what a peer of this version sends. scripts/fuzz runs it before each run.
#include <arpa/inet.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "transport/ucx/endpoint_blob.h"
#include "transport/verbs/endpoint.h"
#include "transport/verbs/soft/wire_format.h"
#include "transport/verbs/wire.h"

namespace fs = std::filesystem;
using namespace ringlink;
namespace soft = ringlink::verbs::soft;

namespace {

fs::path root;

void seed(const std::string& target, const std::string& name, const std::vector<std::byte>& bytes) {
  fs::create_directories(root / target);
  std::ofstream(root / target / name, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

template <typename T>
void put(std::vector<std::byte>& out, const T& v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}

void verbs_endpoints() {
  for (uint32_t qps : {1u, 4u, 16u}) {
    verbs::Endpoint e;
    e.rank = 1;
    e.peer = 0;
    e.fifo_depth = verbs::wire::kFifoDepth;
    e.eager_slots = verbs::wire::kEagerSlots;
    e.lid = 0x1234;
    e.mtu = 5;
    e.gid_index = qps == 4 ? 1 : -1;
    e.ethernet = qps == 4;
    e.fifo_addr = 0x7f0000000000;
    e.sizes_addr = e.fifo_addr + e.fifo_depth * 64;
    e.credits_addr = e.sizes_addr + e.fifo_depth * 8;
    e.fifo_rkey = e.sizes_rkey = 0x55;
    for (uint32_t i = 0; i <= qps; ++i) e.qpns.push_back(0x100 + i);
    seed("verbs_endpoint", "qps-" + std::to_string(qps), verbs::encode_endpoint(e));
  }
}

void ucx_endpoints() {
  std::vector<std::byte> address(180);
  for (size_t i = 0; i < address.size(); ++i) address[i] = std::byte(i * 7);
  seed("ucx_endpoint", "address-180", ucx::encode_endpoint(0, 1, address));
  seed("ucx_endpoint", "address-1", ucx::encode_endpoint(3, 2, std::span(address).first(1)));
}

// Link state | CTS entry | immediate | eager message, as verbs_wire_fuzz.cc reads them.
std::vector<std::byte> wire_input(uint64_t posted, uint64_t table_word, const verbs::wire::CtsEntry& cts,
                                  uint32_t imm, uint64_t eager_payload) {
  std::vector<std::byte> out;
  put(out, uint16_t{verbs::wire::kFifoDepth - 1});
  put(out, uint8_t{3});  // 4 QPs
  put(out, uint64_t{40});
  put(out, posted);
  put(out, table_word);
  put(out, cts);
  put(out, imm);
  verbs::wire::EagerHeader h{9, 2, eager_payload, 0};
  put(out, h);
  out.resize(out.size() + eager_payload, std::byte{0x42});
  return out;
}

void verbs_wire() {
  namespace w = verbs::wire;
  w::CtsEntry e{};
  e.seq_head = e.seq_tail = 3;
  e.addr = 0x10000;
  e.size = 4 << 20;
  e.tag = 9;
  e.rkey = 0x77;
  e.slot = 2;
  e.eager_released = 12;
  seed("verbs_wire", "small-imm", wire_input(4096, 0, e, w::encode_small(2, 100), 24));
  seed("verbs_wire", "size-in-table", wire_input(4 << 20, 3 << 20, e, w::encode_large(2, 4, true, false), 0));
  seed("verbs_wire", "filled", wire_input(4 << 20, 0, e, w::encode_large(2, 4, false, false), 1024));
  seed("verbs_wire", "truncated", wire_input(100, 1000, e, w::encode_large(2, 1, true, true), 1));
  seed("verbs_wire", "void", wire_input(0, 0, e, w::encode_void(2), 8));
}

std::vector<std::byte> frame(soft::WireOp op, uint64_t psn, uint64_t length, size_t payload) {
  soft::WireHeader h;
  h.op = static_cast<uint8_t>(op);
  h.psn = psn;
  h.length = length;
  h.addr = 0x10000;
  h.rkey = 0x33;
  h.status = op == soft::WireOp::Nak ? 10 : 7;
  if (op == soft::WireOp::Ack || op == soft::WireOp::ReadResp) h.status = 0;
  std::vector<std::byte> out;
  put(out, h);
  out.resize(out.size() + payload, std::byte{0x17});
  return out;
}

void soft_frames() {
  using soft::WireOp;
  soft::WireHeader hello;
  hello.op = static_cast<uint8_t>(WireOp::Hello);
  hello.addr = 40001;
  hello.rkey = 0x12;
  hello.length = 0x34;
  for (int direction = 0; direction < 2; ++direction) {
    std::vector<std::byte> in;
    put(in, uint8_t(direction));
    put(in, hello);
    auto add = [&](const std::vector<std::byte>& f) { in.insert(in.end(), f.begin(), f.end()); };
    if (direction == 0) {
      add(frame(WireOp::Write, 1, 64, 64));
      add(frame(WireOp::WriteImm, 2, 0, 0));
      add(frame(WireOp::Send, 3, 16, 16));
      add(frame(WireOp::ReadReq, 4, 4096, 0));
    } else {
      add(frame(WireOp::Ack, 3, 0, 0));
      add(frame(WireOp::ReadResp, 4, 32, 32));
      add(frame(WireOp::Nak, 5, 0, 0));
    }
    seed("soft_frame", direction == 0 ? "requests" : "answers", in);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make-fuzz-seeds DIR\n");
    return 2;
  }
  root = argv[1];
  verbs_endpoints();
  ucx_endpoints();
  verbs_wire();
  soft_frames();
  return 0;
}
