// --plot: ringlink-bench and the peer harnesses hand their JSON to ringlink-plot.
#include "bench/plot.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "bootstrap/environment.h"

namespace ringlink::bench {

namespace {

// ringlink-plot lives beside the tools in the build and install trees; RINGLINK_PLOT overrides.
std::string find_plot_tool() {
  if (auto env = detail::environment_variable("RINGLINK_PLOT"); env && !env->empty()) return *env;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (auto dir = exe.parent_path(); !dir.empty() && dir != dir.root_path(); dir = dir.parent_path()) {
      if (std::filesystem::exists(dir / "ringlink-plot")) return (dir / "ringlink-plot").string();
      if (dir.filename() != "peers") break;  // the peer harnesses sit one level down
    }
  }
  return "ringlink-plot";  // from PATH
}

// A JSON file of the run for the plot tool, when the run did not write one: mkstemps, so the
// name in /tmp is not predictable. Empty when no file can be made.
std::string write_temporary_json(const RunInfo& info) {
  std::string path = "/tmp/ringlink-bench-XXXXXX.json";
  const int fd = ::mkstemps(path.data(), 5);
  if (fd < 0) {
    std::fprintf(stderr, "cannot create a temporary file for the plot: %s\n", std::strerror(errno));
    return {};
  }
  ::close(fd);
  try {
    write_file(path, to_json(info));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    ::unlink(path.c_str());
    return {};
  }
  return path;
}

}  // namespace

void draw_plot(const std::string& png, const std::string& json_written, const RunInfo& info) {
  const bool temporary = json_written.empty();
  const std::string json = temporary ? write_temporary_json(info) : json_written;
  if (json.empty()) return;
  const std::string tool = find_plot_tool();
  std::vector<std::string> args = {tool, "-o", png, json};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  int status = 0;
  const int rc = ::posix_spawnp(&pid, tool.c_str(), nullptr, nullptr, argv.data(), environ);
  if (rc != 0) {
    std::fprintf(stderr, "cannot run %s: %s (the plot is drawn by tools/ringlink-plot)\n", tool.c_str(), std::strerror(rc));
  } else if (::waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "%s failed; no plot written\n", tool.c_str());
  }
  if (temporary) ::unlink(json.c_str());
}

}  // namespace ringlink::bench
