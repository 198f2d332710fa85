// Options::from_environment: launcher detection order, defaults and malformed values.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <vector>

#include "ringlink/error.h"
#include "ringlink/options.h"
#include "ringlink/types.h"

using ringlink::Launcher;
using ringlink::Options;

namespace {

Options parse(const std::map<std::string, std::string>& env) {
  return Options::from_environment([&](const char* name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
}

TEST(Environment, NoLauncherLeavesIdentityUnset) {
  Options o = parse({});
  EXPECT_EQ(o.launcher, Launcher::None);
  EXPECT_EQ(o.rank, -1);
  EXPECT_EQ(o.world_size, -1);
  EXPECT_THROW(o.validate(), ringlink::InvalidArgumentError);
}

TEST(Environment, Torchrun) {
  Options o = parse({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                     {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "29400"}});
  EXPECT_EQ(o.launcher, Launcher::Torchrun);
  EXPECT_EQ(o.rank, 3);
  EXPECT_EQ(o.world_size, 8);
  EXPECT_EQ(o.local_rank, 1);
  EXPECT_EQ(o.local_world_size, 2);
  EXPECT_EQ(o.master_addr, "node7");
  EXPECT_EQ(o.master_port, 29400);
  EXPECT_FALSE(o.job_token.empty());
  EXPECT_NO_THROW(o.validate());
}

TEST(Environment, TorchrunAgentStoreMovesToNextPort) {
  Options o = parse({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "29500"},
                     {"TORCHELASTIC_USE_AGENT_STORE", "True"}});
  EXPECT_EQ(o.master_port, 29501);
}

TEST(Environment, TorchrunWinsOverOpenMpiAndSlurm) {
  Options o = parse({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                     {"SLURM_PROCID", "2"}, {"SLURM_NTASKS", "5"}});
  EXPECT_EQ(o.launcher, Launcher::Torchrun);
  EXPECT_EQ(o.rank, 1);
  EXPECT_EQ(o.world_size, 2);
}

TEST(Environment, OpenMpiOnOneHostDefaultsToLoopback) {
  Options o = parse({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                     {"OMPI_COMM_WORLD_LOCAL_RANK", "2"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                     {"OMPI_MCA_ess_base_jobid", "12345"}});
  EXPECT_EQ(o.launcher, Launcher::OpenMpi);
  EXPECT_EQ(o.rank, 2);
  EXPECT_EQ(o.world_size, 4);
  EXPECT_EQ(o.master_addr, "127.0.0.1");
  EXPECT_GE(o.master_port, 20000);
  EXPECT_LT(o.master_port, 40000);
  // Every rank of the job derives the same port.
  Options o2 = parse({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                      {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}, {"OMPI_MCA_ess_base_jobid", "12345"}});
  EXPECT_EQ(o.master_port, o2.master_port);
}

TEST(Environment, OpenMpiAcrossHostsNeedsMasterAddr) {
  Options o = parse({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                     {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}});
  EXPECT_TRUE(o.master_addr.empty());
  try {
    o.validate();
    FAIL() << "validate() accepted a multi-host Open MPI job without MASTER_ADDR";
  } catch (const ringlink::InvalidArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find("MASTER_ADDR"), std::string::npos) << e.what();
  }
}

TEST(Environment, SlurmTakesTheFirstHostOfTheNodeList) {
  Options o = parse({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"},
                     {"SLURM_STEP_TASKS_PER_NODE", "4(x2)"}, {"SLURM_JOB_ID", "991"},
                     {"SLURM_STEP_NODELIST", "gpu[03-04,09],cpu1"}});
  EXPECT_EQ(o.launcher, Launcher::Slurm);
  EXPECT_EQ(o.rank, 5);
  EXPECT_EQ(o.world_size, 8);
  EXPECT_EQ(o.local_rank, 1);
  EXPECT_EQ(o.local_world_size, 4);
  EXPECT_EQ(o.master_addr, "gpu03");
  EXPECT_GE(o.master_port, 20000);
}

TEST(Environment, SlurmPlainHostAndExplicitMaster) {
  EXPECT_EQ(parse({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_JOB_NODELIST", "nodeA,nodeB"}}).master_addr,
            "nodeA");
  Options o = parse({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_JOB_NODELIST", "nodeA"},
                     {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "4000"}});
  EXPECT_EQ(o.master_addr, "10.0.0.1");
  EXPECT_EQ(o.master_port, 4000);
}

TEST(Environment, EngineVariables) {
  Options o = parse({{"RINGLINK_TRANSPORT", "ucx"}, {"RINGLINK_ALGO", "tree"}, {"RINGLINK_CHUNK_BYTES", "512K"},
                     {"RINGLINK_TIMEOUT_MS", "1500"}, {"RINGLINK_DEBUG", "INFO"}, {"RINGLINK_IB_HCA", "mlx5_0:1"},
                     {"RINGLINK_IB_GID_INDEX", "3"}, {"RINGLINK_IB_QPS", "4"}, {"RINGLINK_JOB_TOKEN", "secret"}});
  EXPECT_EQ(o.transport, ringlink::TransportKind::Ucx);
  EXPECT_EQ(o.algorithm, ringlink::Algorithm::Tree);
  EXPECT_EQ(o.chunk_bytes, 512u * 1024);
  EXPECT_EQ(o.timeout.count(), 1500);
  EXPECT_EQ(o.log_level, ringlink::LogLevel::Info);
  EXPECT_EQ(o.ib_hca, "mlx5_0:1");
  EXPECT_EQ(o.ib_gid_index, 3);
  EXPECT_EQ(o.ib_qps, 4);
  EXPECT_EQ(o.job_token, "secret");
}

TEST(Environment, WireDtype) {
  EXPECT_EQ(parse({}).wire_dtype, ringlink::WireDtype::Off);
  EXPECT_EQ(parse({{"RINGLINK_WIRE_DTYPE", "off"}}).wire_dtype, ringlink::WireDtype::Off);
  EXPECT_EQ(parse({{"RINGLINK_WIRE_DTYPE", "bf16"}}).wire_dtype, ringlink::WireDtype::BF16);
  EXPECT_EQ(parse({{"RINGLINK_WIRE_DTYPE", "fp16"}}).wire_dtype, ringlink::WireDtype::FP16);
}

TEST(Environment, VerbsAndDiagnosticVariables) {
  Options d = parse({});
  EXPECT_TRUE(d.ib_gpudirect);
  EXPECT_EQ(d.ib_gdr_flush, -1);
  EXPECT_TRUE(d.ib_mr_cache);
  EXPECT_TRUE(d.ib_verbs_library.empty());
  Options o = parse({{"RINGLINK_IB_GPUDIRECT", "off"}, {"RINGLINK_IB_GDR_FLUSH", "1"}, {"RINGLINK_IB_MR_CACHE", "0"},
                     {"RINGLINK_IBVERBS_LIB", "/opt/lib/libibverbs.so.1"}, {"RINGLINK_IB_SYSFS_ROOT", "/tmp/sys"},
                     {"RINGLINK_SOFT_VERBS_FAULT", "drop-write:3@1"}});
  EXPECT_FALSE(o.ib_gpudirect);
  EXPECT_EQ(o.ib_gdr_flush, 1);
  EXPECT_FALSE(o.ib_mr_cache);
  EXPECT_EQ(o.ib_verbs_library, "/opt/lib/libibverbs.so.1");
  EXPECT_EQ(o.ib_sysfs_root, "/tmp/sys");
  EXPECT_EQ(o.soft_verbs_fault, "drop-write:3@1");
  EXPECT_EQ(d.device_standin_seed, -1);
  EXPECT_EQ(parse({{"RINGLINK_DEVICE_OPS", "cuda"}}).device_standin_seed, -1);
  EXPECT_EQ(parse({{"RINGLINK_DEVICE_OPS", "standin"}}).device_standin_seed, 1);
  EXPECT_EQ(parse({{"RINGLINK_DEVICE_OPS", "standin:42"}}).device_standin_seed, 42);
}

TEST(Environment, MalformedValuesNameTheVariable) {
  for (auto [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"RINGLINK_TRANSPORT", "rdma"},
           {"RINGLINK_ALGO", "butterfly"},
           {"RINGLINK_CHUNK_BYTES", "12Q"},
           {"RINGLINK_CHUNK_BYTES", "4"},
           {"RINGLINK_CHUNK_BYTES", "17179869184G"},  // 2^64 bytes: must not wrap into range
           {"RINGLINK_TIMEOUT_MS", "soon"},
           {"RINGLINK_TIMEOUT_MS", "-5"},
           {"RINGLINK_DEBUG", "LOUD"},
           {"RINGLINK_WIRE_DTYPE", "fp8"},
           {"RINGLINK_WIRE_DTYPE", "BF16"},
           {"RINGLINK_IB_GPUDIRECT", "maybe"},
           {"RINGLINK_IB_GDR_FLUSH", "2"},
           {"RINGLINK_IB_MR_CACHE", "yes"},
           {"RINGLINK_DEVICE_OPS", "standin:fast"},
           {"RINGLINK_DEVICE_OPS", "gpu"},
           {"WORLD_SIZE", "two"}}) {
    std::map<std::string, std::string> env{{name, value}};
    if (name == "WORLD_SIZE") env["RANK"] = "0";
    try {
      parse(env);
      ADD_FAILURE() << name << "=" << value << " was accepted";
    } catch (const ringlink::InvalidArgumentError& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}

// Each enum's parse function takes exactly the names its to_string prints (and a few aliases).
TEST(Names, ParseTakesWhatToStringPrints) {
  using namespace ringlink;
  for (auto k : {TransportKind::Auto, TransportKind::Verbs, TransportKind::Ucx})
    EXPECT_EQ(parse_transport_kind(to_string(k)), k) << to_string(k);
  for (auto a : {Algorithm::Auto, Algorithm::Ring, Algorithm::Tree}) EXPECT_EQ(parse_algorithm(to_string(a)), a);
  for (auto l : {LogLevel::Warn, LogLevel::Info, LogLevel::Trace}) EXPECT_EQ(parse_log_level(to_string(l)), l);
  for (auto w : {WireDtype::Off, WireDtype::BF16, WireDtype::FP16}) EXPECT_EQ(parse_wire_dtype(to_string(w)), w);
  for (auto t : kAllDataTypes) EXPECT_EQ(parse_data_type(to_string(t)), t) << to_string(t);
  for (auto op : kAllReduceOps) EXPECT_EQ(parse_reduce_op(to_string(op)), op) << to_string(op);
  EXPECT_EQ(parse_log_level("trace"), LogLevel::Trace);
  EXPECT_EQ(parse_data_type("bf16"), DataType::BFloat16);
  EXPECT_EQ(parse_transport_kind("rdma"), std::nullopt);
  EXPECT_EQ(parse_algorithm("Ring"), std::nullopt);
  EXPECT_EQ(parse_log_level("Info"), std::nullopt);
  EXPECT_EQ(parse_data_type(""), std::nullopt);
  EXPECT_EQ(parse_reduce_op("mean"), std::nullopt);
}

TEST(Environment, LateIsNotDeadByDefault) {
  Options o = parse({});
  EXPECT_EQ(o.timeout, std::chrono::minutes(10));
  EXPECT_EQ(o.liveness_timeout, std::chrono::seconds(10));
  EXPECT_EQ(parse({{"RINGLINK_LIVENESS_TIMEOUT_MS", "2500"}}).liveness_timeout.count(), 2500);
  EXPECT_THROW(parse({{"RINGLINK_LIVENESS_TIMEOUT_MS", "50"}}), ringlink::InvalidArgumentError);
}

TEST(Environment, TheDerivedTokenIsMarkedAsSuch) {
  std::map<std::string, std::string> torchrun = {{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "node1"}};
  EXPECT_TRUE(parse(torchrun).job_token_derived);
  torchrun["RINGLINK_JOB_TOKEN"] = "secret";
  Options o = parse(torchrun);
  EXPECT_FALSE(o.job_token_derived);
  EXPECT_EQ(o.job_token, "secret");
}

TEST(Environment, AnEmptyTokenIsRefusedWhenRanksSpanHosts) {
  auto with = [](std::map<std::string, std::string> env) {
    env["RINGLINK_JOB_TOKEN"] = "";
    return parse(env);
  };
  // One host, loopback: nobody else can connect, an empty token is allowed.
  EXPECT_NO_THROW(with({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}}).validate());
  // A store others can reach, or ranks on another host: refused, naming the variable.
  for (auto env : std::vector<std::map<std::string, std::string>>{
           {{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "10.0.0.1"}},
           {{"RANK", "0"}, {"WORLD_SIZE", "4"}, {"LOCAL_WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}}}) {
    try {
      with(env).validate();
      ADD_FAILURE() << "an empty token was accepted with MASTER_ADDR=" << env["MASTER_ADDR"];
    } catch (const ringlink::InvalidArgumentError& e) {
      EXPECT_NE(std::string(e.what()).find("RINGLINK_JOB_TOKEN"), std::string::npos) << e.what();
    }
  }
}

TEST(Environment, RankOutOfRangeIsRejected) {
  Options o = parse({{"RANK", "4"}, {"WORLD_SIZE", "4"}});
  try {
    o.validate();
    FAIL() << "rank 4 of 4 accepted";
  } catch (const ringlink::InvalidArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
  }
}

}  // namespace
