// results.png: YOLOv5's 2x5 grid of training curves, drawn into an RGB buffer
// (lines and stb_easy_font text) and written with stb_image_write. A plotting
// library would be a large dependency for ten small line charts.
#pragma once

#include <string>
#include <vector>

namespace yolo {

struct Series {
  std::string title;
  std::vector<double> x, y;
};

// Panels are laid out row-major, `cols` per row.
void plot_grid(const std::string& png_path, const std::vector<Series>& panels, int cols = 5, int panel_w = 300,
               int panel_h = 250);

// Reads results.csv (as written by the trainer) and plots it.
void plot_results_csv(const std::string& csv_path, const std::string& png_path);

}  // namespace yolo
