// A rank that misbehaves on purpose, for the failure tests. Started by ringlink-run:
//   rank-behaviour MODE [TARGET_RANK]
// Modes: ok, never-join, wrong-token, world-mismatch, duplicate-rank, kill-self, hang,
//        grandchild-then-fail, kill-mid-allreduce, stop-mid-allreduce, late [SECONDS],
//        allreduce-loop TARGET [BYTES [SECONDS]] (TARGET unused: checked allreduces of BYTES,
//        1 MiB by default, until an error or SECONDS, 120 by default).
// The TARGET rank misbehaves; the others create a communicator, exchange a message around
// the ring and print "RESULT ok" or "RESULT <error kind> peer=<p> ms=<elapsed> at=<t>:
// <message>". Times t are milliseconds of CLOCK_MONOTONIC (one clock for every process of the
// machine, network namespaces included): a rank that kills itself prints "KILLING at=<t>"
// first, and every rank prints "EXITING at=<t>" once its communicator is gone.
// When RINGLINK_TEST_PID_DIR is set every process writes its pid there, so tests can check
// that nothing is left running.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
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

long long now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The error line: kind, peer, time since `t0`, when, and the message.
void print_error(const ringlink::Error& e, std::chrono::steady_clock::time_point t0, const std::string& extra = "") {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  std::printf("RESULT %s peer=%d ms=%lld at=%lld%s: %s\n", std::string(ringlink::to_string(e.kind())).c_str(), e.peer(),
              static_cast<long long>(ms), now_ms(), extra.c_str(), e.what());
  std::fflush(stdout);
}

// Registered first, so it runs last: after the process-wide store server of rank 0 is gone.
void print_exit_time() {
  std::printf("EXITING at=%lld\n", now_ms());
  std::fflush(stdout);
}

[[noreturn]] void kill_self(int sig) {
  std::printf("KILLING at=%lld\n", now_ms());
  std::fflush(stdout);
  ::raise(sig);
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
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
    print_error(e, t0);
    return 3;
  }
}

// Every rank allreduces `bytes` of floats (rank + 1 each) again and again and checks the sum,
// until an error (printed with its time) or `limit`.
int allreduce_loop(size_t bytes, std::chrono::seconds limit) {
  int result = 0;
  {
    try {
      ringlink::Communicator c;
      const int n = c.size();
      const float expected = static_cast<float>(n * (n + 1) / 2);
      std::vector<float> v(bytes / sizeof(float));
      std::printf("READY at=%lld\n", now_ms());
      std::fflush(stdout);
      auto start = std::chrono::steady_clock::now();
      int i = 0;
      for (int32_t go = 1; go; ++i) {
        std::fill(v.begin(), v.end(), static_cast<float>(c.rank() + 1));
        auto t0 = std::chrono::steady_clock::now();
        try {
          c.allreduce(v.data(), v.size(), ringlink::DataType::Float32, ringlink::ReduceOp::Sum);
          // Rank 0's clock decides when to stop, so every rank runs the same iterations.
          go = c.rank() != 0 || std::chrono::steady_clock::now() - start < limit;
          c.allreduce(&go, 1, ringlink::DataType::Int32, ringlink::ReduceOp::Min);
        } catch (const ringlink::Error& e) {
          print_error(e, t0, " iteration=" + std::to_string(i));
          result = 3;
          break;
        }
        if (std::any_of(v.begin(), v.end(), [&](float x) { return x != expected; })) {
          std::printf("RESULT wrong-data iteration=%d\n", i);
          result = 5;
          break;
        }
      }
      if (result == 0) std::printf("RESULT ok iterations=%d transport=%s\n", i, c.transport_name().c_str());
    } catch (const ringlink::Error& e) {
      std::printf("RESULT setup-failed: %s\n", e.what());
      result = 4;
    }
  }
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::atexit(print_exit_time);
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
      if (me) kill_self(SIGKILL);
      auto t0 = std::chrono::steady_clock::now();
      try {
        c.recv(&v, sizeof v, target, 9);
        std::printf("RESULT ok\n");
        return 0;
      } catch (const ringlink::Error& e) {
        print_error(e, t0);
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
    int result = 0;
    try {
      ringlink::Communicator c;
      std::vector<float> v(16u << 20, 1.0f);
      if (me) {
        std::thread([mode] {
          std::this_thread::sleep_for(std::chrono::milliseconds(300));
          if (mode == "kill-mid-allreduce") kill_self(SIGKILL);
          ::raise(SIGSTOP);
        }).detach();
      }
      for (int i = 0; i < 100000; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        try {
          c.allreduce(v.data(), v.size(), ringlink::DataType::Float32, ringlink::ReduceOp::Max);
        } catch (const ringlink::Error& e) {
          print_error(e, t0, " iteration=" + std::to_string(i));
          result = 3;
          break;
        }
      }
      if (result == 0) std::printf("RESULT ok\n");
    } catch (const ringlink::Error& e) {
      std::printf("RESULT setup-failed: %s\n", e.what());
      result = 4;
    }
    return result;
  }
  if (mode == "late") {
    // The target arrives at the first collective `seconds` after the others (a checkpoint).
    int seconds = argc > 3 ? std::atoi(argv[3]) : 8;
    try {
      ringlink::Communicator c;
      if (me) std::this_thread::sleep_for(std::chrono::seconds(seconds));
      auto t0 = std::chrono::steady_clock::now();
      float x = static_cast<float>(c.rank() + 1);
      try {
        c.allreduce(&x, 1, ringlink::DataType::Float32, ringlink::ReduceOp::Sum);
      } catch (const ringlink::Error& e) {
        print_error(e, t0);
        return 3;
      }
      int n = c.size();
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
      if (x != static_cast<float>(n * (n + 1) / 2)) {
        std::printf("RESULT wrong-data\n");
        return 5;
      }
      std::printf("RESULT ok waited ms=%lld\n", static_cast<long long>(ms));
      return 0;
    } catch (const ringlink::Error& e) {
      std::printf("RESULT setup-failed: %s\n", e.what());
      return 4;
    }
  }
  if (mode == "allreduce-loop") {
    size_t bytes = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : (1u << 20);
    int seconds = argc > 4 ? std::atoi(argv[4]) : 120;
    return allreduce_loop(bytes, std::chrono::seconds(seconds));
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
