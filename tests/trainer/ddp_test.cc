// Data-parallel yolov5-train as users run it: ranks started by ringlink-run over loopback TCP
// (free port chosen by the launcher), compared with a single process; killed ranks; --resume;
// sharded validation. Every process a test starts is in its own process group and is killed
// at the test's deadline.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include <ringlink/options.h>

#include "helpers/run_launcher.h"
#include "model/yolo.h"
#include "scratch_dir.h"
#include "train/checkpoint.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

using ringlink::testing::tool;

struct Outcome {
  int exit_code = -1;
  std::string output;
  std::vector<std::pair<double, std::string>> lines;  // seconds since start, line
  double seconds = 0;
  bool timed_out = false;
  double first_line_time(const std::string& needle) const {
    for (const auto& [t, l] : lines)
      if (l.find(needle) != std::string::npos) return t;
    return -1;
  }
};

// Runs argv with extra environment; `watch` is called every 50 ms with the elapsed seconds and
// the child's pid (it may signal ranks). The whole process group is killed at `limit`.
Outcome run(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
            std::chrono::seconds limit, const std::function<void(double)>& watch = {}) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe");
  const auto t0 = Clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::close(fds[1]);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<std::string> a = args;
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  ::close(fds[1]);
  Outcome out;
  std::string partial;
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  for (;;) {
    pollfd p{fds[0], POLLIN, 0};
    ::poll(&p, 1, 50);
    if (p.revents) {
      char buf[8192];
      const ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n <= 0) break;
      out.output.append(buf, static_cast<size_t>(n));
      partial.append(buf, static_cast<size_t>(n));
      for (size_t nl; (nl = partial.find('\n')) != std::string::npos; partial.erase(0, nl + 1))
        out.lines.emplace_back(elapsed(), partial.substr(0, nl));
    }
    if (watch) watch(elapsed());
    if (Clock::now() - t0 > limit) {
      ::kill(-pid, SIGKILL);
      out.timed_out = true;
      break;
    }
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::kill(-pid, SIGKILL);  // anything the ranks left behind in their group
  out.seconds = elapsed();
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return out;
}

const std::map<std::string, std::string> kLoopbackTcp = {
    {"UCX_TLS", "tcp"}, {"UCX_NET_DEVICES", "lo"}, {"RINGLINK_TRANSPORT", "ucx"}};

const fs::path& scratch() {
  static ScratchDir dir("ddp");  // removed at exit
  return dir.path();
}

// 80 training images: at --batch-size 4 one epoch is 20 micro-batches and, with the warmup's
// growing accumulation (1, then 2, then 3, then 4), exactly 10 optimizer steps.
std::string dataset() {
  static std::string yaml = [] {
    const auto root = scratch() / "shapes";
    const std::string cmd = tool("MAKE_SHAPES_DATASET") + " --out " + root.string() +
                            " --train 80 --val 16 --img 128 --seed 2 > /dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("make-shapes-dataset failed: " + cmd);
    return (root / "shapes.yaml").string();
  }();
  return yaml;
}

std::vector<std::string> train_args(const std::string& name, std::vector<std::string> extra = {}, int epochs = 1) {
  std::vector<std::string> a = {tool("YOLOV5_TRAIN"), "--cfg", "yolov5n.yaml", "--data", dataset(), "--img", "128",
                                "--batch-size", "4", "--epochs", std::to_string(epochs), "--seed", "0", "--workers", "1",
                                "--device", "cpu", "--project", (scratch() / "runs").string(), "--name", name,
                                "--exist-ok"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

std::vector<std::string> launched(int n, const std::vector<std::string>& cmd, std::vector<std::string> opts = {}) {
  std::vector<std::string> a = {tool("RINGLINK_RUN"), "-n", std::to_string(n), "--time-limit", "400"};
  a.insert(a.end(), opts.begin(), opts.end());
  a.push_back("--");
  a.insert(a.end(), cmd.begin(), cmd.end());
  return a;
}

fs::path run_dir(const std::string& name) { return scratch() / "runs" / name; }

std::string tail(const std::string& s, size_t n = 6000) { return s.size() > n ? s.substr(s.size() - n) : s; }

// A rank's trace: "start ...", "micro <n> stepping <0|1> grad_bytes_started <b>",
// "step <k> params <h> buffers <h> local_buffers <h> ema <h> grad_bytes <b>".
struct Trace {
  long pid = -1;
  struct Micro {
    bool stepping;
    long bytes;
  };
  std::vector<Micro> micro;
  struct Step {
    std::string params, buffers, local_buffers, ema;
    long bytes;
  };
  std::vector<Step> steps;
};

Trace read_trace(const fs::path& path) {
  Trace t;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::istringstream s(line);
    std::string kind, k;
    s >> kind;
    if (kind == "start") {
      std::string rank, r, world, w, pid;
      s >> rank >> r >> world >> w >> pid >> t.pid;
    } else if (kind == "micro") {
      long n, stepping, bytes;
      std::string a, b;
      s >> n >> a >> stepping >> b >> bytes;
      t.micro.push_back({stepping != 0, bytes});
    } else if (kind == "step") {
      Trace::Step st;
      std::string a, b, c, d, e;
      s >> k >> a >> st.params >> b >> st.buffers >> c >> st.local_buffers >> d >> st.ema >> e >> st.bytes;
      t.steps.push_back(st);
    }
  }
  return t;
}

// How far checkpoint `a` is from the reference `b`: over every floating-point tensor of the
// model and the EMA, ||a - b|| / ||b|| (global), the largest per-tensor max|a - b| / max|b|,
// and, over the model's parameters, ||a - b|| / ||b - initial||: the runs' updates compared.
struct Difference {
  double global = 0, worst = 0, vs_update = 0;
  std::string worst_name;
};

yolo::YoloModel initial_model() {  // what the trainer builds from --seed 0 (nc 3) before any step
  auto cfg = yolo::load_model_config(yolo::resolve_model_path("yolov5n.yaml"));
  cfg.nc = 3;
  torch::manual_seed(0);
  return yolo::YoloModel(cfg);
}

Difference difference(const std::string& a, const std::string& b) {
  Difference out;
  double num = 0, den = 0, pnum = 0, upd = 0;
  auto init = initial_model();
  auto init_params = init->named_parameters(true);
  for (const char* which : {"model", "ema"}) {
    yolo::CheckpointMeta ma, mb;
    auto A = yolo::load_model_from_checkpoint(a, &ma), B = yolo::load_model_from_checkpoint(b, &mb);
    if (std::string(which) == "model") {
      yolo::CheckpointReader(a).load_weights(A, "model");
      yolo::CheckpointReader(b).load_weights(B, "model");
    }
    auto pa = A->named_parameters(true), ba = A->named_buffers(true);
    auto compare = [&](const std::string& key, const torch::Tensor& x, const torch::Tensor& y, bool param) {
      if (!y.is_floating_point()) {
        EXPECT_TRUE(torch::equal(x, y)) << which << "." << key;
        return;
      }
      auto xd = x.to(torch::kDouble), yd = y.to(torch::kDouble);
      num += (xd - yd).pow(2).sum().item<double>();
      den += yd.pow(2).sum().item<double>();
      const double scale = yd.abs().max().item<double>();
      const double d = (xd - yd).abs().max().item<double>() / (scale > 0 ? scale : 1.0);
      if (d > out.worst) out.worst = d, out.worst_name = std::string(which) + "." + key;
      if (param && std::string(which) == "model") {
        pnum += (xd - yd).pow(2).sum().item<double>();
        upd += (yd - init_params[key].to(torch::kDouble)).pow(2).sum().item<double>();
      }
    };
    for (const auto& kv : B->named_parameters(true)) compare(kv.key(), pa[kv.key()], kv.value(), true);
    for (const auto& kv : B->named_buffers(true)) compare(kv.key(), ba[kv.key()], kv.value(), false);
  }
  out.global = std::sqrt(num / den);
  out.vs_update = std::sqrt(pnum / upd);
  // A model that did not start from initial_model() would be "updated" by its whole size.
  EXPECT_LT(std::sqrt(upd), 0.1 * std::sqrt(den)) << "the reference did not start from the seeded model";
  return out;
}

std::string last_pt(const std::string& name) { return (run_dir(name) / "weights" / "last.pt").string(); }

// The comparisons train at lr 0.001 (scratch-low otherwise, augmentation on). With
// scratch-low's warmup (bias lr 0.1) float rounding grows to the size of the updates within
// 10 steps: two single-process runs that differ only in their intra-op thread count end 4.5e-4
// apart (relative L2) and 19 % of the update apart; at lr 0.001 they stay at rounding level,
// and a wrong loss scaling, sampler or BatchNorm is still off by the whole update.
std::string test_hyp() {
  static std::string path = [] {
    const auto p = scratch() / "hyp-lr0.001.yaml";
    std::ofstream(p) << "lr0: 0.001\nwarmup_bias_lr: 0.001\n";
    return p.string();
  }();
  return path;
}

// The single-process reference with --sync-bn (same BatchNorm arithmetic as the ranks).
const Outcome& single_sync_bn() {
  static Outcome o = run(train_args("single-syncbn", {"--sync-bn", "--hyp", test_hyp()}), {}, 300s);
  return o;
}

void expect_identical_replicas(const Trace& r0, const Trace& r1, size_t steps) {
  ASSERT_EQ(r0.steps.size(), steps);
  ASSERT_EQ(r1.steps.size(), steps);
  for (size_t k = 0; k < steps; ++k) {
    EXPECT_EQ(r0.steps[k].params, r1.steps[k].params) << "parameters differ after step " << k + 1;
    EXPECT_EQ(r0.steps[k].buffers, r1.steps[k].buffers) << "buffers differ after step " << k + 1;
    EXPECT_EQ(r0.steps[k].ema, r1.steps[k].ema) << "EMA differs after step " << k + 1;
  }
}

}  // namespace

TEST(DdpTrain, TwoRanksWithSyncBnMatchOneProcess) {
  const auto& one = single_sync_bn();
  ASSERT_EQ(one.exit_code, 0) << tail(one.output);
  const std::string trace = (scratch() / "syncbn.trace").string();
  // The ranks cache their shares in RAM; the single process decodes every image when used.
  const auto two = run(launched(2, train_args("two-syncbn", {"--sync-bn", "--hyp", test_hyp(), "--ddp-trace", trace,
                                                             "--cache", "ram"})),
                       kLoopbackTcp, 300s);
  ASSERT_EQ(two.exit_code, 0) << tail(two.output);
  const auto r0 = read_trace(trace + ".rank0"), r1 = read_trace(trace + ".rank1");
  expect_identical_replicas(r0, r1, 10);
  // Only the micro-batch that steps communicates gradients, and each step reduces all of them once.
  ASSERT_EQ(r0.micro.size(), 20u);
  int stepping = 0;
  for (const auto& m : r0.micro) {
    if (m.stepping) ++stepping;
    else EXPECT_EQ(m.bytes, 0) << "a micro-batch that does not step started an allreduce";
  }
  EXPECT_EQ(stepping, 10);
  for (const auto& s : r0.steps) EXPECT_EQ(s.bytes, r0.steps[0].bytes);
  yolo::CheckpointMeta meta;
  auto model = yolo::load_model_from_checkpoint(last_pt("two-syncbn"), &meta);
  EXPECT_EQ(r0.steps[0].bytes, model->parameter_count() * 4) << "every gradient (float32), once per step";
  const auto d = difference(last_pt("two-syncbn"), last_pt("single-syncbn"));
  std::printf("2 ranks x 2 vs 1 x 4 images, --sync-bn, 10 steps: relative L2 %.3g, %.3g of the update; largest "
              "per-tensor max|a-b|/max|b| %.3g (%s)\n",
              d.global, d.vs_update, d.worst, d.worst_name.c_str());
  EXPECT_LT(d.global, 1e-5);
  EXPECT_LT(d.vs_update, 1e-2);
  // Sharded validation ran on both ranks; rank 0 alone wrote the files.
  EXPECT_NE(two.output.find("[0]                    all"), std::string::npos) << tail(two.output);
  EXPECT_EQ(two.output.find("[1]                    all"), std::string::npos);
  EXPECT_TRUE(fs::exists(run_dir("two-syncbn") / "results.csv"));
}

TEST(DdpTrain, WithoutSyncBnBatchNormStatisticsAreRankZeros) {
  const std::string trace = (scratch() / "nosync.trace").string();
  const auto two =
      run(launched(2, train_args("two-nosync", {"--hyp", test_hyp(), "--ddp-trace", trace})), kLoopbackTcp, 300s);
  ASSERT_EQ(two.exit_code, 0) << tail(two.output);
  const auto r0 = read_trace(trace + ".rank0"), r1 = read_trace(trace + ".rank1");
  expect_identical_replicas(r0, r1, 10);
  // Each rank's forward passes update its own statistics; after each step all hold rank 0's.
  int replaced = 0;
  for (size_t k = 0; k < r0.steps.size(); ++k) {
    EXPECT_EQ(r0.steps[k].local_buffers, r0.steps[k].buffers) << "rank 0 kept its statistics at step " << k + 1;
    replaced += r1.steps[k].local_buffers != r1.steps[k].buffers;
  }
  EXPECT_EQ(replaced, 10) << "rank 1's own statistics were replaced by rank 0's at every step";
  // Each replica normalised over its own 2 images: not the 1 x 4 result.
  const auto& one = single_sync_bn();
  ASSERT_EQ(one.exit_code, 0) << tail(one.output);
  const auto d = difference(last_pt("two-nosync"), last_pt("single-syncbn"));
  std::printf("2 ranks x 2 without --sync-bn vs 1 x 4: relative L2 %.3g, %.3g of the update\n", d.global,
              d.vs_update);
  EXPECT_GT(d.vs_update, 0.1);
}

TEST(DdpTrain, BatchSizeNotAMultipleOfTheWorldIsRefused) {
  const auto three = run(launched(3, train_args("three")), kLoopbackTcp, 120s);
  EXPECT_NE(three.exit_code, 0);
  EXPECT_NE(three.output.find("--batch-size 4 is not a multiple of WORLD_SIZE 3"), std::string::npos)
      << tail(three.output);
}

// SIGKILL one rank mid-epoch: the other reports it and exits non-zero within seconds; the
// last checkpoint (end of epoch 0) is intact and a 2-rank --resume finishes the run.
TEST(DdpFault, KilledRankIsReportedAndResumeContinues) {
  const std::string trace = (scratch() / "fault.trace").string();
  const auto args = train_args("fault", {"--max-batches", "6", "--ddp-trace", trace}, 3);
  double killed_at = -1;
  const auto out = run(launched(2, args, {"--keep-going"}), kLoopbackTcp, 300s, [&](double t) {
    if (killed_at >= 0 || !fs::exists(last_pt("fault"))) return;
    const auto r1 = read_trace(trace + ".rank1");
    if (r1.micro.size() >= 8 && r1.pid > 0) {  // epoch 1, third micro-batch
      ::kill(static_cast<pid_t>(r1.pid), SIGKILL);
      killed_at = t;
    }
  });
  ASSERT_GE(killed_at, 0) << "rank 1 was never killed\n" << tail(out.output);
  EXPECT_NE(out.exit_code, 0);
  const double reported = out.first_line_time("[0] yolov5-train: error:");
  ASSERT_GE(reported, 0) << tail(out.output);
  const std::regex names_rank1(R"(\[0\] yolov5-train: error: .*(peer 1|rank 1))");
  EXPECT_TRUE(std::regex_search(out.output, names_rank1)) << tail(out.output);
  std::printf("rank 1 killed: rank 0 reported it %.2f s later, the job ended %.2f s after the kill\n",
              reported - killed_at, out.seconds - killed_at);
  EXPECT_LT(reported - killed_at, 10.0);

  const auto meta = yolo::read_checkpoint_meta(last_pt("fault"));
  EXPECT_EQ(meta.epoch, 0);
  const std::string trace2 = (scratch() / "resume.trace").string();
  const auto resumed = run(launched(2, {tool("YOLOV5_TRAIN"), "--resume", run_dir("fault").string(), "--ddp-trace",
                                        trace2}),
                           kLoopbackTcp, 300s);
  ASSERT_EQ(resumed.exit_code, 0) << tail(resumed.output);
  EXPECT_NE(resumed.output.find("Resuming training from"), std::string::npos);
  EXPECT_EQ(yolo::read_checkpoint_meta(last_pt("fault")).epoch, 2);
  const auto r0 = read_trace(trace2 + ".rank0"), r1 = read_trace(trace2 + ".rank1");
  ASSERT_FALSE(r0.steps.empty());
  expect_identical_replicas(r0, r1, r0.steps.size());
  std::ifstream csv(run_dir("fault") / "results.csv");
  int lines = 0;
  for (std::string l; std::getline(csv, l);) ++lines;
  EXPECT_EQ(lines, 4) << "header and epochs 0, 1, 2";
}

TEST(DdpFault, KilledRankZeroIsReported) {
  const std::string trace = (scratch() / "fault0.trace").string();
  const auto args = train_args("fault0", {"--ddp-trace", trace}, 2);
  double killed_at = -1;
  const auto out = run(launched(2, args, {"--keep-going"}), kLoopbackTcp, 300s, [&](double t) {
    if (killed_at >= 0) return;
    const auto r0 = read_trace(trace + ".rank0");
    if (r0.micro.size() >= 3 && r0.pid > 0) {
      ::kill(static_cast<pid_t>(r0.pid), SIGKILL);
      killed_at = t;
    }
  });
  ASSERT_GE(killed_at, 0) << tail(out.output);
  EXPECT_NE(out.exit_code, 0);
  const double reported = out.first_line_time("[1] yolov5-train: error:");
  ASSERT_GE(reported, 0) << tail(out.output);
  const std::regex names_rank0(R"(\[1\] yolov5-train: error: .*(peer 0|rank 0))");
  EXPECT_TRUE(std::regex_search(out.output, names_rank0)) << tail(out.output);
  std::printf("rank 0 killed: rank 1 reported it %.2f s later\n", reported - killed_at);
  EXPECT_LT(reported - killed_at, 10.0);
}

// Rank 0 spends 8 s saving each checkpoint; the other rank waits at its next collective. This
// must pass with the library's default RINGLINK_TIMEOUT_MS (nothing set here).
TEST(DdpLateness, RanksWaitWhileRankZeroSaves) {
  const auto limit = ringlink::Options{}.timeout;
  if (limit < 30s && !std::getenv("DDP_TEST_FORCE_LATENESS"))
    GTEST_SKIP() << "the library's default RINGLINK_TIMEOUT_MS is " << limit.count()
                 << " ms, shorter than rank 0's 8 s save: this test waits for the engine's liveness/lateness change "
                    "(issue 11, section 6); run it again once that lands";
  auto env = kLoopbackTcp;
  env["YOLO_TEST_SAVE_DELAY_MS"] = "8000";
  const auto out = run(launched(2, train_args("slow-save", {"--max-batches", "4"}, 2)), env, 300s);
  EXPECT_EQ(out.exit_code, 0) << tail(out.output);
  EXPECT_EQ(yolo::read_checkpoint_meta(last_pt("slow-save")).epoch, 1);
}

TEST(DdpVal, ShardedValidationEqualsOneProcess) {
  const std::vector<std::string> probe = {tool("DDP_VAL_PROBE"), "--data", dataset(), "--img", "128",
                                          "--batch-size", "1", "--conf-thres", "0"};
  const auto one = run(probe, {}, 120s);
  ASSERT_EQ(one.exit_code, 0) << tail(one.output);
  const std::regex result(R"(RESULT (.*))");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(one.output, m, result)) << one.output;
  const std::string want = m[1];
  EXPECT_NE(want.find("images 16 "), std::string::npos) << want;
  EXPECT_EQ(want.find("detections 0 "), std::string::npos) << "the probe needs detections to compare: " << want;
  for (int n : {2, 3}) {
    const auto many = run(launched(n, probe), kLoopbackTcp, 120s);
    ASSERT_EQ(many.exit_code, 0) << tail(many.output);
    const std::regex line(R"(\[(\d+)\] RESULT (.*))");
    int ranks = 0;
    for (std::sregex_iterator it(many.output.begin(), many.output.end(), line), end; it != end; ++it, ++ranks)
      EXPECT_EQ((*it)[2].str(), want) << n << " ranks, rank " << (*it)[1];
    EXPECT_EQ(ranks, n);
  }
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Skipped tests report SKIP to meson (exit 77) when nothing else ran.
  struct Counter : ::testing::EmptyTestEventListener {
    int ran = 0, skipped = 0;
    void OnTestEnd(const ::testing::TestInfo& info) override {
      if (info.result()->Skipped()) ++skipped;
      else ++ran;
    }
  };
  auto* counter = new Counter;
  ::testing::UnitTest::GetInstance()->listeners().Append(counter);
  const int rc = RUN_ALL_TESTS();
  if (rc == 0 && counter->ran == 0 && counter->skipped > 0) return 77;
  return rc;
}
