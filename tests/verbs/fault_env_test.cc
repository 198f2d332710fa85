// Faults injected through the environment, across processes: RINGLINK_SOFT_VERBS_FAULT armed in
// one rank turns into typed errors on both ends within the deadline. Ranks are the launcher
// tests' helper, started by ringlink-run over the software verbs.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "../helpers/rank_results.h"

namespace {

std::string run(const std::string& env, const std::string& args) {
  const char* launcher = std::getenv("RINGLINK_RUN");
  const char* helper = std::getenv("RANK_BEHAVIOUR");
  if (!launcher || !helper) return {};
  std::string cmd = "RINGLINK_TRANSPORT=verbs RINGLINK_IB_HCA=soft RINGLINK_TIMEOUT_MS=20000 " + env + " " + launcher +
                    " --keep-going --time-limit 60 " + args + " -- " + helper + " ok 2>&1";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[1024];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  if (p) ::pclose(p);
  return out;
}

using ringlink::testing::elapsed_ms;
using ringlink::testing::results;

TEST(SoftVerbsFaultFromEnvironment, WrongRkeyFailsBothEndsPromptly) {
  if (!std::getenv("RINGLINK_RUN")) GTEST_SKIP() << "run through meson test";
  // Rank 0's first RDMA WRITE (the clear-to-send of its first receive) carries a wrong rkey.
  std::string out = run("RINGLINK_SOFT_VERBS_FAULT=bad-rkey:1@0", "-n 2");
  auto r = results(out);
  ASSERT_EQ(r.size(), 2u) << out;
  EXPECT_NE(r[0].find("transport error peer=1"), std::string::npos) << r[0];
  EXPECT_NE(r[0].find("remote access error"), std::string::npos) << r[0];
  EXPECT_NE(r[1].find("transport error peer=0"), std::string::npos) << r[1];
  for (auto& [rank, text] : r) EXPECT_LT(elapsed_ms(text), 5000) << "rank " << rank << " waited for a deadline: " << text;
}

TEST(SoftVerbsFaultFromEnvironment, DroppedPeerIsPeerLostOnTheSender) {
  if (!std::getenv("RINGLINK_RUN")) GTEST_SKIP() << "run through meson test";
  // Rank 1's connections all break at its first posted send. (Rank 0, with nothing outstanding
  // to rank 1 and rank 1 still running, can only notice by the silence deadline: keep it short.)
  std::string out = run("RINGLINK_SOFT_VERBS_FAULT=drop-peer:1@1 RINGLINK_TIMEOUT_MS=2000", "-n 2");
  auto r = results(out);
  ASSERT_TRUE(r.count(1)) << out;
  EXPECT_NE(r[1].find("peer lost peer=0"), std::string::npos) << r[1];
  EXPECT_NE(r[1].find("retries exhausted"), std::string::npos) << r[1];
  EXPECT_LT(elapsed_ms(r[1]), 5000) << r[1];
}

}  // namespace
