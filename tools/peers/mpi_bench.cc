// mpi-bench: the ringlink-bench table measured with MPI (Open MPI's collectives), for
// side-by-side comparison. Start with mpirun; the transport is whatever MCA parameters select:
//   mpirun -np 2 --mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include lo mpi-bench ...
//   mpirun -np 2 --mca pml ob1 --mca btl vader,self mpi-bench ...
#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench/cli.h"
#include "bench/runner.h"

namespace {

using namespace ringlink;
using namespace ringlink::bench;

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw std::runtime_error(fmt::format("{} failed: {}", what, std::string(msg, static_cast<size_t>(len))));
}

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

class MpiBackend final : public Backend {
 public:
  MpiBackend() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  std::string library() const override {
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(v, &len);
    std::string s(v, static_cast<size_t>(len));
    if (auto comma = s.find(','); comma != std::string::npos) s.resize(comma);
    return s;
  }

  // mpirun hands --mca settings to the ranks as OMPI_MCA_* variables.
  std::string transport() const override {
    return fmt::format("pml {} btl {}", env_or("OMPI_MCA_pml", "default"), env_or("OMPI_MCA_btl", "default"));
  }
  std::string algorithm() const override {
    return env_or("OMPI_MCA_coll_tuned_allreduce_algorithm", "library default");
  }

  std::string unsupported(Collective c, DataType t, ReduceOp op) const override {
    if (!has_reduction(c)) return {};
    if (op == ReduceOp::Avg) return "MPI has no average reduction";
    if (t == DataType::Float16 || t == DataType::BFloat16)
      return fmt::format("Open MPI 4.1 has no {} reduction type", to_string(t));
    return {};
  }

  const void* run(const CollArgs& a) override {
    const MPI_Datatype dt = datatype(a.type);
    const int n = count(a.count);
    void* in_place = MPI_IN_PLACE;
    switch (a.coll) {
      case Collective::AllReduce:
        check(MPI_Allreduce(a.in_place ? in_place : a.send, a.recv, n, dt, mpi_op(a.op), MPI_COMM_WORLD),
              "MPI_Allreduce");
        return a.recv;
      case Collective::Broadcast: {
        // MPI broadcasts in place; out of place, the root sends straight from its send buffer.
        const bool from_send = rank_ == a.root && !a.in_place;
        void* buf = from_send ? const_cast<void*>(a.send) : a.recv;
        check(MPI_Bcast(buf, n, dt, a.root, MPI_COMM_WORLD), "MPI_Bcast");
        return buf;
      }
      case Collective::Reduce: {
        const void* send = a.in_place && rank_ == a.root ? in_place : a.send;
        check(MPI_Reduce(send, a.recv, n, dt, mpi_op(a.op), a.root, MPI_COMM_WORLD), "MPI_Reduce");
        return a.recv;
      }
      case Collective::AllGather:
        if (a.in_place)
          check(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, a.recv, n, dt, MPI_COMM_WORLD), "MPI_Allgather");
        else
          check(MPI_Allgather(a.send, n, dt, a.recv, n, dt, MPI_COMM_WORLD), "MPI_Allgather");
        return a.recv;
      case Collective::ReduceScatter:
        if (a.in_place) {
          // MPI's in-place reduce_scatter leaves the result at the start of the buffer.
          void* buf = const_cast<void*>(a.send);
          check(MPI_Reduce_scatter_block(MPI_IN_PLACE, buf, n, dt, mpi_op(a.op), MPI_COMM_WORLD),
                "MPI_Reduce_scatter_block");
          return buf;
        }
        check(MPI_Reduce_scatter_block(a.send, a.recv, n, dt, mpi_op(a.op), MPI_COMM_WORLD),
              "MPI_Reduce_scatter_block");
        return a.recv;
      case Collective::P2P: break;
    }
    return a.recv;
  }

  void send(const void* buf, size_t bytes, int peer, uint32_t tag) override {
    check(MPI_Send(buf, count(bytes), MPI_BYTE, peer, static_cast<int>(tag), MPI_COMM_WORLD), "MPI_Send");
  }
  void recv(void* buf, size_t bytes, int peer, uint32_t tag) override {
    check(MPI_Recv(buf, count(bytes), MPI_BYTE, peer, static_cast<int>(tag), MPI_COMM_WORLD, MPI_STATUS_IGNORE),
          "MPI_Recv");
  }
  void send_window(const void* buf, size_t bytes, int n, int peer, uint32_t tag) override {
    reqs_.resize(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
      check(MPI_Isend(buf, count(bytes), MPI_BYTE, peer, static_cast<int>(tag), MPI_COMM_WORLD, &reqs_[i]),
            "MPI_Isend");
    check(MPI_Waitall(n, reqs_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
  }
  void recv_window(void* buf, size_t bytes, int n, int peer, uint32_t tag) override {
    reqs_.resize(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
      check(MPI_Irecv(buf, count(bytes), MPI_BYTE, peer, static_cast<int>(tag), MPI_COMM_WORLD, &reqs_[i]),
            "MPI_Irecv");
    check(MPI_Waitall(n, reqs_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
  }

  void exchange_window(const void* send, void* recv, size_t bytes, int n, int peer, uint32_t tag) override {
    reqs_.resize(2 * static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
      check(MPI_Irecv(recv, count(bytes), MPI_BYTE, peer, static_cast<int>(tag), MPI_COMM_WORLD, &reqs_[i]),
            "MPI_Irecv");
    for (int i = 0; i < n; ++i)
      check(MPI_Isend(send, count(bytes), MPI_BYTE, peer, static_cast<int>(tag), MPI_COMM_WORLD, &reqs_[n + i]),
            "MPI_Isend");
    check(MPI_Waitall(2 * n, reqs_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
  }

  double allreduce_scalar(double v, ReduceOp op) override {
    double out = 0;
    check(MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, mpi_op(op), MPI_COMM_WORLD), "MPI_Allreduce");
    return op == ReduceOp::Avg ? out / size_ : out;
  }
  void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

 private:
  static int count(size_t n) {
    if (n > static_cast<size_t>(INT_MAX)) throw std::runtime_error(fmt::format("{} elements exceed MPI's int count", n));
    return static_cast<int>(n);
  }

  static MPI_Datatype datatype(DataType t) {
    switch (t) {
      case DataType::Float32: return MPI_FLOAT;
      case DataType::Float64: return MPI_DOUBLE;
      case DataType::Float16:
      case DataType::BFloat16: return MPI_UINT16_T;  // moved as bits; reductions are refused above
      case DataType::Int8: return MPI_INT8_T;
      case DataType::UInt8: return MPI_UINT8_T;
      case DataType::Int32: return MPI_INT32_T;
      case DataType::Int64: return MPI_INT64_T;
    }
    return MPI_BYTE;
  }

  static MPI_Op mpi_op(ReduceOp op) {
    switch (op) {
      case ReduceOp::Sum: return MPI_SUM;
      case ReduceOp::Prod: return MPI_PROD;
      case ReduceOp::Min: return MPI_MIN;
      case ReduceOp::Max: return MPI_MAX;
      case ReduceOp::Avg: break;
    }
    return MPI_SUM;
  }

  int rank_ = 0, size_ = 1;
  std::vector<MPI_Request> reqs_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "mpi-bench: the ringlink-bench table measured with MPI collectives.\n"
      "Start with mpirun: mpirun -np N [--mca ...] mpi-bench [COLLECTIVE] [options]"};
  Config cfg;
  add_common_options(app, cfg);
  if (auto status = parse_command_line(app, cfg, argc, argv)) return *status;

  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int status = 0;
  try {
    MpiBackend backend;
    status = exit_status(run_benchmark(backend, cfg, "mpi-bench"));
  } catch (const Unsupported&) {
    status = kExitUnsupported;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi-bench: %s\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return status;
}
