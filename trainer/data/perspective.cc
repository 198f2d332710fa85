#include "data/perspective.h"

#include <algorithm>
#include <cmath>

namespace yolo {

namespace {

constexpr uint8_t kPad = 114;

Mat3 eye() { return {1, 0, 0, 0, 1, 0, 0, 0, 1}; }

Mat3 mul(const Mat3& a, const Mat3& b) {
  Mat3 c{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 3; ++k) c[i * 3 + j] += a[i * 3 + k] * b[k * 3 + j];
  return c;
}

Mat3 inverse(const Mat3& m) {
  const double a = m[0], b = m[1], c = m[2], d = m[3], e = m[4], f = m[5], g = m[6], h = m[7], i = m[8];
  const double A = e * i - f * h, B = -(d * i - f * g), C = d * h - e * g;
  const double det = a * A + b * B + c * C;
  return {A / det, -(b * i - c * h) / det, (b * f - c * e) / det, B / det, (a * i - c * g) / det,
          -(a * f - c * d) / det, C / det, -(a * h - b * g) / det, (a * e - b * d) / det};
}

// One output pixel from source position (sx, sy): bilinear, outside taps 114.
void sample(const ImageU8& src, double sx, double sy, uint8_t* o) {
  const int sw = src.w, sh = src.h;
  const double fx = std::floor(sx), fy = std::floor(sy);
  if (!(fx >= -1 && fy >= -1 && fx < sw && fy < sh)) {  // also catches NaN
    o[0] = o[1] = o[2] = kPad;
    return;
  }
  const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
  const float wx = static_cast<float>(sx - fx), wy = static_cast<float>(sy - fy);
  const float w00 = (1 - wx) * (1 - wy), w01 = wx * (1 - wy), w10 = (1 - wx) * wy, w11 = wx * wy;
  if (x0 >= 0 && y0 >= 0 && x0 + 1 < sw && y0 + 1 < sh) {
    const uint8_t* p0 = src.row(y0) + x0 * 3;
    const uint8_t* p1 = p0 + sw * 3;
    for (int k = 0; k < 3; ++k)
      o[k] = static_cast<uint8_t>(w00 * p0[k] + w01 * p0[k + 3] + w10 * p1[k] + w11 * p1[k + 3] + 0.5f);
    return;
  }
  auto tap = [&](int xx, int yy, int k) -> float {
    return (xx < 0 || yy < 0 || xx >= sw || yy >= sh) ? kPad : src.row(yy)[xx * 3 + k];
  };
  for (int k = 0; k < 3; ++k)
    o[k] = static_cast<uint8_t>(w00 * tap(x0, y0, k) + w01 * tap(x0 + 1, y0, k) + w10 * tap(x0, y0 + 1, k) +
                                w11 * tap(x0 + 1, y0 + 1, k) + 0.5f);
}

}  // namespace

PerspectiveWarp draw_perspective(int in_w, int in_h, const Hyp& hyp, int border, SampleRng& rng) {
  PerspectiveWarp w;
  w.height = in_h + border * 2;
  w.width = in_w + border * 2;
  Mat3 C = eye();
  C[2] = -in_w / 2.0;
  C[5] = -in_h / 2.0;
  Mat3 P = eye();
  if (hyp.perspective != 0) {  // drawn only when used, so other runs keep their random streams
    P[6] = rng.uniform(-hyp.perspective, hyp.perspective);
    P[7] = rng.uniform(-hyp.perspective, hyp.perspective);
    w.projective = true;
  }
  Mat3 R = eye();
  const double a = rng.uniform(-hyp.degrees, hyp.degrees) * M_PI / 180;
  const double s = rng.uniform(1 - hyp.scale, 1 + hyp.scale);
  // cv2.getRotationMatrix2D(center=(0,0), angle, scale)
  R[0] = s * std::cos(a), R[1] = s * std::sin(a), R[3] = -s * std::sin(a), R[4] = s * std::cos(a);
  Mat3 S = eye();
  S[1] = std::tan(rng.uniform(-hyp.shear, hyp.shear) * M_PI / 180);
  S[3] = std::tan(rng.uniform(-hyp.shear, hyp.shear) * M_PI / 180);
  Mat3 T = eye();
  T[2] = rng.uniform(0.5 - hyp.translate, 0.5 + hyp.translate) * w.width;
  T[5] = rng.uniform(0.5 - hyp.translate, 0.5 + hyp.translate) * w.height;
  w.M = mul(T, mul(S, mul(R, mul(P, C))));
  w.scale = s;
  return w;
}

ImageU8 warp_image(const ImageU8& src, const PerspectiveWarp& warp) {
  const Mat3 inv = inverse(warp.M);  // destination pixel -> source position
  ImageU8 out(warp.width, warp.height);
  for (int y = 0; y < warp.height; ++y) {
    uint8_t* o = out.row(y);
    double X = inv[1] * y + inv[2], Y = inv[4] * y + inv[5], W = inv[7] * y + inv[8];
    for (int x = 0; x < warp.width; ++x, X += inv[0], Y += inv[3], W += inv[6], o += 3) {
      if (warp.projective) {
        sample(src, X / W, Y / W, o);
      } else {
        sample(src, X, Y, o);
      }
    }
  }
  return out;
}

std::vector<PixelBox> warp_boxes(const std::vector<PixelBox>& boxes, const PerspectiveWarp& warp) {
  const Mat3& M = warp.M;
  const double width = warp.width, height = warp.height, s = warp.scale;
  std::vector<PixelBox> kept;
  for (const auto& b : boxes) {
    const double xs[4] = {b[1], b[3], b[1], b[3]}, ys[4] = {b[2], b[4], b[4], b[2]};
    double x1 = 1e18, y1 = 1e18, x2 = -1e18, y2 = -1e18;
    for (int k = 0; k < 4; ++k) {
      double X = M[0] * xs[k] + M[1] * ys[k] + M[2], Y = M[3] * xs[k] + M[4] * ys[k] + M[5];
      if (warp.projective) {
        const double W = M[6] * xs[k] + M[7] * ys[k] + M[8];
        X /= W, Y /= W;
      }
      x1 = std::min(x1, X), x2 = std::max(x2, X), y1 = std::min(y1, Y), y2 = std::max(y2, Y);
    }
    x1 = std::clamp(x1, 0.0, width), x2 = std::clamp(x2, 0.0, width);
    y1 = std::clamp(y1, 0.0, height), y2 = std::clamp(y2, 0.0, height);
    const double w1 = (b[3] - b[1]) * s, h1 = (b[4] - b[2]) * s, w2 = x2 - x1, h2 = y2 - y1;
    const double ar = std::max(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16));
    if (w2 > 2 && h2 > 2 && w2 * h2 / (w1 * h1 + 1e-16) > 0.1 && ar < 100)
      kept.push_back({b[0], float(x1), float(y1), float(x2), float(y2)});
  }
  return kept;
}

ImageU8 random_perspective(const ImageU8& img, std::vector<PixelBox>* boxes, const Hyp& hyp, int border,
                           SampleRng& rng) {
  const PerspectiveWarp warp = draw_perspective(img.w, img.h, hyp, border, rng);
  *boxes = warp_boxes(*boxes, warp);
  return warp_image(img, warp);
}

}  // namespace yolo
