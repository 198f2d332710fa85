// Communicator options. Every field can be set in code; Options::from_environment() fills
// them from RINGLINK_* variables and from the launcher's (torchrun, then Open MPI, then Slurm).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace ringlink {

enum class TransportKind { Auto, Verbs, Ucx };
enum class Algorithm { Auto, Ring, Tree };
enum class LogLevel { Warn = 0, Info = 1, Trace = 2 };
// The 16-bit format a float32 allreduce or reduce_scatter carries on the wire (reducing in
// float32 at every hop), or Off: the float32 values themselves.
enum class WireDtype : uint8_t { Off = 0, BF16 = 1, FP16 = 2 };

// The names RINGLINK_TRANSPORT, RINGLINK_ALGO, RINGLINK_WIRE_DTYPE and RINGLINK_DEBUG take; parse_* return nullopt
// for any other (RINGLINK_DEBUG also takes the lower-case names).
std::string_view to_string(TransportKind k);  // auto, verbs, ucx
std::optional<TransportKind> parse_transport_kind(std::string_view name);
std::string_view to_string(Algorithm a);  // auto, ring, tree
std::optional<Algorithm> parse_algorithm(std::string_view name);
std::string_view to_string(LogLevel l);  // WARN, INFO, TRACE
std::optional<LogLevel> parse_log_level(std::string_view name);
std::string_view to_string(WireDtype w);  // off, bf16, fp16
std::optional<WireDtype> parse_wire_dtype(std::string_view name);

// Which launcher the rank identity came from.
enum class Launcher { None, Explicit, Torchrun, OpenMpi, Slurm };
std::string_view to_string(Launcher l);

struct Options {
  // ---- identity and rendezvous (from the launcher unless set) ----
  int rank = -1;
  int world_size = -1;
  int local_rank = -1;
  int local_world_size = -1;
  std::string master_addr;     // host of rank 0, which serves the rendezvous store
  int master_port = 0;         // the store's TCP port
  std::string job_token;       // RINGLINK_JOB_TOKEN: every rank must prove it holds the same one
  bool job_token_derived = false;  // no RINGLINK_JOB_TOKEN: derived from the job id (guessable)
  Launcher launcher = Launcher::None;

  // ---- engine ----
  TransportKind transport = TransportKind::Auto;       // RINGLINK_TRANSPORT
  Algorithm algorithm = Algorithm::Auto;                // RINGLINK_ALGO
  size_t chunk_bytes = 0;                               // RINGLINK_CHUNK_BYTES; 0 = measured default
  // RINGLINK_WIRE_DTYPE: float32 allreduce and reduce_scatter over host buffers send bf16 or
  // fp16 values and reduce in float32 (docs/collectives.md, "Compressed wire formats"). Every
  // rank must set the same: a difference is a MismatchError.
  WireDtype wire_dtype = WireDtype::Off;
  // RINGLINK_TIMEOUT_MS: how long a live peer may keep an operation waiting (10 minutes, as
  // PyTorch's NCCL watchdog): late is not dead. A dead or unreachable peer is reported within
  // liveness_timeout instead, whatever this says.
  std::chrono::milliseconds timeout{600000};
  // RINGLINK_LIVENESS_TIMEOUT_MS: heartbeat silence after which a rank (or rank 0's store) is
  // declared unreachable; heartbeats go every tenth of it, at most every second.
  std::chrono::milliseconds liveness_timeout{10000};
  std::chrono::milliseconds connect_timeout{60000};     // RINGLINK_CONNECT_TIMEOUT_MS: rendezvous deadline
  LogLevel log_level = LogLevel::Warn;                  // RINGLINK_DEBUG

  // ---- verbs transport ----
  std::string ib_hca;       // RINGLINK_IB_HCA: "name[:port],..." or "soft"
  int ib_gid_index = -1;    // RINGLINK_IB_GID_INDEX; -1 = choose automatically
  int ib_timeout = 18;      // RINGLINK_IB_TIMEOUT: 4.096 us * 2^value per retry
  int ib_retry_cnt = 7;     // RINGLINK_IB_RETRY_CNT
  int ib_qps = 1;           // RINGLINK_IB_QPS: queue pairs per connection
  bool ib_gpudirect = true; // RINGLINK_IB_GPUDIRECT=off: stage GPU memory through host even where GPUDirect works
  int ib_gdr_flush = -1;    // RINGLINK_IB_GDR_FLUSH=0|1: force the GPUDirect flush off / on; -1 = as detected
  bool ib_mr_cache = true;  // RINGLINK_IB_MR_CACHE=0: register user buffers per message instead of caching them

  // ---- diagnostics and tests ----
  std::string ib_verbs_library;  // RINGLINK_IBVERBS_LIB: the libibverbs to load; empty = libibverbs.so.1
  std::string ib_sysfs_root;     // RINGLINK_IB_SYSFS_ROOT: where RDMA devices are listed; empty = /sys/class/infiniband
  std::string soft_verbs_fault;  // RINGLINK_SOFT_VERBS_FAULT: a fault the software verbs inject ("spec[@rank]")
  // RINGLINK_DEVICE_OPS=standin[:SEED]: "device" memory and its copies and reductions through the
  // host stand-in (tests of the device pipeline without a GPU); SEED orders its completions.
  // -1 = the real CUDA device path.
  int64_t device_standin_seed = -1;

  // Reads the environment. Throws InvalidArgumentError naming the variable on a malformed value.
  // Identity fields stay -1 / empty when no launcher variables are present.
  static Options from_environment();

  // Same, with a custom lookup (tests). `getenv` returns nullopt for unset variables.
  using EnvLookup = std::function<std::optional<std::string>(const char* name)>;
  static Options from_environment(const EnvLookup& getenv);

  // Throws InvalidArgumentError when the identity is incomplete or inconsistent, and when the
  // job token is empty while ranks run on several hosts (or MASTER_ADDR is not loopback).
  void validate() const;
};

}  // namespace ringlink
