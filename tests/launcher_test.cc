// ringlink-run and the failure paths of a job: ranks that never join, forged tokens,
// mismatched identities, killed ranks, Ctrl-C. Each case runs real processes on loopback.
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "helpers/rank_results.h"
#include "helpers/run_launcher.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

using ringlink::testing::Outcome;
using ringlink::testing::run_launcher;
using ringlink::testing::tool;
using ringlink::testing::elapsed_ms;
using ringlink::testing::results;

class PidDir {
 public:
  PidDir() {
    path_ = fs::temp_directory_path() / ("ringlink-pids-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~PidDir() { fs::remove_all(path_); }
  std::string path() const { return path_.string(); }
  std::vector<pid_t> pids() const {
    std::vector<pid_t> out;
    for (auto& e : fs::directory_iterator(path_)) out.push_back(std::stoi(e.path().filename().string()));
    return out;
  }
  // Pids still alive after allowing init a moment to reap orphans.
  std::vector<pid_t> survivors() const {
    std::vector<pid_t> alive;
    for (int attempt = 0; attempt < 40; ++attempt) {
      alive.clear();
      for (pid_t p : pids()) {
        if (::kill(p, 0) == 0) {
          // A zombie is dead already; look at its state.
          std::string stat;
          FILE* f = std::fopen(("/proc/" + std::to_string(p) + "/stat").c_str(), "r");
          if (f) {
            char buf[512] = {};
            size_t n = std::fread(buf, 1, sizeof buf - 1, f);
            std::fclose(f);
            stat.assign(buf, n);
          }
          auto close = stat.rfind(')');
          if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z') continue;
          alive.push_back(p);
        }
      }
      if (alive.empty()) break;
      std::this_thread::sleep_for(50ms);
    }
    for (pid_t p : alive) ::kill(p, SIGKILL);  // do not leave them behind even when failing
    return alive;
  }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

const std::string kHelper = "RANK_BEHAVIOUR";

TEST(Launcher, RunsEveryRankAndPrefixesOutput) {
  Outcome o = run_launcher({"-n", "3", "--", tool(kHelper.c_str()), "ok"});
  EXPECT_EQ(o.exit_code, 0) << o.output;
  auto r = results(o.output);
  ASSERT_EQ(r.size(), 3u) << o.output;
  for (auto& [rank, text] : r) EXPECT_EQ(text, "ok") << "rank " << rank;
}

TEST(Launcher, MissingCommandIsAUsageError) {
  Outcome o = run_launcher({"-n", "2"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_NE(o.output.find("no command"), std::string::npos) << o.output;
}

TEST(Launcher, RankThatNeverJoinsTimesOutEveryOtherRankNamingIt) {
  Outcome o = run_launcher({"-n", "4", "--keep-going", "--time-limit", "8", "--", tool(kHelper.c_str()), "never-join", "3"},
                           {{"RINGLINK_CONNECT_TIMEOUT_MS", "2000"}});
  EXPECT_NE(o.exit_code, 0);
  auto r = results(o.output);
  for (int rank : {0, 1, 2}) {
    ASSERT_TRUE(r.count(rank)) << o.output;
    EXPECT_NE(r[rank].find("timeout peer=3"), std::string::npos) << r[rank];
    EXPECT_NE(r[rank].find("rank(s) 3 never joined"), std::string::npos) << r[rank];
    int ms = elapsed_ms(r[rank]);
    EXPECT_GE(ms, 1900) << r[rank];
    EXPECT_LT(ms, 4000) << "the error came long after the 2000 ms deadline: " << r[rank];
  }
}

TEST(Launcher, ForgedTokenIsRefusedAndLogged) {
  Outcome o = run_launcher({"-n", "3", "--keep-going", "--time-limit", "20", "--", tool(kHelper.c_str()), "wrong-token", "2"},
                           {{"RINGLINK_CONNECT_TIMEOUT_MS", "2000"}});
  EXPECT_NE(o.exit_code, 0);
  auto r = results(o.output);
  ASSERT_TRUE(r.count(2)) << o.output;
  EXPECT_NE(r[2].find("wrong job token"), std::string::npos) << r[2];
  EXPECT_NE(o.output.find("refused connection from 127.0.0.1"), std::string::npos) << o.output;
  for (int rank : {0, 1}) {
    ASSERT_TRUE(r.count(rank)) << o.output;
    EXPECT_NE(r[rank].find("timeout peer=2"), std::string::npos) << r[rank];
  }
}

TEST(Launcher, WorldSizeDisagreementFailsEveryRank) {
  Outcome o = run_launcher({"-n", "3", "--keep-going", "--time-limit", "20", "--", tool(kHelper.c_str()), "world-mismatch", "1"},
                           {{"RINGLINK_CONNECT_TIMEOUT_MS", "5000"}});
  EXPECT_NE(o.exit_code, 0);
  auto r = results(o.output);
  ASSERT_EQ(r.size(), 3u) << o.output;
  for (auto& [rank, text] : r) {
    EXPECT_NE(text.find("mismatch"), std::string::npos) << "rank " << rank << ": " << text;
    EXPECT_NE(text.find("WORLD_SIZE"), std::string::npos) << "rank " << rank << ": " << text;
  }
}

TEST(Launcher, DuplicateRankIdFailsEveryRank) {
  Outcome o = run_launcher({"-n", "3", "--keep-going", "--time-limit", "20", "--", tool(kHelper.c_str()), "duplicate-rank", "2"},
                           {{"RINGLINK_CONNECT_TIMEOUT_MS", "5000"}});
  EXPECT_NE(o.exit_code, 0);
  auto r = results(o.output);
  ASSERT_EQ(r.size(), 3u) << o.output;
  for (auto& [rank, text] : r) EXPECT_NE(text.find("rank id 1 is used twice"), std::string::npos) << rank << ": " << text;
}

TEST(Launcher, KilledRankIsReportedByEveryOtherRank) {
  Outcome o = run_launcher({"-n", "3", "--keep-going", "--time-limit", "20", "--", tool(kHelper.c_str()), "kill-self", "1"},
                           {{"RINGLINK_TIMEOUT_MS", "30000"}});
  EXPECT_NE(o.exit_code, 0);
  auto r = results(o.output);
  for (int rank : {0, 2}) {
    ASSERT_TRUE(r.count(rank)) << o.output;
    EXPECT_NE(r[rank].find("peer lost peer=1"), std::string::npos) << r[rank];
    EXPECT_LT(elapsed_ms(r[rank]), 5000) << "detection should not wait for the 30 s silence deadline";
  }
}

TEST(Failures, RankKilledMidAllreduceFailsEveryOtherRankNamingIt) {
  Outcome o = run_launcher(
      {"-n", "4", "--keep-going", "--time-limit", "40", "--", tool(kHelper.c_str()), "kill-mid-allreduce", "2"},
      {{"RINGLINK_TIMEOUT_MS", "30000"}});
  EXPECT_NE(o.exit_code, 0);
  auto r = results(o.output);
  for (int rank : {0, 1, 3}) {
    ASSERT_TRUE(r.count(rank)) << o.output;
    EXPECT_NE(r[rank].find("peer lost peer=2"), std::string::npos) << r[rank];
    // Found through the dead rank's closed connections, long before the 30 s silence deadline.
    EXPECT_LT(elapsed_ms(r[rank]), 5000) << r[rank];
  }
}

TEST(Failures, RankFrozenMidAllreduceIsNamedByEveryRankAtTheDeadline) {
  Outcome o = run_launcher(
      {"-n", "4", "--keep-going", "--time-limit", "10", "--", tool(kHelper.c_str()), "stop-mid-allreduce", "2"},
      {{"RINGLINK_TIMEOUT_MS", "2000"}});
  EXPECT_NE(o.exit_code, 0);
  auto r = results(o.output);
  for (int rank : {0, 1, 3}) {
    ASSERT_TRUE(r.count(rank)) << o.output;
    EXPECT_NE(r[rank].find("timeout peer=2"), std::string::npos) << r[rank];
    EXPECT_NE(r[rank].find("rank 2 is not responding"), std::string::npos) << r[rank];
    // The 2 s deadline, up to two 400 ms graces to compare notes, and scheduling slack.
    EXPECT_LT(elapsed_ms(r[rank]), 6000) << r[rank];
  }
}

TEST(Launcher, KilledRankStopsTheJobAndLeavesNoProcess) {
  PidDir pids;
  Outcome o = run_launcher({"-n", "3", "--", tool(kHelper.c_str()), "kill-self", "1"},
                           {{"RINGLINK_TEST_PID_DIR", pids.path()}});
  EXPECT_EQ(o.exit_code, 128 + SIGKILL) << o.output;
  EXPECT_NE(o.output.find("rank 1 was killed by signal 9"), std::string::npos) << o.output;
  EXPECT_EQ(pids.pids().size(), 3u);
  EXPECT_TRUE(pids.survivors().empty());
}

TEST(Launcher, FailingRankTakesDownTheOthersAndTheirChildren) {
  PidDir pids;
  Outcome o = run_launcher({"-n", "3", "--grace", "1", "--", tool(kHelper.c_str()), "grandchild-then-fail", "1"},
                           {{"RINGLINK_TEST_PID_DIR", pids.path()}});
  EXPECT_EQ(o.exit_code, 1) << o.output;
  EXPECT_EQ(pids.pids().size(), 4u) << "3 ranks and 1 grandchild";
  EXPECT_TRUE(pids.survivors().empty());
  EXPECT_LT(o.took, 10s);
}

TEST(Launcher, InterruptStopsEveryRank) {
  PidDir pids;
  Outcome o = run_launcher({"-n", "3", "--", tool(kHelper.c_str()), "hang"}, {{"RINGLINK_TEST_PID_DIR", pids.path()}},
                           1000ms);
  EXPECT_EQ(o.exit_code, 128 + SIGINT) << o.output;
  EXPECT_EQ(pids.pids().size(), 3u);
  EXPECT_TRUE(pids.survivors().empty());
  EXPECT_LT(o.took, 8s);
}

TEST(Launcher, TimeLimitStopsTheJob) {
  Outcome o = run_launcher({"-n", "2", "--time-limit", "1", "--", tool(kHelper.c_str()), "hang"});
  EXPECT_EQ(o.exit_code, 124) << o.output;
  EXPECT_LT(o.took, 8s);
}

}  // namespace
