#include "data/dataset_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <utility>

#include "util/log.h"

namespace fs = std::filesystem;

namespace yolo {

namespace {

// pathlib's resolve(): absolute, '.' and '..' folded, symlinks of the existing part followed.
std::string resolve(const fs::path& p) { return fs::weakly_canonical(fs::absolute(p)).string(); }

std::vector<std::string> resolve_split(const YAML::Node& n, const fs::path& base, const std::string& yaml_path,
                                       const char* key) {
  std::vector<std::string> out;
  if (!n || n.IsNull()) return out;
  try {
    if (n.IsSequence()) {
      for (const auto& x : n) out.push_back(resolve(base / x.as<std::string>()));
    } else {
      const std::string s = n.as<std::string>();
      if (s.empty()) return out;
      fs::path p = base / s;
      if (!fs::exists(p) && s.rfind("../", 0) == 0) p = base / s.substr(3);
      out.push_back(resolve(p));
    }
  } catch (const YAML::Exception&) {
    throw std::runtime_error("dataset YAML " + yaml_path + ": '" + key + "' must be a path or a list of paths");
  }
  return out;
}

std::vector<std::string> read_names(const YAML::Node& names, const std::string& yaml_path) {
  std::vector<std::string> out;
  if (names.IsSequence()) {
    for (const auto& n : names) out.push_back(n.as<std::string>());
  } else if (names.IsMap()) {
    std::vector<std::pair<int, std::string>> kv;
    for (const auto& n : names) {
      int key = 0;
      if (!YAML::convert<int>::decode(n.first, key))
        throw std::runtime_error("dataset YAML " + yaml_path + ": 'names' keys must be integers, i.e. 2: car");
      kv.emplace_back(key, n.second.as<std::string>());
    }
    std::sort(kv.begin(), kv.end());
    for (size_t i = 0; i < kv.size(); ++i) {
      if (kv[i].first != static_cast<int>(i))
        throw std::runtime_error("dataset YAML " + yaml_path + ": 'names' keys must be 0..nc-1");
      out.push_back(kv[i].second);
    }
  }
  return out;
}

}  // namespace

const std::vector<std::string>& split_for_task(const DatasetConfig& cfg, const std::string& task) {
  if (task == "train") return cfg.train;
  if (task == "val") return cfg.val;
  if (task == "test") {
    if (cfg.test.empty()) throw std::runtime_error("--task test: the dataset YAML " + cfg.yaml_path + " has no 'test'");
    return cfg.test;
  }
  if (task == "speed" || task == "study")
    throw std::runtime_error("--task " + task + ": val.py's benchmark tasks are not implemented (train, val or test)");
  throw std::runtime_error("--task " + task + ": unknown task (train, val or test)");
}

DatasetConfig load_dataset_config(const std::string& yaml_path) {
  return load_dataset_config(yaml_path, fs::current_path().string());
}

DatasetConfig load_dataset_config(const std::string& yaml_path, const std::string& base_dir) {
  if (!fs::exists(yaml_path)) throw std::runtime_error("dataset YAML not found: " + yaml_path);
  YAML::Node root;
  try {
    root = YAML::LoadFile(yaml_path);
  } catch (const YAML::Exception& e) {
    throw std::runtime_error("cannot parse dataset YAML " + yaml_path + ": " + e.what());
  }
  for (const char* key : {"train", "val", "names"})
    if (!root[key]) throw std::runtime_error("dataset YAML " + yaml_path + ": '" + key + "' field missing");
  DatasetConfig cfg;
  cfg.yaml_path = yaml_path;
  cfg.names = read_names(root["names"], yaml_path);
  if (cfg.names.empty()) throw std::runtime_error("dataset YAML has no class names: " + yaml_path);
  if (root["nc"]) {
    int nc = -1;
    if (!YAML::convert<int>::decode(root["nc"], nc) || nc != cfg.nc())
      log_warn("{}: nc: {} does not match the {} names; using nc = {} (as YOLOv5 does)", yaml_path,
               root["nc"].Scalar(), cfg.nc(), cfg.nc());
  }
  const std::string path = root["path"] && !root["path"].IsNull() ? root["path"].as<std::string>() : "";
  const fs::path base = fs::path(path).is_absolute() ? fs::path(path) : fs::path(base_dir) / path;
  cfg.root = resolve(base);
  cfg.train = resolve_split(root["train"], cfg.root, yaml_path, "train");
  cfg.val = resolve_split(root["val"], cfg.root, yaml_path, "val");
  cfg.test = resolve_split(root["test"], cfg.root, yaml_path, "test");
  if (cfg.train.empty()) throw std::runtime_error("dataset YAML has no 'train': " + yaml_path);
  if (cfg.val.empty()) throw std::runtime_error("dataset YAML has no 'val': " + yaml_path);
  return cfg;
}

}  // namespace yolo
