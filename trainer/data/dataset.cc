#include "data/dataset.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "util/log.h"
#include "util/parallel_for.h"

namespace fs = std::filesystem;

namespace yolo {

std::vector<std::string> list_images(const std::vector<std::string>& sources) {
  std::vector<std::string> out;
  auto take = [&](const fs::path& p) {
    switch (classify_image_extension(p.string())) {
      case ImageExtension::supported: out.push_back(p.string()); break;
      case ImageExtension::unsupported:
        throw std::runtime_error(fmt::format("{}: {} images are not supported (supported: {}); convert them or leave "
                                             "them out of the dataset",
                                             p.string(), p.extension().string(), kSupportedImageExtensions));
      case ImageExtension::not_image: break;  // as YOLOv5, other files are not images
    }
  };
  for (const auto& src : sources) {
    const fs::path p(src);
    if (fs::is_directory(p)) {
      for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file()) take(e.path());
    } else if (p.extension() == ".txt" && fs::is_regular_file(p)) {
      std::ifstream in(p);
      std::string line;
      while (std::getline(in, line)) {
        line.erase(line.find_last_not_of(" \r\t") + 1);
        if (line.empty()) continue;
        fs::path q(line);
        if (q.is_relative()) q = p.parent_path() / q;
        take(q.lexically_normal());
      }
    } else if (fs::is_regular_file(p)) {
      if (classify_image_extension(p.string()) == ImageExtension::not_image)
        throw std::runtime_error(fmt::format("{}: not an image ({}) nor a .txt list", src, kSupportedImageExtensions));
      take(p);
    } else {
      throw std::runtime_error("image source does not exist: " + src);
    }
  }
  std::sort(out.begin(), out.end());
  if (out.empty()) throw std::runtime_error("no images found in " + (sources.empty() ? "(nothing)" : sources[0]));
  return out;
}

std::string label_path_for(const std::string& image_path) {
  std::string s = image_path;
  const std::string a = "/images/", b = "/labels/";
  const auto pos = s.rfind(a);
  if (pos != std::string::npos) s.replace(pos, a.size(), b);
  return fs::path(s).replace_extension(".txt").string();
}

bool parse_label_text(const std::string& text, int nc, std::vector<LabelRow>* rows, std::string* error) {
  rows->clear();
  std::istringstream lines(text);
  std::string line;
  int line_no = 0;
  while (std::getline(lines, line)) {
    ++line_no;
    std::istringstream tok(line);
    std::vector<double> v;
    std::string t;
    while (tok >> t) {
      char* end = nullptr;
      const double x = std::strtod(t.c_str(), &end);
      if (end == t.c_str() || *end != '\0' || !std::isfinite(x)) {
        *error = "line " + std::to_string(line_no) + ": not a number: '" + t + "'";
        return false;
      }
      v.push_back(x);
    }
    if (v.empty()) continue;
    LabelRow r;
    if (v.size() == 5) {
      for (int k = 0; k < 5; ++k) r[k] = static_cast<float>(v[k]);
    } else if (v.size() >= 7 && v.size() % 2 == 1) {  // polygon: class x1 y1 x2 y2 ...
      double x1 = 1e9, y1 = 1e9, x2 = -1e9, y2 = -1e9;
      for (size_t k = 1; k < v.size(); k += 2) {
        x1 = std::min(x1, v[k]), x2 = std::max(x2, v[k]);
        y1 = std::min(y1, v[k + 1]), y2 = std::max(y2, v[k + 1]);
      }
      r = {static_cast<float>(v[0]), static_cast<float>((x1 + x2) / 2), static_cast<float>((y1 + y2) / 2),
           static_cast<float>(x2 - x1), static_cast<float>(y2 - y1)};
    } else {
      *error = "line " + std::to_string(line_no) + ": " + std::to_string(v.size()) +
               " columns (expected 5: class x y w h, or a polygon)";
      return false;
    }
    if (r[0] != std::floor(r[0]) || r[0] < 0 || r[0] >= nc) {
      *error = "line " + std::to_string(line_no) + ": class " + fmt::format("{}", r[0]) + " outside [0, " +
               std::to_string(nc) + ")";
      return false;
    }
    for (int k = 1; k < 5; ++k) {
      if (r[k] < 0 || r[k] > 1) {
        *error = "line " + std::to_string(line_no) + ": coordinates must be normalised to [0, 1]";
        return false;
      }
    }
    if (std::find(rows->begin(), rows->end(), r) == rows->end()) rows->push_back(r);
  }
  return true;
}

bool parse_label_file(const std::string& path, int nc, std::vector<LabelRow>* rows, std::string* error) {
  rows->clear();
  std::ifstream in(path);
  if (!in) return true;  // no label file: background image
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_label_text(ss.str(), nc, rows, error);
}

Dataset::Dataset(const std::vector<std::string>& sources, int nc, int img_size, int threads,
                 const std::string& split_name)
    : Dataset(sources, nc, DatasetOptions{img_size, threads, CacheMode::ram, 1, split_name}) {}

Dataset::Dataset(const std::vector<std::string>& sources, int nc, const DatasetOptions& opts) : img_size_(opts.img_size) {
  const std::string& split = opts.split_name;
  const auto files = list_images(sources);
  const size_t n = files.size();
  std::vector<std::vector<LabelRow>> labels(n);
  std::vector<std::array<int, 2>> native(n);
  std::vector<char> ok(n, 0);
  // Labels and image headers (the sizes), as YOLOv5's label cache step.
  parallel_for(n, opts.threads, [&](size_t i) {
    std::string err;
    const std::string lp = label_path_for(files[i]);
    if (!parse_label_file(lp, nc, &labels[i], &err)) {
      log_warn("{}: skipping {}: bad label file {}: {}", split, files[i], lp, err);
      return;
    }
    try {
      native[i] = read_image_size(files[i]);
      ok[i] = 1;
    } catch (const std::exception& e) {
      log_warn("{}: skipping {}: {}", split, files[i], e.what());
    }
  });
  std::vector<std::string> usable;
  for (size_t i = 0; i < n; ++i) {
    if (!ok[i]) continue;
    usable.push_back(files[i]);
    labels_.push_back(std::move(labels[i]));
    native_.push_back(native[i]);
  }
  if (usable.empty()) throw std::runtime_error(split + ": no usable images in " + sources[0]);
  paths_ = usable;
  ImageStoreOptions so;
  so.img_size = opts.img_size;
  so.threads = opts.threads;
  so.cache = opts.cache;
  so.processes_per_host = opts.processes_per_host;
  so.split_name = split;
  so.share_rank = opts.share_rank;
  so.share_world = opts.share_world;
  std::vector<size_t> failed;
  store_ = std::make_unique<ImageStore>(std::move(usable), native_, so, &failed);
  if (opts.agree_failed) failed = opts.agree_failed(failed, paths_.size());
  if (!failed.empty()) {  // decoding failed while caching: drop those too
    std::vector<char> keep(paths_.size(), 1);
    for (size_t i : failed) keep[i] = 0;
    store_->keep(keep);
    size_t j = 0;
    for (size_t i = 0; i < keep.size(); ++i) {
      if (!keep[i]) continue;
      if (i != j) {  // moving an entry onto itself would empty it
        labels_[j] = std::move(labels_[i]);
        native_[j] = native_[i];
        paths_[j] = std::move(paths_[i]);
      }
      ++j;
    }
    labels_.resize(j), native_.resize(j), paths_.resize(j);
    if (j == 0) throw std::runtime_error(split + ": no usable images in " + sources[0]);
  }
  const size_t skipped = n - size();
  log_info("{}: {} images, {} instances ({} px, cache {}){}", split, size(), instances(), opts.img_size,
           to_string(cache()), skipped ? fmt::format(", {} skipped", skipped) : std::string());
}

size_t Dataset::instances() const {
  size_t n = 0;
  for (const auto& l : labels_) n += l.size();
  return n;
}

}  // namespace yolo
