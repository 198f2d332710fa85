#include <iostream>
#include "model/yolo.h"
int main(int argc, char** argv) {
  for (const char* n : {"yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x"}) {
    auto cfg = yolo::load_model_config(yolo::resolve_model_path(n));
    yolo::YoloModel m(cfg);
    std::cout << m->summary_line() << "\n";
  }
}
