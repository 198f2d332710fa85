// Options::from_environment: RINGLINK_* variables and the launcher's rank identity
// (torchrun first, then Open MPI, then Slurm); Options::validate; and the one reader of the
// process environment, detail::environment_variable.
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <fmt/format.h>

#include "bootstrap/environment.h"
#include "common/byte_size.h"
#include "common/socket.h"
#include "ringlink/error.h"
#include "ringlink/options.h"

namespace ringlink {

std::optional<std::string> detail::environment_variable(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return std::nullopt;
  return std::string(v);
}

namespace {

[[noreturn]] void bad(const char* name, const std::string& value, std::string_view expected) {
  throw InvalidArgumentError(-1, -1, "environment", fmt::format("{}='{}' is invalid: expected {}", name, value, expected));
}

int64_t parse_int(const char* name, const std::string& s, int64_t lo, int64_t hi) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi)
    bad(name, s, fmt::format("an integer in [{}, {}]", lo, hi));
  return v;
}

// "4M", "512K", "1G", "65536"
uint64_t parse_bytes(const char* name, const std::string& s) {
  if (auto bytes = parse_byte_size(s)) return *bytes;
  bad(name, s, "a byte count such as 524288, 512K or 1M");
}

// First host of a Slurm hostlist ("gpu[03-06,09],cpu1" -> "gpu03"). Written by hand because
// the alternative, running `scontrol show hostnames`, means a subprocess during start-up.
std::string first_slurm_host(const std::string& list) {
  std::string head;
  int depth = 0;
  for (char c : list) {
    if (c == ',' && depth == 0) break;
    if (c == '[') depth++;
    if (c == ']') depth--;
    head += c;
  }
  auto open = head.find('[');
  if (open == std::string::npos) return head;
  std::string prefix = head.substr(0, open);
  std::string first;
  for (size_t i = open + 1; i < head.size() && std::isdigit(static_cast<unsigned char>(head[i])); ++i) first += head[i];
  return prefix + first;
}

// A port both sides derive from the job id when MASTER_PORT is not given.
int port_from_job_id(const std::string& job) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a: stable across ranks and runs
  for (char c : job) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return 20000 + static_cast<int>(h % 20000);
}

}  // namespace

Options Options::from_environment() { return from_environment(detail::environment_variable); }

Options Options::from_environment(const EnvLookup& env) {
  Options o;
  auto get = [&](const char* name) { return env(name); };
  auto int_of = [&](const char* name, int64_t lo, int64_t hi) { return parse_int(name, *get(name), lo, hi); };
  std::string job_id;

  if (get("RANK") && get("WORLD_SIZE")) {
    o.launcher = Launcher::Torchrun;
    o.world_size = static_cast<int>(int_of("WORLD_SIZE", 1, 1 << 24));
    o.rank = static_cast<int>(int_of("RANK", 0, (1 << 24) - 1));
    o.local_rank = get("LOCAL_RANK") ? static_cast<int>(int_of("LOCAL_RANK", 0, 1 << 24)) : o.rank;
    o.local_world_size =
        get("LOCAL_WORLD_SIZE") ? static_cast<int>(int_of("LOCAL_WORLD_SIZE", 1, 1 << 24)) : o.world_size;
    o.master_addr = get("MASTER_ADDR").value_or("127.0.0.1");
    o.master_port = get("MASTER_PORT") ? static_cast<int>(int_of("MASTER_PORT", 1, 65535)) : 29500;
    // torchrun's agent serves its own TCPStore on MASTER_PORT; ringlink takes the next port.
    if (get("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True") o.master_port += 1;
    job_id = get("TORCHELASTIC_RUN_ID").value_or("");
  } else if (get("OMPI_COMM_WORLD_RANK") && get("OMPI_COMM_WORLD_SIZE")) {
    o.launcher = Launcher::OpenMpi;
    o.world_size = static_cast<int>(int_of("OMPI_COMM_WORLD_SIZE", 1, 1 << 24));
    o.rank = static_cast<int>(int_of("OMPI_COMM_WORLD_RANK", 0, (1 << 24) - 1));
    o.local_rank = get("OMPI_COMM_WORLD_LOCAL_RANK") ? static_cast<int>(int_of("OMPI_COMM_WORLD_LOCAL_RANK", 0, 1 << 24))
                                                     : o.rank;
    o.local_world_size = get("OMPI_COMM_WORLD_LOCAL_SIZE")
                             ? static_cast<int>(int_of("OMPI_COMM_WORLD_LOCAL_SIZE", 1, 1 << 24))
                             : o.world_size;
    job_id = get("OMPI_MCA_ess_base_jobid").value_or(get("OMPI_MCA_orte_ess_jobid").value_or(""));
    if (get("MASTER_ADDR")) {
      o.master_addr = *get("MASTER_ADDR");
    } else if (o.local_world_size == o.world_size) {
      o.master_addr = "127.0.0.1";  // every rank is on this host
    }
    o.master_port = get("MASTER_PORT") ? static_cast<int>(int_of("MASTER_PORT", 1, 65535)) : port_from_job_id(job_id);
  } else if (get("SLURM_PROCID") && get("SLURM_NTASKS")) {
    o.launcher = Launcher::Slurm;
    o.world_size = static_cast<int>(int_of("SLURM_NTASKS", 1, 1 << 24));
    o.rank = static_cast<int>(int_of("SLURM_PROCID", 0, (1 << 24) - 1));
    o.local_rank = get("SLURM_LOCALID") ? static_cast<int>(int_of("SLURM_LOCALID", 0, 1 << 24)) : o.rank;
    // SLURM_STEP_TASKS_PER_NODE looks like "4(x2)" or "3,2": the first number is this job's usual count.
    if (auto t = get("SLURM_STEP_TASKS_PER_NODE")) {
      int n = std::atoi(t->c_str());
      o.local_world_size = n > 0 ? n : o.world_size;
    } else {
      o.local_world_size = o.world_size;
    }
    job_id = get("SLURM_JOB_ID").value_or("") + "." + get("SLURM_STEP_ID").value_or("");
    std::string nodes = get("SLURM_STEP_NODELIST").value_or(get("SLURM_JOB_NODELIST").value_or(""));
    o.master_addr = get("MASTER_ADDR").value_or(nodes.empty() ? "127.0.0.1" : first_slurm_host(nodes));
    o.master_port = get("MASTER_PORT") ? static_cast<int>(int_of("MASTER_PORT", 1, 65535)) : port_from_job_id(job_id);
  }
  if (get("RINGLINK_MASTER_PORT")) o.master_port = static_cast<int>(int_of("RINGLINK_MASTER_PORT", 1, 65535));

  if (auto t = get("RINGLINK_JOB_TOKEN")) {
    o.job_token = *t;
  } else if (o.launcher != Launcher::None) {
    // Not a secret: it keeps ranks of other jobs (another port reuse, a stale rank) out.
    // Set RINGLINK_JOB_TOKEN (ringlink-run does) to refuse anyone who does not know it; the
    // engine warns once that this one can be guessed.
    o.job_token = fmt::format("{}:{}:{}:{}", to_string(o.launcher), job_id, o.master_addr, o.master_port);
    o.job_token_derived = true;
  }

  if (auto v = get("RINGLINK_TRANSPORT")) {
    auto k = parse_transport_kind(*v);
    if (!k) bad("RINGLINK_TRANSPORT", *v, "auto, verbs or ucx");
    o.transport = *k;
  }
  if (auto v = get("RINGLINK_ALGO")) {
    auto a = parse_algorithm(*v);
    if (!a) bad("RINGLINK_ALGO", *v, "auto, ring or tree");
    o.algorithm = *a;
  }
  if (auto v = get("RINGLINK_CHUNK_BYTES")) {
    uint64_t b = parse_bytes("RINGLINK_CHUNK_BYTES", *v);
    if (b < 256 || b > (1ull << 30)) bad("RINGLINK_CHUNK_BYTES", *v, "between 256 bytes and 1G");
    o.chunk_bytes = b;
  }
  if (auto v = get("RINGLINK_WIRE_DTYPE")) {
    auto w = parse_wire_dtype(*v);
    if (!w) bad("RINGLINK_WIRE_DTYPE", *v, "off, bf16 or fp16");
    o.wire_dtype = *w;
  }
  if (get("RINGLINK_TIMEOUT_MS")) o.timeout = std::chrono::milliseconds(int_of("RINGLINK_TIMEOUT_MS", 1, 86400000));
  if (get("RINGLINK_LIVENESS_TIMEOUT_MS"))
    o.liveness_timeout = std::chrono::milliseconds(int_of("RINGLINK_LIVENESS_TIMEOUT_MS", 100, 86400000));
  if (get("RINGLINK_CONNECT_TIMEOUT_MS"))
    o.connect_timeout = std::chrono::milliseconds(int_of("RINGLINK_CONNECT_TIMEOUT_MS", 1, 86400000));
  if (auto v = get("RINGLINK_DEBUG")) {
    auto l = parse_log_level(*v);
    if (!l) bad("RINGLINK_DEBUG", *v, "WARN, INFO or TRACE");
    o.log_level = *l;
  }
  if (auto v = get("RINGLINK_IB_HCA")) o.ib_hca = *v;
  if (get("RINGLINK_IB_GID_INDEX")) o.ib_gid_index = static_cast<int>(int_of("RINGLINK_IB_GID_INDEX", 0, 255));
  if (get("RINGLINK_IB_TIMEOUT")) o.ib_timeout = static_cast<int>(int_of("RINGLINK_IB_TIMEOUT", 1, 31));
  if (get("RINGLINK_IB_RETRY_CNT")) o.ib_retry_cnt = static_cast<int>(int_of("RINGLINK_IB_RETRY_CNT", 0, 7));
  if (get("RINGLINK_IB_QPS")) o.ib_qps = static_cast<int>(int_of("RINGLINK_IB_QPS", 1, 16));
  if (auto v = get("RINGLINK_IB_GPUDIRECT")) {
    if (*v == "off" || *v == "0") o.ib_gpudirect = false;
    else if (*v == "auto" || *v == "on" || *v == "1") o.ib_gpudirect = true;
    else bad("RINGLINK_IB_GPUDIRECT", *v, "auto, on or off");
  }
  if (auto v = get("RINGLINK_IB_GDR_FLUSH"); v && !v->empty())
    o.ib_gdr_flush = static_cast<int>(int_of("RINGLINK_IB_GDR_FLUSH", 0, 1));
  if (auto v = get("RINGLINK_IB_MR_CACHE")) {
    if (*v == "0" || *v == "off") o.ib_mr_cache = false;
    else if (*v == "1" || *v == "on") o.ib_mr_cache = true;
    else bad("RINGLINK_IB_MR_CACHE", *v, "0 or 1");
  }
  if (auto v = get("RINGLINK_IBVERBS_LIB")) o.ib_verbs_library = *v;
  if (auto v = get("RINGLINK_IB_SYSFS_ROOT")) o.ib_sysfs_root = *v;
  if (auto v = get("RINGLINK_SOFT_VERBS_FAULT")) o.soft_verbs_fault = *v;
  if (auto v = get("RINGLINK_DEVICE_OPS"); v && !v->empty() && *v != "cuda") {
    if (*v == "standin")
      o.device_standin_seed = 1;
    else if (v->rfind("standin:", 0) == 0)
      o.device_standin_seed = parse_int("RINGLINK_DEVICE_OPS", v->substr(8), 0, int64_t{1} << 32);
    else
      bad("RINGLINK_DEVICE_OPS", *v, "cuda, standin or standin:SEED");
  }
  return o;
}

void Options::validate() const {
  auto fail = [&](std::string msg) { throw InvalidArgumentError(rank, -1, "create communicator", std::move(msg)); };
  if (world_size < 1)
    fail("no rank identity: launch with ringlink-run, torchrun, mpirun or srun, or set RANK and WORLD_SIZE");
  if (rank < 0 || rank >= world_size)
    fail(fmt::format("rank id {} is out of range for WORLD_SIZE={}", rank, world_size));
  if (world_size > 1 && master_addr.empty())
    fail("MASTER_ADDR is not set: rank 0's host address is needed to find the rendezvous store");
  if (world_size > 1 && (master_port < 1 || master_port > 65535))
    fail(fmt::format("MASTER_PORT={} is not a valid port", master_port));
  if (chunk_bytes != 0 && chunk_bytes < 256) fail(fmt::format("chunk_bytes={} is below 256", chunk_bytes));
  if (timeout.count() <= 0) fail("timeout must be positive");
  if (liveness_timeout.count() <= 0) fail("liveness_timeout must be positive");
  // An empty token proves nothing: acceptable only where nobody off this host can connect.
  bool loopback = master_addr == "localhost" || net::is_loopback_ipv4(master_addr) || master_addr == "::1";
  if (world_size > 1 && job_token.empty() && (!loopback || local_world_size < world_size))
    fail(fmt::format("the job token is empty but ranks run on several hosts (MASTER_ADDR={}, LOCAL_WORLD_SIZE={} of "
                     "WORLD_SIZE={}): set RINGLINK_JOB_TOKEN to the same secret on every rank",
                     master_addr, local_world_size, world_size));
}

}  // namespace ringlink
