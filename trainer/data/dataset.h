// YOLO-format datasets: the dataset YAML, image lists, label files, and the
// in-memory cache of decoded images (like YOLOv5's --cache ram).
#pragma once

#include <array>
#include <string>
#include <vector>

#include "data/image.h"

namespace yolo {

struct DatasetConfig {
  std::string yaml_path;
  std::string root;                      // `path`
  std::vector<std::string> train, val;   // resolved to absolute paths (dirs, .txt lists or images)
  std::vector<std::string> names;
  int nc() const { return static_cast<int>(names.size()); }
};

DatasetConfig load_dataset_config(const std::string& yaml_path);

// Expands directories and .txt lists into sorted image paths.
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

class Dataset {
 public:
  // Loads every image (resized so the long side is img_size) and its labels,
  // on `threads` threads. Files that fail are skipped with a warning naming them.
  Dataset(const std::vector<std::string>& sources, int nc, int img_size, int threads, const std::string& split_name);

  size_t size() const { return images_.size(); }
  const ImageU8& image(size_t i) const { return images_[i]; }
  const std::vector<LabelRow>& labels(size_t i) const { return labels_[i]; }
  const std::string& path(size_t i) const { return paths_[i]; }
  // Native size of image i before the cache resize (width, height).
  std::array<int, 2> native_size(size_t i) const { return native_[i]; }
  int img_size() const { return img_size_; }
  size_t instances() const;

 private:
  int img_size_;
  std::vector<ImageU8> images_;
  std::vector<std::vector<LabelRow>> labels_;
  std::vector<std::string> paths_;
  std::vector<std::array<int, 2>> native_;
};

}  // namespace yolo
