#include "data/mix.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>

namespace yolo {

void mixup(ImageU8& img, std::vector<PixelBox>& boxes, const ImageU8& img2, const std::vector<PixelBox>& boxes2,
           SampleRng& rng) {
  if (img.w != img2.w || img.h != img2.h) throw std::logic_error("mixup: images of different sizes");
  const double r = rng.beta(32.0, 32.0);
  uint8_t* a = img.px.data();
  const uint8_t* b = img2.px.data();
  for (size_t i = 0; i < img.px.size(); ++i) a[i] = static_cast<uint8_t>(a[i] * r + b[i] * (1 - r));
  boxes.insert(boxes.end(), boxes2.begin(), boxes2.end());
}

void copy_paste(ImageU8& img, std::vector<PixelBox>& boxes, double p, SampleRng& rng) {
  const size_t n = boxes.size();
  if (p <= 0 || n == 0) return;
  const int w = img.w, h = img.h;
  // random.sample(range(n), k): k distinct indices in random order.
  const size_t k = std::min(n, static_cast<size_t>(std::nearbyint(p * n)));
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  for (size_t i = 0; i < k; ++i) std::swap(order[i], order[i + rng.index(n - i)]);
  std::vector<uint8_t> mask(static_cast<size_t>(w) * h, 0);  // source pixels, before mirroring
  for (size_t t = 0; t < k; ++t) {
    const PixelBox l = boxes[order[t]];
    const PixelBox pasted = {l[0], w - l[3], l[2], w - l[1], l[4]};
    bool clear = true;
    for (const auto& b : boxes) {
      const float iw = std::min(pasted[3], b[3]) - std::max(pasted[1], b[1]);
      const float ih = std::min(pasted[4], b[4]) - std::max(pasted[2], b[2]);
      const float inter = std::max(iw, 0.f) * std::max(ih, 0.f);
      if (inter / ((b[3] - b[1]) * (b[4] - b[2]) + 1e-7f) >= 0.30f) {
        clear = false;
        break;
      }
    }
    if (!clear) continue;
    boxes.push_back(pasted);
    // The box's rectangle, filled as cv2.drawContours fills its corner polygon (edges included).
    const int x1 = std::clamp(static_cast<int>(l[1]), 0, w - 1), x2 = std::clamp(static_cast<int>(l[3]), 0, w - 1);
    const int y1 = std::clamp(static_cast<int>(l[2]), 0, h - 1), y2 = std::clamp(static_cast<int>(l[4]), 0, h - 1);
    for (int y = y1; y <= y2; ++y) std::memset(mask.data() + static_cast<size_t>(y) * w + x1, 1, x2 - x1 + 1);
  }
  // img[mirrored mask] = mirrored img: each masked pixel lands, mirrored, on the other side.
  const ImageU8 src = img;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      if (mask[static_cast<size_t>(y) * w + x]) std::memcpy(img.row(y) + (w - 1 - x) * 3, src.row(y) + x * 3, 3);
}

}  // namespace yolo
