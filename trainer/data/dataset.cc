#include "data/dataset.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "util/log.h"

namespace fs = std::filesystem;

namespace yolo {

namespace {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* e : {".jpg", ".jpeg", ".png", ".bmp", ".tga", ".ppm", ".pgm", ".gif", ".psd", ".hdr"})
    if (ext == e) return true;
  return false;
}

std::vector<std::string> as_list(const YAML::Node& n) {
  std::vector<std::string> out;
  if (!n) return out;
  if (n.IsSequence()) {
    for (const auto& x : n) out.push_back(x.as<std::string>());
  } else {
    out.push_back(n.as<std::string>());
  }
  return out;
}

}  // namespace

DatasetConfig load_dataset_config(const std::string& yaml_path) {
  if (!fs::exists(yaml_path)) throw std::runtime_error("dataset YAML not found: " + yaml_path);
  YAML::Node root;
  try {
    root = YAML::LoadFile(yaml_path);
  } catch (const YAML::Exception& e) {
    throw std::runtime_error("cannot parse dataset YAML " + yaml_path + ": " + e.what());
  }
  DatasetConfig cfg;
  cfg.yaml_path = yaml_path;
  const fs::path yaml_dir = fs::absolute(yaml_path).parent_path();
  // A relative `path` is taken relative to the YAML file's directory.
  fs::path base = root["path"] ? fs::path(root["path"].as<std::string>()) : yaml_dir;
  if (base.is_relative()) base = yaml_dir / base;
  cfg.root = base.lexically_normal().string();
  auto resolve = [&](const std::string& p) {
    fs::path q(p);
    return (q.is_relative() ? base / q : q).lexically_normal().string();
  };
  for (const auto& s : as_list(root["train"])) cfg.train.push_back(resolve(s));
  for (const auto& s : as_list(root["val"])) cfg.val.push_back(resolve(s));
  const YAML::Node names = root["names"];
  if (!names) throw std::runtime_error("dataset YAML has no 'names': " + yaml_path);
  if (names.IsSequence()) {
    for (const auto& n : names) cfg.names.push_back(n.as<std::string>());
  } else if (names.IsMap()) {
    std::vector<std::pair<int, std::string>> kv;
    for (const auto& n : names) kv.emplace_back(n.first.as<int>(), n.second.as<std::string>());
    std::sort(kv.begin(), kv.end());
    for (size_t i = 0; i < kv.size(); ++i) {
      if (kv[i].first != static_cast<int>(i))
        throw std::runtime_error("dataset YAML 'names' keys must be 0..nc-1: " + yaml_path);
      cfg.names.push_back(kv[i].second);
    }
  }
  if (root["nc"] && root["nc"].as<int>() != cfg.nc())
    throw std::runtime_error("dataset YAML: nc does not match the number of names: " + yaml_path);
  if (cfg.names.empty()) throw std::runtime_error("dataset YAML has no class names: " + yaml_path);
  if (cfg.train.empty()) throw std::runtime_error("dataset YAML has no 'train': " + yaml_path);
  if (cfg.val.empty()) throw std::runtime_error("dataset YAML has no 'val': " + yaml_path);
  return cfg;
}

std::vector<std::string> list_images(const std::vector<std::string>& sources) {
  std::vector<std::string> out;
  for (const auto& src : sources) {
    const fs::path p(src);
    if (fs::is_directory(p)) {
      for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file() && is_image_file(e.path())) out.push_back(e.path().string());
    } else if (p.extension() == ".txt" && fs::is_regular_file(p)) {
      std::ifstream in(p);
      std::string line;
      while (std::getline(in, line)) {
        line.erase(line.find_last_not_of(" \r\t") + 1);
        if (line.empty()) continue;
        fs::path q(line);
        if (q.is_relative()) q = p.parent_path() / q;
        out.push_back(q.lexically_normal().string());
      }
    } else if (fs::is_regular_file(p) && is_image_file(p)) {
      out.push_back(p.string());
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
    : img_size_(img_size) {
  const auto files = list_images(sources);
  const size_t n = files.size();
  std::vector<ImageU8> images(n);
  std::vector<std::vector<LabelRow>> labels(n);
  std::vector<std::array<int, 2>> native(n);
  std::vector<char> ok(n, 0);
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next++) < n;) {
      std::string err;
      const std::string lp = label_path_for(files[i]);
      if (!parse_label_file(lp, nc, &labels[i], &err)) {
        log_warn("{}: skipping {}: bad label file {}: {}", split_name, files[i], lp, err);
        continue;
      }
      try {
        ImageU8 img = read_image(files[i]);
        native[i] = {img.w, img.h};
        const double r = static_cast<double>(img_size) / std::max(img.w, img.h);
        if (r != 1.0) {
          const int w = std::max(1, static_cast<int>(std::lround(img.w * r)));
          const int h = std::max(1, static_cast<int>(std::lround(img.h * r)));
          img = resize(img, w, h);
        }
        images[i] = std::move(img);
        ok[i] = 1;
      } catch (const std::exception& e) {
        log_warn("{}: skipping {}: {}", split_name, files[i], e.what());
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, threads); ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  for (size_t i = 0; i < n; ++i) {
    if (!ok[i]) continue;
    images_.push_back(std::move(images[i]));
    labels_.push_back(std::move(labels[i]));
    paths_.push_back(files[i]);
    native_.push_back(native[i]);
  }
  if (images_.empty()) throw std::runtime_error(split_name + ": no usable images in " + sources[0]);
  size_t skipped = n - images_.size();
  log_info("{}: {} images, {} instances cached in RAM ({} px){}", split_name, images_.size(), instances(), img_size,
           skipped ? fmt::format(", {} skipped", skipped) : std::string());
}

size_t Dataset::instances() const {
  size_t n = 0;
  for (const auto& l : labels_) n += l.size();
  return n;
}

}  // namespace yolo
