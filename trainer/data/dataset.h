// YOLO-format datasets: image lists, label files, and the images themselves
// (through an ImageStore: decoded on demand, or cached in RAM or on disk).
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset_config.h"
#include "data/image.h"
#include "data/image_store.h"

namespace yolo {

// Expands directories and .txt lists into sorted image paths. Files with
// YOLOv5's image extensions are taken; those it lists but this build cannot
// read (dng, pfm) are an error naming them.
std::vector<std::string> list_images(const std::vector<std::string>& sources);

// .../images/x.jpg -> .../labels/x.txt (last "/images/" only, as YOLOv5).
std::string label_path_for(const std::string& image_path);

// One label row: class, then centre x, centre y, width, height in [0, 1].
using LabelRow = std::array<float, 5>;

// Parses one YOLO label file. A missing file is a background image (true, no
// rows). Returns false and sets *error for a corrupt file: wrong column
// count, unparsable numbers, class out of [0, nc), coordinates outside [0, 1].
// Polygon rows (class + >= 3 points) become their bounding box; duplicate rows
// are dropped.
bool parse_label_file(const std::string& path, int nc, std::vector<LabelRow>* rows, std::string* error);
bool parse_label_text(const std::string& text, int nc, std::vector<LabelRow>* rows, std::string* error);

struct DatasetOptions {
  int img_size = 640;
  int threads = 1;
  CacheMode cache = CacheMode::none;
  int processes_per_host = 1;  // see ImageStoreOptions
  std::string split_name = "data";
  // Data parallelism: this rank's share of the cache (see ImageStoreOptions).
  int share_rank = 0, share_world = 1;
  // When set, called by every process sharing a cache with the indices (below count) that
  // failed to decode while caching here; returns the union over those processes, so all of
  // them drop the same images (each decodes only its share).
  std::function<std::vector<size_t>(const std::vector<size_t>& failed, size_t count)> agree_failed;
};

class Dataset {
 public:
  // Reads every label file and image header on `threads` threads (and, with a
  // cache, the images). Files that fail are skipped with a warning naming them.
  Dataset(const std::vector<std::string>& sources, int nc, const DatasetOptions& opts);
  // RAM-cached, as before --cache existed.
  Dataset(const std::vector<std::string>& sources, int nc, int img_size, int threads, const std::string& split_name);

  size_t size() const { return labels_.size(); }
  // Image i, resized so the long side is img_size.
  std::shared_ptr<const ImageU8> image(size_t i) const { return store_->get(i); }
  const std::vector<LabelRow>& labels(size_t i) const { return labels_[i]; }
  const std::string& path(size_t i) const { return paths_[i]; }
  // Native (upright) size of image i (width, height).
  std::array<int, 2> native_size(size_t i) const { return native_[i]; }
  int img_size() const { return img_size_; }
  size_t instances() const;
  CacheMode cache() const { return store_->mode(); }

 private:
  int img_size_;
  std::vector<std::vector<LabelRow>> labels_;
  std::vector<std::string> paths_;
  std::vector<std::array<int, 2>> native_;
  std::unique_ptr<ImageStore> store_;
};

}  // namespace yolo
