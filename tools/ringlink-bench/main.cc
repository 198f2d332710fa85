// ringlink-bench: the nccl-tests style bandwidth test for ringlink. Started by ringlink-run,
// torchrun, mpirun or srun; the communicator reads the rank identity from the environment.
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <ringlink/ringlink.h>

#include "bench/cli.h"
#include "bench/runner.h"
#include "ringlink_config.h"
#include "transport/ucx/ucx_devices.h"
#if RINGLINK_HAVE_VERBS
#include "transport/verbs/devices.h"
#endif

namespace {

using namespace ringlink;
using namespace ringlink::bench;

class RinglinkBackend final : public Backend {
 public:
  explicit RinglinkBackend(Communicator& c) : c_(c) {}

  int rank() const override { return c_.rank(); }
  int size() const override { return c_.size(); }
  std::string library() const override { return std::string("ringlink ") + RINGLINK_VERSION_STRING; }
  std::string transport() const override { return c_.transport_name(); }
  std::string algorithm() const override { return std::string(to_string(c_.options().algorithm)); }
  std::string wire_format() const override { return std::string(to_string(c_.options().wire_dtype)); }

  const void* run(const CollArgs& a) override {
    switch (a.coll) {
      case Collective::AllReduce: c_.allreduce(a.send, a.recv, a.count, a.type, a.op); break;
      case Collective::Broadcast: c_.broadcast(a.send, a.recv, a.count, a.type, a.root); break;
      case Collective::Reduce: c_.reduce(a.send, a.recv, a.count, a.type, a.op, a.root); break;
      case Collective::AllGather: c_.allgather(a.send, a.recv, a.count, a.type); break;
      case Collective::ReduceScatter: c_.reduce_scatter(a.send, a.recv, a.count, a.type, a.op); break;
      case Collective::P2P: break;
    }
    return a.recv;
  }

  void send(const void* buf, size_t bytes, int peer, uint32_t tag) override { c_.send(buf, bytes, peer, tag); }
  void recv(void* buf, size_t bytes, int peer, uint32_t tag) override { c_.recv(buf, bytes, peer, tag); }

  void send_window(const void* buf, size_t bytes, int n, int peer, uint32_t tag) override {
    works_.clear();
    for (int i = 0; i < n; ++i) works_.push_back(c_.isend(buf, bytes, peer, tag));
    for (auto& w : works_) w.wait();
  }
  void recv_window(void* buf, size_t bytes, int n, int peer, uint32_t tag) override {
    works_.clear();
    for (int i = 0; i < n; ++i) works_.push_back(c_.irecv(buf, bytes, peer, tag));
    for (auto& w : works_) w.wait();
  }
  void exchange_window(const void* send, void* recv, size_t bytes, int n, int peer, uint32_t tag) override {
    works_.clear();
    for (int i = 0; i < n; ++i) works_.push_back(c_.irecv(recv, bytes, peer, tag));
    for (int i = 0; i < n; ++i) works_.push_back(c_.isend(send, bytes, peer, tag));
    for (auto& w : works_) w.wait();
  }
  // Timings and wrong counts are aggregated with point-to-point messages (the Backend
  // defaults), so the bookkeeping never depends on the collectives under test.

 private:
  Communicator& c_;
  std::vector<Work> works_;
};

// Transports and devices this binary can use. RINGLINK_IB_HCA=soft lists the software verbs.
void list_devices([[maybe_unused]] const Options& options) {
  std::fputs(ucx::list_devices().c_str(), stdout);
#if RINGLINK_HAVE_VERBS
  std::fputs(verbs::list_devices(options).c_str(), stdout);
#else
  std::printf("verbs: not built (libibverbs headers were not found at configure time)\n");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ringlink-bench: collective and point-to-point bandwidth in the nccl-tests format.\n"
      "Start one process per rank: ringlink-run -n N -- ringlink-bench [COLLECTIVE] [options]\n"
      "(or torchrun, mpirun, srun)."};
  Config cfg;
  add_common_options(app, cfg);
  std::optional<std::string> algo, transport;
  bool list = false;
  app.add_option("--algo", algo, "collective algorithm: auto, ring or tree (default: RINGLINK_ALGO, else auto)")
      ->check(CLI::IsMember({"auto", "ring", "tree"}));
  app.add_option("--transport", transport, "auto, ucx or verbs (default: RINGLINK_TRANSPORT, else auto)")
      ->check(CLI::IsMember({"auto", "ucx", "verbs"}));
  app.add_flag("--list-devices", list, "list the transports and devices this build can use, and exit");
  if (auto status = parse_command_line(app, cfg, argc, argv)) return *status;
  try {
    Options o = Options::from_environment();
    if (list) {
      list_devices(o);
      return 0;
    }
    if (o.world_size < 0) {  // no launcher: a single rank
      o.rank = 0;
      o.world_size = 1;
    }
    // CLI11 admitted only these names, so the parses succeed.
    if (algo) o.algorithm = parse_algorithm(*algo).value();
    if (transport) o.transport = parse_transport_kind(*transport).value();
    Communicator comm(o);
    RinglinkBackend backend(comm);
    RunInfo info = run_benchmark(backend, cfg, "ringlink-bench");
    return exit_status(info);
  } catch (const Unsupported&) {
    return kExitUnsupported;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringlink-bench: %s\n", e.what());
    return 1;
  }
}
