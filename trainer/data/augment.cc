#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "util/hsv.h"

namespace yolo {

namespace {

constexpr uint8_t kPad = 114;

// 3x3 row-major matrix helpers for the affine chain.
using Mat3 = std::array<double, 9>;
Mat3 eye() { return {1, 0, 0, 0, 1, 0, 0, 0, 1}; }
Mat3 mul(const Mat3& a, const Mat3& b) {
  Mat3 c{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 3; ++k) c[i * 3 + j] += a[i * 3 + k] * b[k * 3 + j];
  return c;
}

// Bilinear affine warp with a constant 114 border (cv2.warpAffine's
// defaults as YOLOv5 calls it). M maps source to destination.
ImageU8 warp_affine(const ImageU8& src, const Mat3& M, int out_w, int out_h) {
  // Invert the 2x3 affine part.
  const double a = M[0], b = M[1], c = M[2], d = M[3], e = M[4], f = M[5];
  const double det = a * e - b * d;
  const double ia = e / det, ib = -b / det, id = -d / det, ie = a / det;
  const double ic = -(ia * c + ib * f), iff = -(id * c + ie * f);
  ImageU8 out(out_w, out_h);
  const int sw = src.w, sh = src.h;
  for (int y = 0; y < out_h; ++y) {
    uint8_t* o = out.row(y);
    double sx = ib * y + ic, sy = ie * y + iff;
    for (int x = 0; x < out_w; ++x, sx += ia, sy += id, o += 3) {
      const double fx = std::floor(sx), fy = std::floor(sy);
      const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
      if (x0 < -1 || y0 < -1 || x0 >= sw || y0 >= sh) {
        o[0] = o[1] = o[2] = kPad;
        continue;
      }
      const float wx = static_cast<float>(sx - fx), wy = static_cast<float>(sy - fy);
      const float w00 = (1 - wx) * (1 - wy), w01 = wx * (1 - wy), w10 = (1 - wx) * wy, w11 = wx * wy;
      if (x0 >= 0 && y0 >= 0 && x0 + 1 < sw && y0 + 1 < sh) {
        const uint8_t* p0 = src.row(y0) + x0 * 3;
        const uint8_t* p1 = p0 + sw * 3;
        for (int k = 0; k < 3; ++k)
          o[k] = static_cast<uint8_t>(w00 * p0[k] + w01 * p0[k + 3] + w10 * p1[k] + w11 * p1[k + 3] + 0.5f);
      } else {  // edge: outside taps read the border value
        auto tap = [&](int xx, int yy, int k) -> float {
          return (xx < 0 || yy < 0 || xx >= sw || yy >= sh) ? kPad : src.row(yy)[xx * 3 + k];
        };
        for (int k = 0; k < 3; ++k)
          o[k] = static_cast<uint8_t>(w00 * tap(x0, y0, k) + w01 * tap(x0 + 1, y0, k) + w10 * tap(x0, y0 + 1, k) +
                                      w11 * tap(x0 + 1, y0 + 1, k) + 0.5f);
      }
    }
  }
  return out;
}

void flip_lr(ImageU8& img) {
  for (int y = 0; y < img.h; ++y) {
    uint8_t* r = img.row(y);
    for (int i = 0, j = img.w - 1; i < j; ++i, --j)
      for (int k = 0; k < 3; ++k) std::swap(r[i * 3 + k], r[j * 3 + k]);
  }
}

void flip_ud(ImageU8& img) {
  std::vector<uint8_t> tmp(static_cast<size_t>(img.w) * 3);
  for (int i = 0, j = img.h - 1; i < j; ++i, --j) {
    std::memcpy(tmp.data(), img.row(i), tmp.size());
    std::memcpy(img.row(i), img.row(j), tmp.size());
    std::memcpy(img.row(j), tmp.data(), tmp.size());
  }
}

}  // namespace

std::vector<PixelBox> pixel_boxes(const std::vector<LabelRow>& labels, float w, float h, float padw, float padh) {
  std::vector<PixelBox> out;
  out.reserve(labels.size());
  for (const auto& l : labels)
    out.push_back({l[0], w * (l[1] - l[3] / 2) + padw, h * (l[2] - l[4] / 2) + padh, w * (l[1] + l[3] / 2) + padw,
                   h * (l[2] + l[4] / 2) + padh});
  return out;
}

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c) {
  // splitmix64 over the three inputs: nearby (epoch, position) pairs give
  // unrelated streams.
  auto mix = [](uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  return mix(mix(mix(a) ^ b) ^ c);
}

ImageU8 letterbox(const ImageU8& img, int size, bool scaleup, Letterbox* info) {
  double r = std::min(static_cast<double>(size) / img.h, static_cast<double>(size) / img.w);
  if (!scaleup) r = std::min(r, 1.0);
  const int nw = static_cast<int>(std::lround(img.w * r)), nh = static_cast<int>(std::lround(img.h * r));
  const double dw = (size - nw) / 2.0, dh = (size - nh) / 2.0;
  const int top = static_cast<int>(std::lround(dh - 0.1)), left = static_cast<int>(std::lround(dw - 0.1));
  ImageU8 resized = (nw == img.w && nh == img.h) ? img : resize(img, nw, nh);
  ImageU8 out(size, size, kPad);
  for (int y = 0; y < nh && top + y < size; ++y)
    std::memcpy(out.row(top + y) + left * 3, resized.row(y), static_cast<size_t>(std::min(nw, size - left)) * 3);
  if (info) *info = {static_cast<float>(r), static_cast<float>(left), static_cast<float>(top), nw, nh};
  return out;
}

ImageU8 random_perspective(const ImageU8& img, std::vector<PixelBox>* boxes, const Hyp& hyp, int border,
                           SampleRng& rng) {
  const int height = img.h + border * 2, width = img.w + border * 2;
  Mat3 C = eye();
  C[2] = -img.w / 2.0;
  C[5] = -img.h / 2.0;
  Mat3 R = eye();
  const double a = rng.uniform(-hyp.degrees, hyp.degrees) * M_PI / 180;
  const double s = rng.uniform(1 - hyp.scale, 1 + hyp.scale);
  // cv2.getRotationMatrix2D(center=(0,0), angle, scale)
  R[0] = s * std::cos(a), R[1] = s * std::sin(a), R[3] = -s * std::sin(a), R[4] = s * std::cos(a);
  Mat3 S = eye();
  S[1] = std::tan(rng.uniform(-hyp.shear, hyp.shear) * M_PI / 180);
  S[3] = std::tan(rng.uniform(-hyp.shear, hyp.shear) * M_PI / 180);
  Mat3 T = eye();
  T[2] = rng.uniform(0.5 - hyp.translate, 0.5 + hyp.translate) * width;
  T[5] = rng.uniform(0.5 - hyp.translate, 0.5 + hyp.translate) * height;
  const Mat3 M = mul(T, mul(S, mul(R, C)));  // perspective is not supported (YOLOv5 default 0)

  ImageU8 out = warp_affine(img, M, width, height);
  std::vector<PixelBox> kept;
  for (const auto& b : *boxes) {
    const double xs[4] = {b[1], b[3], b[1], b[3]}, ys[4] = {b[2], b[4], b[4], b[2]};
    double x1 = 1e18, y1 = 1e18, x2 = -1e18, y2 = -1e18;
    for (int k = 0; k < 4; ++k) {
      const double X = M[0] * xs[k] + M[1] * ys[k] + M[2], Y = M[3] * xs[k] + M[4] * ys[k] + M[5];
      x1 = std::min(x1, X), x2 = std::max(x2, X), y1 = std::min(y1, Y), y2 = std::max(y2, Y);
    }
    x1 = std::clamp(x1, 0.0, double(width)), x2 = std::clamp(x2, 0.0, double(width));
    y1 = std::clamp(y1, 0.0, double(height)), y2 = std::clamp(y2, 0.0, double(height));
    // box_candidates: > 2 px, > 10% of the scaled original area, aspect < 100.
    const double w1 = (b[3] - b[1]) * s, h1 = (b[4] - b[2]) * s, w2 = x2 - x1, h2 = y2 - y1;
    const double ar = std::max(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16));
    if (w2 > 2 && h2 > 2 && w2 * h2 / (w1 * h1 + 1e-16) > 0.1 && ar < 100)
      kept.push_back({b[0], float(x1), float(y1), float(x2), float(y2)});
  }
  *boxes = std::move(kept);
  return out;
}

ImageU8 load_mosaic(const Dataset& ds, size_t index, int s, const Hyp& hyp, SampleRng& rng,
                    std::vector<PixelBox>* boxes) {
  const int xc = static_cast<int>(rng.uniform(s / 2.0, 1.5 * s)), yc = static_cast<int>(rng.uniform(s / 2.0, 1.5 * s));
  size_t idx[4] = {index, rng.index(ds.size()), rng.index(ds.size()), rng.index(ds.size())};
  for (int i = 3; i > 0; --i) std::swap(idx[i], idx[rng.index(i + 1)]);  // shuffle
  ImageU8 canvas(2 * s, 2 * s, kPad);
  boxes->clear();
  for (int i = 0; i < 4; ++i) {
    const ImageU8& img = ds.image(idx[i]);
    const int w = img.w, h = img.h;
    int x1a, y1a, x2a, y2a, x1b, y1b, x2b, y2b;
    if (i == 0) {  // top left
      x1a = std::max(xc - w, 0), y1a = std::max(yc - h, 0), x2a = xc, y2a = yc;
      x1b = w - (x2a - x1a), y1b = h - (y2a - y1a), x2b = w, y2b = h;
    } else if (i == 1) {  // top right
      x1a = xc, y1a = std::max(yc - h, 0), x2a = std::min(xc + w, s * 2), y2a = yc;
      x1b = 0, y1b = h - (y2a - y1a), x2b = std::min(w, x2a - x1a), y2b = h;
    } else if (i == 2) {  // bottom left
      x1a = std::max(xc - w, 0), y1a = yc, x2a = xc, y2a = std::min(s * 2, yc + h);
      x1b = w - (x2a - x1a), y1b = 0, x2b = w, y2b = std::min(y2a - y1a, h);
    } else {  // bottom right
      x1a = xc, y1a = yc, x2a = std::min(xc + w, s * 2), y2a = std::min(s * 2, yc + h);
      x1b = 0, y1b = 0, x2b = std::min(w, x2a - x1a), y2b = std::min(y2a - y1a, h);
    }
    for (int y = 0; y < std::min(y2a - y1a, y2b - y1b); ++y)
      std::memcpy(canvas.row(y1a + y) + x1a * 3, img.row(y1b + y) + x1b * 3, static_cast<size_t>(x2b - x1b) * 3);
    for (auto b : pixel_boxes(ds.labels(idx[i]), w, h, x1a - x1b, y1a - y1b)) {
      for (int k = 1; k < 5; ++k) b[k] = std::clamp(b[k], 0.f, 2.f * s);
      boxes->push_back(b);
    }
  }
  return random_perspective(canvas, boxes, hyp, -s / 2, rng);
}

void augment_hsv(ImageU8& img, double hgain, double sgain, double vgain, SampleRng& rng) {
  if (hgain == 0 && sgain == 0 && vgain == 0) return;
  const double r0 = rng.uniform(-1, 1) * hgain + 1, r1 = rng.uniform(-1, 1) * sgain + 1,
               r2 = rng.uniform(-1, 1) * vgain + 1;
  // OpenCV's 8-bit HSV: H in [0, 180), S and V in [0, 255]; YOLOv5 remaps each
  // channel through a lookup table.
  uint8_t lut_h[256], lut_s[256], lut_v[256];
  for (int x = 0; x < 256; ++x) {
    lut_h[x] = static_cast<uint8_t>(std::fmod(x * r0, 180.0));
    lut_s[x] = static_cast<uint8_t>(std::clamp(x * r1, 0.0, 255.0));
    lut_v[x] = static_cast<uint8_t>(std::clamp(x * r2, 0.0, 255.0));
  }
  uint8_t* p = img.px.data();
  const size_t n = static_cast<size_t>(img.w) * img.h;
  for (size_t i = 0; i < n; ++i, p += 3) {
    const int r = p[0], g = p[1], b = p[2];
    const int v = std::max(r, std::max(g, b)), mn = std::min(r, std::min(g, b)), diff = v - mn;
    int h = 0, s = 0;
    if (v > 0) s = (diff * 255 + v / 2) / v;
    if (diff > 0) {
      float hf;
      if (v == r) hf = 60.f * (g - b) / diff;
      else if (v == g) hf = 120.f + 60.f * (b - r) / diff;
      else hf = 240.f + 60.f * (r - g) / diff;
      if (hf < 0) hf += 360.f;
      h = static_cast<int>(hf * 0.5f + 0.5f);
      if (h >= 180) h -= 180;
    }
    const int H = lut_h[h], S = lut_s[s], V = lut_v[v];
    float R, G, B;
    hsv_to_rgb(H * 2.f / 60.f, S / 255.f, static_cast<float>(V), &R, &G, &B);
    p[0] = static_cast<uint8_t>(R + 0.5f), p[1] = static_cast<uint8_t>(G + 0.5f), p[2] = static_cast<uint8_t>(B + 0.5f);
  }
}

void build_sample(const Dataset& ds, size_t index, int size, bool augment, const Hyp& hyp, SampleRng& rng,
                  uint8_t* dst, std::vector<LabelRow>* labels, Letterbox* lb_out) {
  std::vector<PixelBox> boxes;
  ImageU8 img;
  if (augment && rng.uniform() < hyp.mosaic) {
    img = load_mosaic(ds, index, size, hyp, rng, &boxes);
  } else {
    Letterbox lb;
    const ImageU8& src = ds.image(index);
    img = letterbox(src, size, /*scaleup=*/augment, &lb);
    boxes = pixel_boxes(ds.labels(index), src.w * lb.ratio, src.h * lb.ratio, lb.padw, lb.padh);
    if (lb_out) *lb_out = lb;
    if (augment) img = random_perspective(img, &boxes, hyp, 0, rng);
  }
  labels->clear();
  const float eps = 1e-3f, W = static_cast<float>(img.w), H = static_cast<float>(img.h);
  for (const auto& b : boxes) {
    const float x1 = std::clamp(b[1], 0.f, W - eps), x2 = std::clamp(b[3], 0.f, W - eps);
    const float y1 = std::clamp(b[2], 0.f, H - eps), y2 = std::clamp(b[4], 0.f, H - eps);
    labels->push_back({b[0], (x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H});
  }
  if (augment) {
    augment_hsv(img, hyp.hsv_h, hyp.hsv_s, hyp.hsv_v, rng);
    if (rng.uniform() < hyp.flipud) {
      flip_ud(img);
      for (auto& l : *labels) l[2] = 1 - l[2];
    }
    if (rng.uniform() < hyp.fliplr) {
      flip_lr(img);
      for (auto& l : *labels) l[1] = 1 - l[1];
    }
  }
  std::memcpy(dst, img.px.data(), img.px.size());
}

}  // namespace yolo
