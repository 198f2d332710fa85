// Scratch directories for the trainer tests, and the shapes datasets they generate there:
// unique to the process, removed with everything in them when the object goes away, so a
// failing assertion leaves nothing behind either.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() / ("yolo-test-" + name + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;  // never throw from a destructor
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& sub) const { return path_ / sub; }

 private:
  std::filesystem::path path_;
};

// Writes a shapes dataset into `out` with make-shapes-dataset ($MAKE_SHAPES_DATASET, else the
// one on PATH) and `args` (--train N --val N --img PX --seed S); throws naming the command.
inline void make_shapes_dataset(const std::filesystem::path& out, const std::string& args) {
  const char* tool = std::getenv("MAKE_SHAPES_DATASET");
  const std::string cmd = std::string(tool ? tool : "make-shapes-dataset") + " --out " + out.string() + " " + args;
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("make-shapes-dataset failed: " + cmd);
}
