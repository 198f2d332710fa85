// The dataset YAML (path, train, val, test, names), resolved as YOLOv5 v7.0's
// check_dataset resolves it.
#pragma once

#include <string>
#include <vector>

namespace yolo {

struct DatasetConfig {
  std::string yaml_path;
  std::string root;                            // `path`, absolute
  std::vector<std::string> train, val, test;   // absolute (dirs, .txt lists or images); test may be empty
  std::vector<std::string> names;
  int nc() const { return static_cast<int>(names.size()); }
};

// A relative `path` (or none: ".") is taken from `base_dir`, which stands in
// for YOLOv5's ROOT (its checkout, where train.py runs); the tools pass the
// working directory. train/val/test are relative to `path`; a single entry
// starting with "../" that does not exist is retried without it, as YOLOv5
// does. nc always follows names; a different `nc` in the file is a warning.
DatasetConfig load_dataset_config(const std::string& yaml_path, const std::string& base_dir);
DatasetConfig load_dataset_config(const std::string& yaml_path);  // base_dir: the working directory

// The sources of val.py's --task: train, val or test (an error when the YAML
// has no test). Its benchmark tasks (speed, study) and anything else are
// refused with an error naming the task.
const std::vector<std::string>& split_for_task(const DatasetConfig& cfg, const std::string& task);

}  // namespace yolo
