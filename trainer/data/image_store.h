// Where a dataset's decoded images live between epochs: train.py's --cache.
//   none  decode each image from its file whenever a sample needs it
//   ram   decode every image once, resized, into this process's memory
//   disk  decode once into <image>.npy beside each file (full size, RGB), read those
// Images come out resized so the long side is img_size (YOLOv5's load_image).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/image.h"

namespace yolo {

enum class CacheMode { none, ram, disk };

// "ram", "disk", "none" (or empty: none). Anything else is an error naming it.
CacheMode parse_cache_mode(const std::string& s);
const char* to_string(CacheMode m);

struct ImageStoreOptions {
  int img_size = 640;
  int threads = 1;
  CacheMode cache = CacheMode::none;
  // Processes on this host that each cache the same images (data-parallel
  // ranks): the RAM check needs room for all of them.
  int processes_per_host = 1;
  std::string split_name = "data";
  // Data parallelism: a rank caches (ram) or writes (disk) only images i with
  // i % share_world == share_rank, about 1/share_world of them; the others come
  // from their files (disk: from the .npy another rank wrote, when it is there).
  int share_rank = 0, share_world = 1;
  bool holds(size_t i) const {
    return share_world <= 1 || static_cast<int>(i % static_cast<size_t>(share_world)) == share_rank;
  }
};

// Bytes of memory available to new allocations (MemAvailable), 0 if unknown.
uint64_t available_memory_bytes();

class ImageStore {
 public:
  // files: images whose headers have been read; sizes: their upright sizes.
  // With cache = ram the RAM check runs first: when the resized images (for
  // every process on the host, plus 10 %) do not fit in the available memory,
  // the store says so and falls back to none, as train.py does. Files that
  // fail to decode while caching are reported in *failed (indices).
  ImageStore(std::vector<std::string> files, std::vector<std::array<int, 2>> sizes, const ImageStoreOptions& opts,
             std::vector<size_t>* failed);

  std::shared_ptr<const ImageU8> get(size_t i) const;
  CacheMode mode() const { return mode_; }
  // Bytes of resized images one process holds (ram: its share), or would hold.
  uint64_t ram_bytes() const { return ram_bytes_; }
  // The size get() returns for an image of this native size.
  static std::array<int, 2> resized_size(int w, int h, int img_size);
  // Drops entries (e.g. files that failed) keeping the order of the rest.
  void keep(const std::vector<char>& keep);

 private:
  ImageU8 load(size_t i) const;
  std::vector<std::string> files_;
  int img_size_;
  CacheMode mode_;
  uint64_t ram_bytes_ = 0;
  std::vector<std::shared_ptr<const ImageU8>> ram_;
};

// <image>.npy: the disk cache beside an image file.
std::string disk_cache_path(const std::string& image_path);

}  // namespace yolo
