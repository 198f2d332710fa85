// make-shapes-dataset: a YOLO-format dataset of coloured shapes on noisy
// backgrounds (circle, rectangle, triangle), with its dataset YAML.
// Each image is drawn from its own seeded generator, so the output does not
// depend on the number of threads.

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <fmt/os.h>
#include <stb_image_write.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "util/hsv.h"
#include "util/parallel_for.h"

namespace fs = std::filesystem;

namespace {

const char* kClassNames[] = {"circle", "rectangle", "triangle"};
constexpr int kNumClasses = 3;

struct Rng {
  std::mt19937_64 gen;
  explicit Rng(uint64_t seed) : gen(seed) {}
  double uniform(double a = 0.0, double b = 1.0) { return a + (b - a) * ((gen() >> 11) * 0x1.0p-53); }
  int integer(int a, int b) { return a + static_cast<int>(uniform() * (b - a + 1)) % (b - a + 1); }  // [a, b]
};

struct Image {
  int w, h;
  std::vector<uint8_t> px;  // RGB
  Image(int w_, int h_) : w(w_), h(h_), px(static_cast<size_t>(w_) * h_ * 3) {}
  void put(int x, int y, const uint8_t* c, float alpha = 1.f) {
    uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
    for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>(p[k] * (1 - alpha) + c[k] * alpha + 0.5f);
  }
};

struct Box {
  int cls;
  double x1, y1, x2, y2;
};

double iou(const Box& a, const Box& b) {
  const double iw = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
  const double ih = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
  if (iw <= 0 || ih <= 0) return 0;
  const double inter = iw * ih;
  return inter / ((a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter);
}

void random_colour(Rng& rng, uint8_t* c) {
  // Saturated-ish colours from HSV so shapes are not all grey.
  const double h = rng.uniform(0, 6), s = rng.uniform(0.35, 1.0), v = rng.uniform(0.3, 1.0);
  double r, g, b;
  yolo::hsv_to_rgb(h, s, v, &r, &g, &b);
  c[0] = static_cast<uint8_t>(r * 255), c[1] = static_cast<uint8_t>(g * 255), c[2] = static_cast<uint8_t>(b * 255);
}

// Background: a two-colour gradient, pixel noise and unlabelled clutter
// (thin lines and small blobs) so the detector must learn shape, not "any blob".
void draw_background(Image& img, Rng& rng) {
  uint8_t c0[3], c1[3];
  random_colour(rng, c0);
  random_colour(rng, c1);
  const double ang = rng.uniform(0, 2 * M_PI), ca = std::cos(ang), sa = std::sin(ang);
  const double noise = rng.uniform(4, 28);
  const double norm = std::abs(ca) * img.w + std::abs(sa) * img.h + 1;
  for (int y = 0; y < img.h; ++y)
    for (int x = 0; x < img.w; ++x) {
      double t = ((x - img.w / 2.0) * ca + (y - img.h / 2.0) * sa) / norm + 0.5;
      uint8_t* p = &img.px[(static_cast<size_t>(y) * img.w + x) * 3];
      for (int k = 0; k < 3; ++k) {
        double v = c0[k] * (1 - t) + c1[k] * t + rng.uniform(-noise, noise);
        p[k] = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    }
  const int clutter = rng.integer(0, 12);
  for (int i = 0; i < clutter; ++i) {
    uint8_t c[3];
    random_colour(rng, c);
    if (rng.uniform() < 0.6) {  // line segment, 1-3 px thick
      double x0 = rng.uniform(0, img.w), y0 = rng.uniform(0, img.h);
      double x1 = rng.uniform(0, img.w), y1 = rng.uniform(0, img.h);
      const int thick = rng.integer(1, 3);
      const int steps = static_cast<int>(std::hypot(x1 - x0, y1 - y0)) + 1;
      for (int s = 0; s <= steps; ++s) {
        const int cx = static_cast<int>(x0 + (x1 - x0) * s / steps), cy = static_cast<int>(y0 + (y1 - y0) * s / steps);
        for (int dy = 0; dy < thick; ++dy)
          for (int dx = 0; dx < thick; ++dx)
            if (cx + dx < img.w && cy + dy < img.h) img.put(cx + dx, cy + dy, c, 0.8f);
      }
    } else {  // small irregular blob (a few overlapping dots)
      const double bx = rng.uniform(0, img.w), by = rng.uniform(0, img.h);
      const double r = rng.uniform(1.5, std::max(2.0, img.w * 0.012));
      for (int d = 0; d < 4; ++d) {
        const double ox = bx + rng.uniform(-r, r), oy = by + rng.uniform(-r, r);
        for (int y = std::max(0, static_cast<int>(oy - r)); y <= std::min(img.h - 1, static_cast<int>(oy + r)); ++y)
          for (int x = std::max(0, static_cast<int>(ox - r)); x <= std::min(img.w - 1, static_cast<int>(ox + r)); ++x)
            if (std::hypot(x - ox, y - oy) <= r) img.put(x, y, c, 0.9f);
      }
    }
  }
}

// Draws one shape filled with colour c; returns its tight box.
Box draw_shape(Image& img, Rng& rng, int cls, double cx, double cy, double size, const uint8_t* c) {
  std::vector<std::pair<double, double>> poly;
  double rx = size / 2, ry = size / 2;
  if (cls == 0) {  // circle (slightly elliptical at most)
    ry = rx * rng.uniform(0.9, 1.1);
  } else if (cls == 1) {  // rotated rectangle, aspect 0.4..1
    const double a = rng.uniform(0, M_PI), w = size / 2, h = size / 2 * rng.uniform(0.4, 1.0);
    for (auto [sx, sy] : {std::pair{-1, -1}, {1, -1}, {1, 1}, {-1, 1}}) {
      const double px = sx * w, py = sy * h;
      poly.push_back({cx + px * std::cos(a) - py * std::sin(a), cy + px * std::sin(a) + py * std::cos(a)});
    }
  } else {  // triangle with jittered vertices on a circle
    const double a0 = rng.uniform(0, 2 * M_PI);
    for (int k = 0; k < 3; ++k) {
      const double a = a0 + k * 2 * M_PI / 3 + rng.uniform(-0.35, 0.35);
      poly.push_back({cx + size / 2 * std::cos(a), cy + size / 2 * std::sin(a)});
    }
  }
  Box b{cls, 0, 0, 0, 0};
  if (poly.empty()) {
    b.x1 = cx - rx, b.x2 = cx + rx, b.y1 = cy - ry, b.y2 = cy + ry;
  } else {
    b.x1 = b.x2 = poly[0].first, b.y1 = b.y2 = poly[0].second;
    for (auto [x, y] : poly) b.x1 = std::min(b.x1, x), b.x2 = std::max(b.x2, x), b.y1 = std::min(b.y1, y), b.y2 = std::max(b.y2, y);
  }
  const int x0 = std::max(0, static_cast<int>(std::floor(b.x1))), x1 = std::min(img.w - 1, static_cast<int>(std::ceil(b.x2)));
  const int y0 = std::max(0, static_cast<int>(std::floor(b.y1))), y1 = std::min(img.h - 1, static_cast<int>(std::ceil(b.y2)));
  const double shade = rng.uniform(0.0, 0.35);  // a gentle gradient across the shape
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) {
      const double px = x + 0.5, py = y + 0.5;
      bool inside;
      if (poly.empty()) {
        const double dx = (px - cx) / rx, dy = (py - cy) / ry;
        inside = dx * dx + dy * dy <= 1.0;
      } else {  // convex polygon: same side of every edge
        int pos = 0, neg = 0;
        for (size_t k = 0; k < poly.size(); ++k) {
          auto [ax, ay] = poly[k];
          auto [bx, by] = poly[(k + 1) % poly.size()];
          const double cr = (bx - ax) * (py - ay) - (by - ay) * (px - ax);
          (cr >= 0 ? pos : neg)++;
        }
        inside = pos == 0 || neg == 0;
      }
      if (!inside) continue;
      const double t = 1 - shade * (py - b.y1) / std::max(1.0, b.y2 - b.y1);
      const uint8_t cc[3] = {static_cast<uint8_t>(c[0] * t), static_cast<uint8_t>(c[1] * t), static_cast<uint8_t>(c[2] * t)};
      img.put(x, y, cc);
    }
  b.x1 = std::clamp(b.x1, 0.0, static_cast<double>(img.w));
  b.x2 = std::clamp(b.x2, 0.0, static_cast<double>(img.w));
  b.y1 = std::clamp(b.y1, 0.0, static_cast<double>(img.h));
  b.y2 = std::clamp(b.y2, 0.0, static_cast<double>(img.h));
  return b;
}

void make_image(const fs::path& img_path, const fs::path& label_path, int S, uint64_t seed) {
  Rng rng(seed);
  int w = S, h = S;
  if (rng.uniform() < 0.5) {  // half the images are not square, to exercise letterboxing
    const int other = static_cast<int>(S * rng.uniform(0.7, 1.0));
    (rng.uniform() < 0.5 ? w : h) = std::max(32, other);
  }
  Image img(w, h);
  draw_background(img, rng);
  std::vector<Box> boxes;
  const int n = rng.integer(1, 8);
  const int side = std::min(w, h);
  for (int i = 0, tries = 0; i < n && tries < 50; ++tries) {
    const int cls = rng.integer(0, kNumClasses - 1);
    const double size = side * std::exp(rng.uniform(std::log(0.08), std::log(0.4)));
    const double cx = rng.uniform(size * 0.3, w - size * 0.3), cy = rng.uniform(size * 0.3, h - size * 0.3);
    Box probe{cls, cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2};
    bool ok = true;
    for (const auto& b : boxes) ok = ok && iou(b, probe) < 0.35;  // overlaps, but each stays visible
    if (!ok) continue;
    // A colour that stands out from the background under the shape's centre
    // (a few tries; low-contrast shapes still happen, as in real data).
    uint8_t c[3];
    const uint8_t* bg = &img.px[(static_cast<size_t>(std::min(h - 1, int(cy))) * w + std::min(w - 1, int(cx))) * 3];
    for (int attempt = 0; attempt < 8; ++attempt) {
      random_colour(rng, c);
      if (std::abs(c[0] - bg[0]) + std::abs(c[1] - bg[1]) + std::abs(c[2] - bg[2]) >= 150) break;
    }
    Box b = draw_shape(img, rng, cls, cx, cy, size, c);
    if (b.x2 - b.x1 < 3 || b.y2 - b.y1 < 3) continue;
    boxes.push_back(b);
    ++i;
  }
  if (!stbi_write_jpg(img_path.c_str(), w, h, 3, img.px.data(), 92))
    throw std::runtime_error("cannot write " + img_path.string());
  auto out = fmt::output_file(label_path.string());
  for (const auto& b : boxes)
    out.print("{} {:.6f} {:.6f} {:.6f} {:.6f}\n", b.cls, (b.x1 + b.x2) / 2 / w, (b.y1 + b.y2) / 2 / h,
              (b.x2 - b.x1) / w, (b.y2 - b.y1) / h);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Generate a YOLO-format dataset of coloured shapes (circle, rectangle, triangle)"};
  std::string out_dir;
  int n_train = 1000, n_val = 200, img_size = 320, threads = 0;
  uint64_t seed = 0;
  app.add_option("--out", out_dir, "output directory")->required();
  app.add_option("--train", n_train, "number of training images")->check(CLI::NonNegativeNumber);
  app.add_option("--val", n_val, "number of validation images")->check(CLI::NonNegativeNumber);
  app.add_option("--img", img_size, "image size (long side, pixels)")->check(CLI::Range(32, 8192));
  app.add_option("--seed", seed, "random seed");
  app.add_option("--threads", threads, "worker threads (0: all cores)");
  CLI11_PARSE(app, argc, argv);

  try {
    const fs::path root = fs::absolute(out_dir).lexically_normal();
    for (const char* split : {"train", "val"}) {
      fs::create_directories(root / "images" / split);
      fs::create_directories(root / "labels" / split);
    }
    if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
    struct Job {
      std::string split;
      int index;
    };
    std::vector<Job> jobs;
    for (int i = 0; i < n_train; ++i) jobs.push_back({"train", i});
    for (int i = 0; i < n_val; ++i) jobs.push_back({"val", i});
    std::atomic<bool> failed{false};
    std::string error;
    std::mutex error_mutex;
    yolo::parallel_for(jobs.size(), threads, [&](size_t j) {
      if (failed) return;
      const auto& job = jobs[j];
      const std::string stem = fmt::format("{:06d}", job.index);
      // Distinct streams per split and image.
      const uint64_t s = seed * 0x9E3779B97F4A7C15ull + (job.split == "val" ? 0x5bd1e995ull << 32 : 0) + job.index;
      try {
        make_image(root / "images" / job.split / (stem + ".jpg"), root / "labels" / job.split / (stem + ".txt"),
                   img_size, s);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(error_mutex);
        error = e.what();
        failed = true;
      }
    });
    if (failed) throw std::runtime_error(error);

    auto yaml = fmt::output_file((root / "shapes.yaml").string());
    yaml.print("# Coloured shapes, generated by make-shapes-dataset --train {} --val {} --img {} --seed {}\n", n_train,
               n_val, img_size, seed);
    yaml.print("path: {}\ntrain: images/train\nval: images/val\n\nnames:\n", root.string());
    for (int c = 0; c < kNumClasses; ++c) yaml.print("  {}: {}\n", c, kClassNames[c]);
    yaml.close();
    fmt::print(stderr, "make-shapes-dataset: {} train + {} val images ({} px) in {}; dataset YAML {}\n", n_train, n_val,
               img_size, root.string(), (root / "shapes.yaml").string());
  } catch (const std::exception& e) {
    fmt::print(stderr, "make-shapes-dataset: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
