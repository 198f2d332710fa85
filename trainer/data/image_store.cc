#include "data/image_store.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include "data/npy.h"
#include "util/log.h"
#include "util/parallel_for.h"

namespace fs = std::filesystem;

namespace yolo {

namespace {

constexpr double kGB = 1e9;

bool disk_cache_is_fresh(const std::string& image, const std::string& npy) {
  std::error_code ec;
  const auto t_npy = fs::last_write_time(npy, ec);
  if (ec) return false;
  const auto t_img = fs::last_write_time(image, ec);
  return !ec && t_npy >= t_img;
}

}  // namespace

CacheMode parse_cache_mode(const std::string& s) {
  if (s.empty() || s == "none") return CacheMode::none;
  if (s == "ram") return CacheMode::ram;
  if (s == "disk") return CacheMode::disk;
  throw std::runtime_error("--cache '" + s + "': expected ram, disk or none");
}

const char* to_string(CacheMode m) {
  switch (m) {
    case CacheMode::ram: return "ram";
    case CacheMode::disk: return "disk";
    case CacheMode::none: break;
  }
  return "none";
}

uint64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

std::string disk_cache_path(const std::string& image_path) { return image_path + ".npy"; }

std::array<int, 2> ImageStore::resized_size(int w, int h, int img_size) {
  // load_image: r = img_size / max(h, w), then ceil(w * r) x ceil(h * r).
  const double r = static_cast<double>(img_size) / std::max(w, h);
  if (r == 1.0) return {w, h};
  return {std::max(1, static_cast<int>(std::ceil(w * r))), std::max(1, static_cast<int>(std::ceil(h * r)))};
}

ImageStore::ImageStore(std::vector<std::string> files, std::vector<std::array<int, 2>> sizes,
                       const ImageStoreOptions& opts, std::vector<size_t>* failed)
    : files_(std::move(files)), img_size_(opts.img_size), mode_(opts.cache) {
  size_t held = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!opts.holds(i)) continue;
    const auto [rw, rh] = resized_size(sizes[i][0], sizes[i][1], img_size_);
    ram_bytes_ += static_cast<uint64_t>(rw) * rh * 3;
    ++held;
  }
  const std::string share =
      opts.share_world > 1 ? fmt::format(" (rank {}'s share: {} of {})", opts.share_rank, held, files_.size()) : "";
  const std::string& split = opts.split_name;
  const int procs = std::max(1, opts.processes_per_host);
  if (mode_ == CacheMode::ram) {
    const double need = static_cast<double>(ram_bytes_) * procs * 1.1;  // train.py's 10 % margin
    const uint64_t avail = available_memory_bytes();
    const std::string per = procs > 1 ? fmt::format("{} processes on this host x {:.2f} GB", procs, ram_bytes_ / kGB)
                                      : fmt::format("{:.2f} GB", ram_bytes_ / kGB);
    if (avail > 0 && need > static_cast<double>(avail)) {
      log_warn("{}: --cache ram needs {:.2f} GB ({} + 10 %), {:.2f} GB available: not caching, images are decoded "
               "from their files each time",
               split, need / kGB, per, avail / kGB);
      mode_ = CacheMode::none;
    } else {
      log_info("{}: caching {} images in RAM{}: {:.2f} GB per process ({}), {:.2f} GB available", split, held, share,
               ram_bytes_ / kGB, per, avail / kGB);
    }
  }
  std::mutex mu;
  auto report = [&](size_t i, const std::exception& e) {
    std::lock_guard<std::mutex> lock(mu);
    log_warn("{}: skipping {}: {}", split, files_[i], e.what());
    if (failed) failed->push_back(i);
  };
  if (mode_ == CacheMode::ram) {
    ram_.resize(files_.size());
    parallel_for(files_.size(), opts.threads, [&](size_t i) {
      if (!opts.holds(i)) return;  // another rank's: decoded from its file when used
      try {
        ram_[i] = std::make_shared<const ImageU8>(load(i));
      } catch (const std::exception& e) {
        report(i, e);
      }
    });
  } else if (mode_ == CacheMode::disk) {
    std::atomic<uint64_t> written{0}, bytes{0};
    parallel_for(files_.size(), opts.threads, [&](size_t i) {
      if (!opts.holds(i)) return;  // another rank writes it
      const std::string npy = disk_cache_path(files_[i]);
      try {
        if (!disk_cache_is_fresh(files_[i], npy)) {
          const ImageU8 img = read_image(files_[i]);
          write_npy(npy, img);
          ++written;
          bytes += img.px.size();
        }
      } catch (const std::exception& e) {
        report(i, e);
      }
    });
    log_info("{}: disk cache of {} images beside them (<image>.npy){}: {} written now ({:.2f} GB), the rest up to date",
             split, held, share, written.load(), bytes.load() / kGB);
  }
  if (failed) std::sort(failed->begin(), failed->end());
}

void ImageStore::keep(const std::vector<char>& keep) {
  std::vector<std::string> files;
  std::vector<std::shared_ptr<const ImageU8>> ram;
  for (size_t i = 0; i < files_.size(); ++i) {
    if (!keep[i]) continue;
    files.push_back(std::move(files_[i]));
    if (!ram_.empty()) ram.push_back(std::move(ram_[i]));
  }
  files_ = std::move(files);
  ram_ = std::move(ram);
}

ImageU8 ImageStore::load(size_t i) const {
  ImageU8 img;
  if (mode_ == CacheMode::disk) {
    try {
      img = read_npy(disk_cache_path(files_[i]));
    } catch (const std::exception&) {  // removed or damaged since: decode the image itself
      img = read_image(files_[i]);
    }
  } else {
    img = read_image(files_[i]);
  }
  const auto [w, h] = resized_size(img.w, img.h, img_size_);
  return (w == img.w && h == img.h) ? img : resize(img, w, h);
}

std::shared_ptr<const ImageU8> ImageStore::get(size_t i) const {
  if (i < ram_.size() && ram_[i]) return ram_[i];
  return std::make_shared<const ImageU8>(load(i));
}

}  // namespace yolo
