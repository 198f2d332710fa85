// HSV to RGB by hue sector: the one conversion behind the HSV augmentation
// (OpenCV's 8-bit HSV) and the shapes generator's random colours. Header-only,
// so make-shapes-dataset uses it without linking LibTorch.
#pragma once

#include <cmath>

namespace yolo {

// h6: hue in sectors [0, 6); s in [0, 1]; r, g, b come out in the units of v.
template <typename T>
void hsv_to_rgb(T h6, T s, T v, T* r, T* g, T* b) {
  const int sector = static_cast<int>(h6) % 6;
  const T f = h6 - std::floor(h6);
  const T p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  switch (sector) {
    case 0: *r = v, *g = t, *b = p; break;
    case 1: *r = q, *g = v, *b = p; break;
    case 2: *r = p, *g = v, *b = t; break;
    case 3: *r = p, *g = q, *b = v; break;
    case 4: *r = t, *g = p, *b = v; break;
    default: *r = v, *g = p, *b = q; break;
  }
}

}  // namespace yolo
