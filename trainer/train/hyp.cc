#include "train/hyp.h"

#include <fmt/core.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

namespace yolo {

namespace {

std::vector<std::pair<const char*, double Hyp::*>> fields() {
  return {{"lr0", &Hyp::lr0},
          {"lrf", &Hyp::lrf},
          {"momentum", &Hyp::momentum},
          {"weight_decay", &Hyp::weight_decay},
          {"warmup_epochs", &Hyp::warmup_epochs},
          {"warmup_momentum", &Hyp::warmup_momentum},
          {"warmup_bias_lr", &Hyp::warmup_bias_lr},
          {"box", &Hyp::box},
          {"cls", &Hyp::cls},
          {"cls_pw", &Hyp::cls_pw},
          {"obj", &Hyp::obj},
          {"obj_pw", &Hyp::obj_pw},
          {"iou_t", &Hyp::iou_t},
          {"anchor_t", &Hyp::anchor_t},
          {"fl_gamma", &Hyp::fl_gamma},
          {"hsv_h", &Hyp::hsv_h},
          {"hsv_s", &Hyp::hsv_s},
          {"hsv_v", &Hyp::hsv_v},
          {"degrees", &Hyp::degrees},
          {"translate", &Hyp::translate},
          {"scale", &Hyp::scale},
          {"shear", &Hyp::shear},
          {"perspective", &Hyp::perspective},
          {"flipud", &Hyp::flipud},
          {"fliplr", &Hyp::fliplr},
          {"mosaic", &Hyp::mosaic},
          {"mixup", &Hyp::mixup},
          {"copy_paste", &Hyp::copy_paste}};
}

}  // namespace

Hyp parse_hyp(const std::string& yaml_text, const std::string& origin) {
  Hyp h;
  YAML::Node root = YAML::Load(yaml_text);
  if (!root.IsMap()) throw std::runtime_error("hyp file is not a mapping: " + origin);
  auto fs = fields();
  for (const auto& kv : root) {
    const auto key = kv.first.as<std::string>();
    bool known = false;
    for (const auto& [name, member] : fs) {
      if (key == name) {
        h.*member = kv.second.as<double>();
        known = true;
      }
    }
    if (!known) throw std::runtime_error("unknown hyperparameter '" + key + "' in " + origin);
  }
  return h;
}

Hyp load_hyp(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read hyp file: " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_hyp(ss.str(), path);
}

std::string hyp_to_yaml(const Hyp& h) {
  std::string out;
  for (const auto& [name, member] : fields()) out += fmt::format("{}: {}\n", name, h.*member);
  return out;
}

}  // namespace yolo
