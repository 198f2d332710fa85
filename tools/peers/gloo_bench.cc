// gloo-bench: the ringlink-bench table measured with Gloo over its TCP transport, for
// side-by-side comparison. Started like ringlink-bench (ringlink-run, torchrun, mpirun, srun):
// the rank identity comes from the same environment variables; the ranks meet through a Gloo
// FileStore in a directory derived from the job (or --store-dir).
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/allreduce_bcube.h>
#include <gloo/allreduce_halving_doubling.h>
#include <gloo/allreduce_ring.h>
#include <gloo/allreduce_ring_chunked.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/config.h>
#include <gloo/math.h>
#include <gloo/reduce.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/types.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <ringlink/options.h>

#include "bench/cli.h"
#include "bench/runner.h"

namespace {

using namespace ringlink;
using namespace ringlink::bench;

// Allreduce algorithms this Gloo offers. The first two are the gloo::allreduce API that
// PyTorch uses (out of place capable); the others are the older in-place classes.
const std::vector<std::string> kAlgorithms = {"ring", "bcube", "ring_legacy", "ring_chunked", "halving_doubling"};

using ReduceFn = void (*)(void*, const void*, const void*, size_t);

template <typename T>
ReduceFn reduce_fn(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return static_cast<ReduceFn>(&gloo::sum<T>);
    case ReduceOp::Prod: return static_cast<ReduceFn>(&gloo::product<T>);
    case ReduceOp::Min: return static_cast<ReduceFn>(&gloo::min<T>);
    case ReduceOp::Max: return static_cast<ReduceFn>(&gloo::max<T>);
    case ReduceOp::Avg: break;
  }
  return nullptr;
}

template <typename T>
const gloo::ReductionFunction<T>* legacy_fn(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return gloo::ReductionFunction<T>::sum;
    case ReduceOp::Prod: return gloo::ReductionFunction<T>::product;
    case ReduceOp::Min: return gloo::ReductionFunction<T>::min;
    case ReduceOp::Max: return gloo::ReductionFunction<T>::max;
    case ReduceOp::Avg: break;
  }
  return nullptr;
}

// Calls f(T{}) with the Gloo element type of `t`; bfloat16 travels as 16-bit words (Gloo has
// no bfloat16 arithmetic, so reductions on it are refused before we get here).
template <typename F>
void with_type(DataType t, F&& f) {
  switch (t) {
    case DataType::Float32: f(float{}); return;
    case DataType::Float64: f(double{}); return;
    case DataType::Float16: f(gloo::float16{}); return;
    case DataType::BFloat16: f(uint16_t{}); return;
    case DataType::Int8: f(int8_t{}); return;
    case DataType::UInt8: f(uint8_t{}); return;
    case DataType::Int32: f(int32_t{}); return;
    case DataType::Int64: f(int64_t{}); return;
  }
}

std::string store_key(const Options& o) {
  const std::string token = o.job_token.empty() ? fmt::format("pid{}", ::getpid()) : o.job_token;
  return fmt::format("{:016x}", std::hash<std::string>{}(token));
}

class GlooBackend final : public Backend {
 public:
  GlooBackend(int rank, int size, const std::string& hostname, const std::string& iface,
              const std::string& store_dir, std::string algo)
      : algo_(std::move(algo)), store_dir_(store_dir) {
    gloo::transport::tcp::attr attr;
    if (!iface.empty()) attr.iface = iface;
    else attr.hostname = hostname;
    device_ = gloo::transport::tcp::CreateDevice(attr);
    std::filesystem::create_directories(store_dir_);
    gloo::rendezvous::FileStore files(store_dir_);
    gloo::rendezvous::PrefixStore store("gloo-bench", files);
    auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
    ctx->setTimeout(std::chrono::seconds(300));
    ctx->connectFullMesh(store, device_);
    ctx_ = ctx;
  }

  ~GlooBackend() override {
    legacy_.clear();
    try {
      barrier();
      if (ctx_->rank == 0) std::filesystem::remove_all(store_dir_);
    } catch (...) {
      // Leaving the rendezvous directory behind is harmless.
    }
  }

  int rank() const override { return ctx_->rank; }
  int size() const override { return ctx_->size; }
  std::string library() const override {
    return fmt::format("gloo {}.{}.{}", GLOO_VERSION_MAJOR, GLOO_VERSION_MINOR, GLOO_VERSION_PATCH);
  }
  std::string transport() const override { return "tcp"; }
  std::string algorithm() const override { return algo_; }

  std::string unsupported(Collective c, DataType t, ReduceOp op) const override {
    if (c == Collective::ReduceScatter)
      return "this Gloo's collective API has no reduce_scatter (PyTorch builds it from other collectives)";
    if (!has_reduction(c)) return {};
    if (op == ReduceOp::Avg) return "Gloo has no average reduction (PyTorch divides after a sum)";
    if (t == DataType::BFloat16) return "this Gloo has no bfloat16 arithmetic";
    if (c == Collective::AllReduce && t == DataType::Float16 && algo_ != "ring" && algo_ != "bcube")
      return "gloo's legacy allreduce classes have no half precision";
    return {};
  }

  const void* run(const CollArgs& a) override {
    const void* result = a.recv;
    with_type(a.type, [&](auto tag) {
      using T = decltype(tag);
      T* send = static_cast<T*>(const_cast<void*>(a.send));
      T* recv = static_cast<T*>(a.recv);
      switch (a.coll) {
        case Collective::AllReduce: allreduce<T>(a, send, recv); break;
        case Collective::Broadcast: {
          gloo::BroadcastOptions o(ctx_);
          if (rank() == a.root && !a.in_place) o.setInput<T>(send, a.count);
          o.setOutput<T>(recv, a.count);
          o.setRoot(a.root);
          gloo::broadcast(o);
          break;
        }
        case Collective::Reduce: {
          if constexpr (!std::is_same_v<T, uint16_t>) {
            gloo::ReduceOptions o(ctx_);
            if (!a.in_place) o.setInput<T>(send, a.count);
            o.setOutput<T>(recv, a.count);
            o.setRoot(a.root);
            o.setReduceFunction(reduce_fn<T>(a.op));
            gloo::reduce(o);
          }
          break;
        }
        case Collective::AllGather: {
          gloo::AllgatherOptions o(ctx_);
          if (!a.in_place) o.setInput<T>(send, a.count);
          o.setOutput<T>(recv, a.count * static_cast<size_t>(size()));
          gloo::allgather(o);
          break;
        }
        case Collective::ReduceScatter:
        case Collective::P2P: break;
      }
    });
    return result;
  }

  void send(const void* buf, size_t bytes, int peer, uint32_t tag) override {
    auto b = ctx_->createUnboundBuffer(const_cast<void*>(buf), bytes);
    b->send(peer, tag, 0, bytes);
    b->waitSend();
  }
  void recv(void* buf, size_t bytes, int peer, uint32_t tag) override {
    auto b = ctx_->createUnboundBuffer(buf, bytes);
    b->recv(peer, tag, 0, bytes);
    b->waitRecv();
  }
  void send_window(const void* buf, size_t bytes, int n, int peer, uint32_t tag) override {
    auto b = ctx_->createUnboundBuffer(const_cast<void*>(buf), bytes);
    for (int i = 0; i < n; ++i) b->send(peer, tag, 0, bytes);
    for (int i = 0; i < n; ++i) b->waitSend();
  }
  void recv_window(void* buf, size_t bytes, int n, int peer, uint32_t tag) override {
    auto b = ctx_->createUnboundBuffer(buf, bytes);
    for (int i = 0; i < n; ++i) b->recv(peer, tag, 0, bytes);
    for (int i = 0; i < n; ++i) b->waitRecv();
  }

  void exchange_window(const void* send, void* recv, size_t bytes, int n, int peer, uint32_t tag) override {
    auto in = ctx_->createUnboundBuffer(recv, bytes);
    auto out = ctx_->createUnboundBuffer(const_cast<void*>(send), bytes);
    for (int i = 0; i < n; ++i) in->recv(peer, tag, 0, bytes);
    for (int i = 0; i < n; ++i) out->send(peer, tag, 0, bytes);
    for (int i = 0; i < n; ++i) out->waitSend();
    for (int i = 0; i < n; ++i) in->waitRecv();
  }

  void barrier() override {
    gloo::BarrierOptions o(ctx_);
    gloo::barrier(o);
  }

 private:
  template <typename T>
  void allreduce(const CollArgs& a, T* send, T* recv) {
    if constexpr (std::is_same_v<T, uint16_t>) {
      return;  // bfloat16: refused in unsupported()
    } else {
      if (algo_ == "ring" || algo_ == "bcube") {
        gloo::AllreduceOptions o(ctx_);
        o.setAlgorithm(algo_ == "ring" ? gloo::AllreduceOptions::Algorithm::RING
                                       : gloo::AllreduceOptions::Algorithm::BCUBE);
        if (!a.in_place) o.setInput<T>(send, a.count);
        o.setOutput<T>(recv, a.count);
        o.setReduceFunction(reduce_fn<T>(a.op));
        gloo::allreduce(o);
        return;
      }
      if constexpr (std::is_same_v<T, gloo::float16>) {
        return;  // refused in unsupported()
      } else {
        // The legacy classes reduce in place and are built once per buffer, as their users did.
        if (!a.in_place) std::memcpy(recv, send, a.count * sizeof(T));
        auto key = std::make_tuple(static_cast<void*>(recv), a.count, a.type, a.op);
        auto it = legacy_.find(key);
        if (it == legacy_.end()) {
          std::vector<T*> ptrs{recv};
          const int count = static_cast<int>(a.count);
          std::unique_ptr<gloo::Algorithm> alg;
          if (algo_ == "ring_legacy")
            alg = std::make_unique<gloo::AllreduceRing<T>>(ctx_, ptrs, count, legacy_fn<T>(a.op));
          else if (algo_ == "ring_chunked")
            alg = std::make_unique<gloo::AllreduceRingChunked<T>>(ctx_, ptrs, count, legacy_fn<T>(a.op));
          else
            alg = std::make_unique<gloo::AllreduceHalvingDoubling<T>>(ctx_, ptrs, count, legacy_fn<T>(a.op));
          it = legacy_.emplace(key, std::move(alg)).first;
        }
        it->second->run();
      }
    }
  }

  std::string algo_;
  std::string store_dir_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::Context> ctx_;
  std::map<std::tuple<void*, size_t, DataType, ReduceOp>, std::unique_ptr<gloo::Algorithm>> legacy_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "gloo-bench: the ringlink-bench table measured with Gloo over TCP.\n"
      "Start one process per rank: ringlink-run -n N -- gloo-bench [COLLECTIVE] [options]"};
  Config cfg;
  add_common_options(app, cfg);
  std::string algo = "ring", hostname = "127.0.0.1", iface, store_dir;
  app.add_option("--gloo-algo", algo,
                 "allreduce algorithm: ring (gloo::allreduce, as PyTorch; default), bcube, ring_legacy, "
                 "ring_chunked, halving_doubling (the older in-place classes)")
      ->check(CLI::IsMember(kAlgorithms));
  app.add_option("--gloo-hostname", hostname, "address the TCP transport binds to (default 127.0.0.1)");
  app.add_option("--gloo-iface", iface, "network interface for the TCP transport (instead of --gloo-hostname)");
  app.add_option("--store-dir", store_dir, "rendezvous directory shared by the ranks (default: /tmp, per job)");
  if (auto status = parse_command_line(app, cfg, argc, argv)) return *status;

  try {
    Options o = Options::from_environment();
    const int rank = o.world_size < 0 ? 0 : o.rank;
    const int size = o.world_size < 0 ? 1 : o.world_size;
    if (store_dir.empty()) store_dir = fmt::format("/tmp/gloo-bench-{}", store_key(o));
    GlooBackend backend(rank, size, hostname, iface, store_dir, algo);
    return exit_status(run_benchmark(backend, cfg, "gloo-bench"));
  } catch (const Unsupported&) {
    return kExitUnsupported;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gloo-bench: %s\n", e.what());
    return 1;
  }
}
