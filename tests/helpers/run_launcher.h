// Running ringlink-run from a test: its output, exit status and duration, bounded in time.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace ringlink::testing {

using namespace std::chrono_literals;

inline std::string tool(const char* var) {
  const char* p = std::getenv(var);
  if (!p) throw std::runtime_error(std::string(var) + " is not set (run through meson test)");
  return p;
}

struct Outcome {
  int exit_code = -1;
  std::string output;
  std::chrono::milliseconds took{};
};

// Runs ringlink-run with `args`; optional SIGINT after `interrupt_after`. Killed after 60 s.
inline Outcome run_launcher(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {},
                     std::chrono::milliseconds interrupt_after = 0ms) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) throw std::runtime_error("pipe");
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipe_fds[1], 1);
    ::dup2(pipe_fds[1], 2);
    ::close(pipe_fds[0]);
    for (auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<std::string> full{tool("RINGLINK_RUN")};
    full.insert(full.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  Outcome out;
  bool interrupted = false;
  auto hard_limit = t0 + 60s;
  for (;;) {
    pollfd p{pipe_fds[0], POLLIN, 0};
    ::poll(&p, 1, 50);
    if (p.revents) {
      char buf[4096];
      ssize_t n = ::read(pipe_fds[0], buf, sizeof buf);
      if (n > 0) out.output.append(buf, static_cast<size_t>(n));
      if (n == 0) break;
    }
    if (!interrupted && interrupt_after.count() > 0 && std::chrono::steady_clock::now() - t0 >= interrupt_after) {
      ::kill(pid, SIGINT);
      interrupted = true;
    }
    if (std::chrono::steady_clock::now() > hard_limit) {
      ::kill(pid, SIGKILL);
      ADD_FAILURE() << "ringlink-run did not finish within 60 s";
      break;
    }
  }
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  out.took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return out;
}


}  // namespace ringlink::testing
