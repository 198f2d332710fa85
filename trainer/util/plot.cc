#include "util/plot.h"

#include <fmt/core.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb_easy_font.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "data/image.h"

namespace yolo {

namespace {

struct Canvas {
  ImageU8 img;
  void px(int x, int y, const uint8_t* c) {
    if (x < 0 || y < 0 || x >= img.w || y >= img.h) return;
    std::copy(c, c + 3, img.row(y) + x * 3);
  }
  void rect(int x0, int y0, int x1, int y1, const uint8_t* c) {
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) px(x, y, c);
  }
  void line(double x0, double y0, double x1, double y1, const uint8_t* c, int thick = 2) {
    const int steps = static_cast<int>(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
    for (int s = 0; s <= steps; ++s) {
      const double t = static_cast<double>(s) / steps;
      const int x = static_cast<int>(std::lround(x0 + (x1 - x0) * t)), y = static_cast<int>(std::lround(y0 + (y1 - y0) * t));
      rect(x - thick / 2, y - thick / 2, x - thick / 2 + thick, y - thick / 2 + thick, c);
    }
  }
  // stb_easy_font emits axis-aligned quads; fill each, scaled.
  void text(int x, int y, const std::string& s, const uint8_t* c, int scale = 1) {
    static thread_local char buf[60000];
    const int quads = stb_easy_font_print(0, 0, const_cast<char*>(s.c_str()), nullptr, buf, sizeof(buf));
    const float* v = reinterpret_cast<const float*>(buf);
    for (int q = 0; q < quads; ++q, v += 16) {  // 4 vertices x (x, y, z, color)
      const float qx0 = v[0], qy0 = v[1], qx1 = v[8], qy1 = v[9];
      rect(x + static_cast<int>(qx0 * scale), y + static_cast<int>(qy0 * scale), x + static_cast<int>(qx1 * scale),
           y + static_cast<int>(qy1 * scale), c);
    }
  }
};

std::string tick(double v) { return fmt::format("{:.3g}", v); }

}  // namespace

void plot_grid(const std::string& png_path, const std::vector<Series>& panels, int cols, int pw, int ph) {
  const int rows = static_cast<int>((panels.size() + cols - 1) / cols);
  Canvas cv{ImageU8(cols * pw, rows * ph, 255)};
  const uint8_t black[3] = {30, 30, 30}, grey[3] = {200, 200, 200}, blue[3] = {31, 119, 180}, orange[3] = {255, 127, 14};
  for (size_t k = 0; k < panels.size(); ++k) {
    const auto& s = panels[k];
    const int ox = static_cast<int>(k % cols) * pw, oy = static_cast<int>(k / cols) * ph;
    const int L = ox + 48, R = ox + pw - 12, T = oy + 26, B = oy + ph - 26;
    const int tw = stb_easy_font_width(const_cast<char*>(s.title.c_str()));
    cv.text(ox + (pw - tw * 2) / 2, oy + 6, s.title, black, 2);
    cv.line(L, B, R, B, grey, 1);
    cv.line(L, T, L, B, grey, 1);
    if (s.y.empty()) continue;
    double ymin = *std::min_element(s.y.begin(), s.y.end()), ymax = *std::max_element(s.y.begin(), s.y.end());
    if (!std::isfinite(ymin) || !std::isfinite(ymax)) continue;
    if (ymax - ymin < 1e-12) ymax = ymin + (std::abs(ymin) > 0 ? std::abs(ymin) * 0.1 : 1.0);
    const double xmin = s.x.front(), xmax = std::max(s.x.back(), xmin + 1);
    auto X = [&](double x) { return L + (x - xmin) / (xmax - xmin) * (R - L); };
    auto Y = [&](double y) { return B - (y - ymin) / (ymax - ymin) * (B - T); };
    cv.text(ox + 2, T - 4, tick(ymax), black);
    cv.text(ox + 2, B - 6, tick(ymin), black);
    cv.text(L, B + 6, tick(xmin), black);
    cv.text(R - 20, B + 6, tick(xmax), black);
    for (size_t i = 0; i < s.y.size(); ++i) {
      if (i) cv.line(X(s.x[i - 1]), Y(s.y[i - 1]), X(s.x[i]), Y(s.y[i]), blue, 2);
      cv.rect(static_cast<int>(X(s.x[i])) - 2, static_cast<int>(Y(s.y[i])) - 2, static_cast<int>(X(s.x[i])) + 3,
              static_cast<int>(Y(s.y[i])) + 3, blue);
    }
    // Smoothed curve (moving average over ~10% of the points), as YOLOv5 overlays.
    if (s.y.size() >= 5) {
      const int half = std::max(1, static_cast<int>(s.y.size() / 20));
      std::vector<double> sm(s.y.size());
      for (size_t i = 0; i < s.y.size(); ++i) {
        double acc = 0;
        int n = 0;
        for (int d = -half; d <= half; ++d) {
          const long j = static_cast<long>(i) + d;
          if (j >= 0 && j < static_cast<long>(s.y.size())) acc += s.y[j], ++n;
        }
        sm[i] = acc / n;
      }
      for (size_t i = 1; i < sm.size(); ++i) cv.line(X(s.x[i - 1]), Y(sm[i - 1]), X(s.x[i]), Y(sm[i]), orange, 1);
    }
  }
  write_png(png_path, cv.img);
}

void plot_results_csv(const std::string& csv_path, const std::string& png_path) {
  std::ifstream in(csv_path);
  if (!in) return;
  std::string line;
  std::vector<std::string> header;
  std::vector<std::vector<double>> cols;
  auto split = [](const std::string& l) {
    std::vector<std::string> out;
    std::stringstream ss(l);
    std::string cell;
    while (std::getline(ss, cell, ',')) {
      cell.erase(0, cell.find_first_not_of(' '));
      out.push_back(cell);
    }
    return out;
  };
  if (!std::getline(in, line)) return;
  header = split(line);
  cols.resize(header.size());
  while (std::getline(in, line)) {
    auto cells = split(line);
    for (size_t i = 0; i < cells.size() && i < cols.size(); ++i) cols[i].push_back(std::atof(cells[i].c_str()));
  }
  auto col = [&](const std::string& name) -> const std::vector<double>& {
    static const std::vector<double> empty;
    for (size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return cols[i];
    return empty;
  };
  const std::vector<std::string> order = {"train/box_loss",    "train/obj_loss",  "train/cls_loss",
                                          "metrics/precision", "metrics/recall",  "val/box_loss",
                                          "val/obj_loss",      "val/cls_loss",    "metrics/mAP_0.5",
                                          "metrics/mAP_0.5:0.95"};
  std::vector<Series> panels;
  for (const auto& name : order) panels.push_back({name, col("epoch"), col(name)});
  plot_grid(png_path, panels);
}

}  // namespace yolo
