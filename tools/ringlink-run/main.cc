// ringlink-run: starts N local ranks with the torchrun variables set, prefixes each line of
// their output with the rank, and exits with the first non-zero exit status. When a rank fails,
// or on Ctrl-C, it stops the others (SIGTERM, then SIGKILL after a grace period) and leaves no
// process behind.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bootstrap/environment.h"
#include "common/socket.h"

namespace {

int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  int saved = errno;
  unsigned char s = static_cast<unsigned char>(sig);
  [[maybe_unused]] ssize_t n = ::write(g_signal_pipe[1], &s, 1);
  errno = saved;
}

std::string random_token() {
  unsigned char bytes[16];
  if (::getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
    std::perror("ringlink-run: getrandom");
    std::exit(1);
  }
  std::string hex;
  for (unsigned char b : bytes) hex += fmt::format("{:02x}", b);
  return hex;
}

struct Rank {
  int index = 0;
  pid_t pid = -1;
  int out = -1;  // read ends of the child's stdout / stderr
  int err = -1;
  std::string out_partial, err_partial;
  bool exited = false;
  int status = 0;
};

// Writes complete lines with the rank prefix; keeps the unfinished tail for later.
void emit_lines(std::string& partial, const char* data, size_t n, int rank, FILE* to, bool prefix) {
  partial.append(data, n);
  size_t start = 0;
  for (;;) {
    size_t nl = partial.find('\n', start);
    if (nl == std::string::npos) break;
    std::string line = prefix ? fmt::format("[{}] {}\n", rank, std::string_view(partial).substr(start, nl - start))
                              : partial.substr(start, nl - start + 1);
    std::fwrite(line.data(), 1, line.size(), to);
    start = nl + 1;
  }
  partial.erase(0, start);
  std::fflush(to);
}

void flush_partial(std::string& partial, int rank, FILE* to, bool prefix) {
  if (partial.empty()) return;
  partial += '\n';
  emit_lines(partial, "", 0, rank, to, prefix);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string describe(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("was killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return "ended";
}

}  // namespace

int main(int argc, char** argv) {
  // Everything after "--" is the command; CLI11 parses what comes before.
  int split = -1;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--") == 0) {
      split = i;
      break;
    }

  CLI::App app{"Launches N local ranks of a command for ringlink (loopback rendezvous).\n"
               "usage: ringlink-run -n N [options] -- CMD ARGS..."};
  int nranks = 0;
  std::string transport;
  int master_port = 0;
  double grace_s = 3.0;
  double time_limit_s = 0;
  bool no_prefix = false;
  bool keep_going = false;
  app.add_option("-n,--nprocs", nranks, "number of ranks")->required()->check(CLI::Range(1, 4096));
  app.add_option("--transport", transport, "sets RINGLINK_TRANSPORT for every rank")
      ->check(CLI::IsMember({"auto", "ucx", "verbs"}));
  app.add_option("--master-port", master_port, "rendezvous port (default: a free one)")->check(CLI::Range(1, 65535));
  app.add_option("--grace", grace_s, "seconds between SIGTERM and SIGKILL when stopping ranks");
  app.add_option("--time-limit", time_limit_s, "stop every rank after this many seconds (exit status 124)");
  app.add_flag("--no-prefix", no_prefix, "do not prefix output lines with the rank");
  app.add_flag("--keep-going", keep_going,
               "when a rank fails, let the others run on (they still stop at --time-limit or Ctrl-C)");
  try {
    app.parse(split < 0 ? argc : split, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (split < 0 || split + 1 >= argc) {
    std::fprintf(stderr, "ringlink-run: no command given\nusage: ringlink-run -n N [options] -- CMD ARGS...\n");
    return 2;
  }
  std::vector<char*> cmd(argv + split + 1, argv + argc);
  cmd.push_back(nullptr);

  if (master_port == 0) master_port = ringlink::net::pick_free_port();
  // The ranks prove knowledge of this token to the store; a caller may choose it.
  const auto env_token = ringlink::detail::environment_variable("RINGLINK_JOB_TOKEN");
  const std::string token = env_token && !env_token->empty() ? *env_token : random_token();

  if (::pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    std::perror("ringlink-run: pipe2");
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaction(s, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  const pid_t launcher = ::getpid();
  std::vector<Rank> ranks(static_cast<size_t>(nranks));
  pid_t group = 0;  // every rank joins the first rank's process group, so one kill() reaches all
  for (int r = 0; r < nranks; ++r) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
      std::perror("ringlink-run: pipe2");
      return 1;
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("ringlink-run: fork");
      if (group > 0) ::kill(-group, SIGKILL);
      return 1;
    }
    if (pid == 0) {
      ::setpgid(0, group);
      // Die with the launcher even if it is SIGKILLed.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != launcher) ::_exit(1);
      for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGPIPE}) ::signal(s, SIG_DFL);
      int devnull = ::open("/dev/null", O_RDONLY);
      ::dup2(devnull, STDIN_FILENO);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nranks).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nranks).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(master_port).c_str(), 1);
      ::setenv("RINGLINK_JOB_TOKEN", token.c_str(), 1);
      if (!transport.empty()) ::setenv("RINGLINK_TRANSPORT", transport.c_str(), 1);
      ::execvp(cmd[0], cmd.data());
      std::fprintf(stderr, "ringlink-run: cannot run '%s': %s\n", cmd[0], std::strerror(errno));
      ::_exit(127);
    }
    if (group == 0) group = pid;
    ::setpgid(pid, group);  // also from the parent, so the group exists before we might signal it
    ::close(out[1]);
    ::close(err[1]);
    ::fcntl(out[0], F_SETFL, O_NONBLOCK);
    ::fcntl(err[0], F_SETFL, O_NONBLOCK);
    ranks[static_cast<size_t>(r)] = Rank{r, pid, out[0], err[0], {}, {}, false, 0};
  }

  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  int first_failure = 0;
  bool stopping = false;
  Clock::time_point kill_at{};
  int live = nranks;

  auto stop_all = [&](const char* why) {
    if (stopping) return;
    stopping = true;
    std::fprintf(stderr, "ringlink-run: %s; stopping the other ranks\n", why);
    ::kill(-group, SIGTERM);
    kill_at = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000));
  };

  while (live > 0) {
    std::vector<pollfd> fds;
    std::vector<std::pair<size_t, bool>> owners;  // rank index, is_stderr
    fds.push_back({g_signal_pipe[0], POLLIN, 0});
    for (size_t i = 0; i < ranks.size(); ++i) {
      if (ranks[i].out >= 0) {
        fds.push_back({ranks[i].out, POLLIN, 0});
        owners.push_back({i, false});
      }
      if (ranks[i].err >= 0) {
        fds.push_back({ranks[i].err, POLLIN, 0});
        owners.push_back({i, true});
      }
    }
    ::poll(fds.data(), fds.size(), 100);

    if (fds[0].revents & POLLIN) {
      unsigned char sigs[64];
      ssize_t n;
      while ((n = ::read(g_signal_pipe[0], sigs, sizeof sigs)) > 0)
        for (ssize_t k = 0; k < n; ++k) {
          if (sigs[k] == SIGCHLD) continue;
          if (!first_failure) first_failure = 128 + sigs[k];
          if (stopping) {
            ::kill(-group, SIGKILL);  // a second Ctrl-C does not wait for the grace period
          } else {
            stop_all(sigs[k] == SIGINT ? "interrupted" : "terminated");
          }
        }
    }
    for (size_t k = 1; k < fds.size(); ++k) {
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      auto [i, is_err] = owners[k - 1];
      Rank& rk = ranks[i];
      int& fd = is_err ? rk.err : rk.out;
      char buf[65536];
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) {
        emit_lines(is_err ? rk.err_partial : rk.out_partial, buf, static_cast<size_t>(n), rk.index,
                   is_err ? stderr : stdout, !no_prefix);
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        flush_partial(is_err ? rk.err_partial : rk.out_partial, rk.index, is_err ? stderr : stdout, !no_prefix);
        ::close(fd);
        fd = -1;
      }
    }
    // Reap.
    for (auto& rk : ranks) {
      if (rk.exited) continue;
      int status = 0;
      pid_t p = ::waitpid(rk.pid, &status, WNOHANG);
      if (p != rk.pid) continue;
      rk.exited = true;
      rk.status = status;
      --live;
      int code = exit_code_of(status);
      if (code != 0 && !first_failure) first_failure = code;
      if (code != 0 && !stopping && !keep_going) {
        std::string why = fmt::format("rank {} {}", rk.index, describe(status));
        stop_all(why.c_str());
      } else if (code != 0) {
        std::fprintf(stderr, "ringlink-run: rank %d %s\n", rk.index, describe(status).c_str());
      }
    }
    if (!stopping && time_limit_s > 0 &&
        Clock::now() - started > std::chrono::milliseconds(static_cast<int64_t>(time_limit_s * 1000))) {
      if (!first_failure) first_failure = 124;
      stop_all(fmt::format("time limit of {} s reached", time_limit_s).c_str());
    }
    if (stopping && Clock::now() >= kill_at) {
      ::kill(-group, SIGKILL);
      kill_at = Clock::time_point::max();
    }
  }
  // The ranks are gone; make sure nothing they started in their group lingers either.
  ::kill(-group, SIGKILL);
  // Drain what is left in the pipes.
  for (auto& rk : ranks) {
    for (int* fd : {&rk.out, &rk.err}) {
      if (*fd < 0) continue;
      bool is_err = fd == &rk.err;
      char buf[65536];
      ssize_t n;
      while ((n = ::read(*fd, buf, sizeof buf)) > 0)
        emit_lines(is_err ? rk.err_partial : rk.out_partial, buf, static_cast<size_t>(n), rk.index,
                   is_err ? stderr : stdout, !no_prefix);
      flush_partial(is_err ? rk.err_partial : rk.out_partial, rk.index, is_err ? stderr : stdout, !no_prefix);
      ::close(*fd);
    }
  }
  return first_failure;
}
