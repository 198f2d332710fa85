// Training hyperparameters (YOLOv5's hyp.scratch-low.yaml defaults).
#pragma once

#include <string>

namespace yolo {

struct Hyp {
  double lr0 = 0.01, lrf = 0.01, momentum = 0.937, weight_decay = 0.0005;
  double warmup_epochs = 3.0, warmup_momentum = 0.8, warmup_bias_lr = 0.1;
  double box = 0.05, cls = 0.5, cls_pw = 1.0, obj = 1.0, obj_pw = 1.0, iou_t = 0.20, anchor_t = 4.0, fl_gamma = 0.0;
  double hsv_h = 0.015, hsv_s = 0.7, hsv_v = 0.4;
  double degrees = 0.0, translate = 0.1, scale = 0.5, shear = 0.0, perspective = 0.0;
  double flipud = 0.0, fliplr = 0.5, mosaic = 1.0, mixup = 0.0, copy_paste = 0.0;
};

// Reads a YOLOv5 hyp YAML on top of the defaults; unknown keys are an error
// (a typo must not silently fall back to a default).
Hyp load_hyp(const std::string& path);
Hyp parse_hyp(const std::string& yaml_text, const std::string& origin);
std::string hyp_to_yaml(const Hyp& h);

}  // namespace yolo
