// Liveness apart from lateness, with real processes on loopback: a rank 8 s late passes with
// the library's defaults; a killed rank (rank 0 too, and over shared memory) is reported to
// every other rank within a second, which then exits within a second, without UCX noise; a
// program squatting on the store's port is reported by the ranks.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include "helpers/rank_results.h"
#include "helpers/run_launcher.h"

using namespace std::chrono_literals;
using ringlink::testing::at_ms;
using ringlink::testing::elapsed_ms;
using ringlink::testing::Outcome;
using ringlink::testing::results;
using ringlink::testing::run_launcher;
using ringlink::testing::stamps;
using ringlink::testing::tool;

namespace {

const char* kHelper = "RANK_BEHAVIOUR";

// What UCX prints when a failure leaves requests behind; none of it may reach the user.
void expect_no_ucx_noise(const std::string& output) {
  for (const char* noise : {"mpool.c", "was not returned to mpool", "tag_match.c", "UCX  WARN", "UCX  ERROR"})
    EXPECT_EQ(output.find(noise), std::string::npos) << "UCX noise '" << noise << "' in:\n" << output;
}

// Kills `target` mid-allreduce among `n` ranks and checks what every other rank saw and when.
void expect_kill_reported_and_survivors_exit(int n, int target, const std::map<std::string, std::string>& env) {
  Outcome o = run_launcher({"-n", std::to_string(n), "--keep-going", "--time-limit", "40", "--", tool(kHelper),
                            "kill-mid-allreduce", std::to_string(target)},
                           env);
  EXPECT_NE(o.exit_code, 0);
  auto r = results(o.output);
  auto killed = stamps(o.output, "KILLING");
  auto exited = stamps(o.output, "EXITING");
  ASSERT_TRUE(killed.count(target)) << o.output;
  for (int rank = 0; rank < n; ++rank) {
    if (rank == target) continue;
    ASSERT_TRUE(r.count(rank)) << o.output;
    EXPECT_NE(r[rank].find("peer lost peer=" + std::to_string(target)), std::string::npos) << r[rank];
    long long error_at = at_ms(r[rank]);
    EXPECT_LE(error_at - killed[target], 1000) << "rank " << rank << " heard of the kill late: " << r[rank];
    ASSERT_TRUE(exited.count(rank)) << o.output;
    EXPECT_LE(exited[rank] - error_at, 1000) << "rank " << rank << " took long to exit after its error";
  }
  expect_no_ucx_noise(o.output);
}

TEST(Liveness, RankEightSecondsLatePassesWithTheDefaults) {
  ::unsetenv("RINGLINK_TIMEOUT_MS");  // the library's default, whatever the caller's environment says
  ::unsetenv("RINGLINK_LIVENESS_TIMEOUT_MS");
  Outcome o = run_launcher({"-n", "3", "--time-limit", "40", "--", tool(kHelper), "late", "1", "8"});
  EXPECT_EQ(o.exit_code, 0) << o.output;
  auto r = results(o.output);
  ASSERT_EQ(r.size(), 3u) << o.output;
  for (auto& [rank, text] : r) {
    EXPECT_EQ(text.rfind("ok", 0), 0u) << "rank " << rank << ": " << text;
    if (rank != 1) {
      EXPECT_GE(elapsed_ms(text), 7500) << "rank " << rank << " did not wait for rank 1: " << text;
    }
  }
}

TEST(Liveness, KilledRankIsReportedWithinASecondAndSurvivorsExitWithinAnother) {
  expect_kill_reported_and_survivors_exit(3, 1, {{"RINGLINK_TIMEOUT_MS", "30000"}});
}

TEST(Liveness, KilledRankZeroIsReportedByEveryOtherRank) {
  expect_kill_reported_and_survivors_exit(3, 0, {{"RINGLINK_TIMEOUT_MS", "30000"}});
}

TEST(Liveness, KilledRankOverSharedMemory) {
  expect_kill_reported_and_survivors_exit(3, 2, {{"UCX_TLS", "sm,self"}, {"RINGLINK_TRANSPORT", "ucx"}});
}

TEST(Liveness, KilledRankZeroOverSharedMemory) {
  expect_kill_reported_and_survivors_exit(3, 0, {{"UCX_TLS", "sm,self"}, {"RINGLINK_TRANSPORT", "ucx"}});
}

// A program that holds the store's port before rank 0 starts, and answers each HELLO with a
// challenge whose proof it cannot have computed.
class PortSquatter {
 public:
  PortSquatter() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("squatter: cannot listen");
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~PortSquatter() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  int connections() const { return connections_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      ++connections_;
      char hello[512];
      ::recv(c, hello, sizeof hello, 0);
      // A frame: u32 length 65, status Ok, a 32-byte nonce and a 32-byte "proof".
      std::string reply(4 + 65, '\x5a');
      uint32_t n = 65;
      std::memcpy(reply.data(), &n, 4);
      reply[4] = 0;
      ::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
      pollfd q{c, POLLIN, 0};
      ::poll(&q, 1, 2000);  // the rank's ABORT, or its close
      ::close(c);
    }
  }
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
};

TEST(Rendezvous, ASquatterOnTheStorePortIsReportedByTheRanks) {
  PortSquatter squatter;
  Outcome o = run_launcher({"-n", "3", "--keep-going", "--time-limit", "30", "--master-port",
                            std::to_string(squatter.port()), "--", tool(kHelper), "ok"},
                           {{"RINGLINK_CONNECT_TIMEOUT_MS", "5000"}});
  EXPECT_NE(o.exit_code, 0);
  auto r = results(o.output);
  ASSERT_EQ(r.size(), 3u) << o.output;
  // Rank 0 finds the port taken; the others find a listener that cannot prove the token.
  EXPECT_NE(r[0].find("cannot serve the rendezvous store on 127.0.0.1:" + std::to_string(squatter.port())),
            std::string::npos)
      << r[0];
  for (int rank : {1, 2}) {
    EXPECT_NE(r[rank].find("invalid argument peer=0"), std::string::npos) << r[rank];
    EXPECT_NE(r[rank].find("could not prove that it knows this job's token"), std::string::npos) << r[rank];
    EXPECT_LT(elapsed_ms(r[rank]), 5000) << "the squatter was found only at the deadline: " << r[rank];
  }
  EXPECT_GE(squatter.connections(), 2);
}

}  // namespace
