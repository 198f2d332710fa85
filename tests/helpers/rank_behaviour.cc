// A rank that misbehaves on purpose, for the failure tests. Started by ringlink-run:
//   rank-behaviour MODE [TARGET_RANK]
// Modes: ok, never-join, wrong-token, world-mismatch, duplicate-rank, kill-self, hang,
//        grandchild-then-fail, kill-mid-allreduce, stop-mid-allreduce.
// The TARGET rank misbehaves; the others create a communicator, exchange a message around
// the ring and print "RESULT ok" or "RESULT <error kind> peer=<p> ms=<elapsed>: <message>".
// When RINGLINK_TEST_PID_DIR is set every process writes its pid there, so tests can check
// that nothing is left running.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <ringlink/ringlink.h>

namespace {

void record_pid() {
  if (const char* dir = std::getenv("RINGLINK_TEST_PID_DIR")) {
    std::ofstream(std::string(dir) + "/" + std::to_string(::getpid())) << ::getpid() << "\n";
  }
}

void sleep_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

int exchange_around_ring() {
  auto t0 = std::chrono::steady_clock::now();
  try {
    ringlink::Communicator c;
    int me = c.rank(), n = c.size();
    uint64_t out = static_cast<uint64_t>(me), in = 0;
    auto r = c.irecv(&in, sizeof in, (me + n - 1) % n);
    c.send(&out, sizeof out, (me + 1) % n);
    r.wait();
    if (in != static_cast<uint64_t>((me + n - 1) % n)) {
      std::printf("RESULT wrong-data\n");
      return 5;
    }
    // Stay until everyone is done, so no rank reports a peer that simply finished first.
    c.send(&out, sizeof out, (me + 1) % n, 1);
    c.recv(&in, sizeof in, (me + n - 1) % n, 1);
    std::printf("RESULT ok\n");
    return 0;
  } catch (const ringlink::Error& e) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    std::printf("RESULT %s peer=%d ms=%lld: %s\n", std::string(ringlink::to_string(e.kind())).c_str(), e.peer(),
                static_cast<long long>(ms), e.what());
    std::fflush(stdout);
    return 3;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  record_pid();
  std::string mode = argc > 1 ? argv[1] : "ok";
  int target = argc > 2 ? std::atoi(argv[2]) : -1;
  int rank = std::atoi(std::getenv("RANK") ? std::getenv("RANK") : "0");
  bool me = rank == target;

  if (mode == "ok") return exchange_around_ring();
  if (mode == "hang") sleep_forever();
  if (mode == "never-join") {
    if (me) sleep_forever();
    return exchange_around_ring();
  }
  if (mode == "wrong-token") {
    if (me) ::setenv("RINGLINK_JOB_TOKEN", "forged", 1);
    return exchange_around_ring();
  }
  if (mode == "world-mismatch") {
    if (me) ::setenv("WORLD_SIZE", std::to_string(std::atoi(std::getenv("WORLD_SIZE")) + 1).c_str(), 1);
    return exchange_around_ring();
  }
  if (mode == "duplicate-rank") {
    if (me) ::setenv("RANK", "1", 1);  // the target claims to be rank 1 too
    return exchange_around_ring();
  }
  if (mode == "kill-self") {
    // Everyone joins; then the target dies while the others wait for its message.
    try {
      ringlink::Communicator c;
      int n = c.size();
      uint64_t v = 0;
      if (me) ::raise(SIGKILL);
      auto t0 = std::chrono::steady_clock::now();
      try {
        c.recv(&v, sizeof v, target, 9);
        std::printf("RESULT ok\n");
        return 0;
      } catch (const ringlink::Error& e) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
        std::printf("RESULT %s peer=%d ms=%lld: %s\n", std::string(ringlink::to_string(e.kind())).c_str(), e.peer(),
                    static_cast<long long>(ms), e.what());
        (void)n;
        return 3;
      }
    } catch (const ringlink::Error& e) {
      std::printf("RESULT setup-failed: %s\n", e.what());
      return 4;
    }
  }
  if (mode == "kill-mid-allreduce" || mode == "stop-mid-allreduce") {
    // Every rank runs 64 MiB allreduces back to back; 300 ms in, the target dies (SIGKILL) or
    // freezes (SIGSTOP) in the middle of one.
    try {
      ringlink::Communicator c;
      std::vector<float> v(16u << 20, 1.0f);
      if (me) {
        std::thread([mode] {
          std::this_thread::sleep_for(std::chrono::milliseconds(300));
          ::raise(mode == "kill-mid-allreduce" ? SIGKILL : SIGSTOP);
        }).detach();
      }
      for (int i = 0; i < 100000; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        try {
          c.allreduce(v.data(), v.size(), ringlink::DataType::Float32, ringlink::ReduceOp::Max);
        } catch (const ringlink::Error& e) {
          auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
          std::printf("RESULT %s peer=%d ms=%lld iteration=%d: %s\n", std::string(ringlink::to_string(e.kind())).c_str(),
                      e.peer(), static_cast<long long>(ms), i, e.what());
          return 3;
        }
      }
      std::printf("RESULT ok\n");
      return 0;
    } catch (const ringlink::Error& e) {
      std::printf("RESULT setup-failed: %s\n", e.what());
      return 4;
    }
  }
  if (mode == "grandchild-then-fail") {
    if (me) {
      pid_t child = ::fork();
      if (child == 0) {
        record_pid();
        sleep_forever();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      return 1;
    }
    sleep_forever();
  }
  std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
  return 2;
}
