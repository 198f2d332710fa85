#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "util/hsv.h"

namespace yolo {

namespace {

constexpr uint8_t kPad = 114;

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

ImageU8 mosaic_canvas(const Dataset& ds, const std::array<size_t, 4>& idx, int s, int xc, int yc,
                      std::vector<PixelBox>* boxes) {
  ImageU8 canvas(2 * s, 2 * s, kPad);
  boxes->clear();
  for (int i = 0; i < 4; ++i) {
    const auto tile = ds.image(idx[i]);
    const ImageU8& img = *tile;
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
  return canvas;
}

ImageU8 load_mosaic(const Dataset& ds, size_t index, int s, const Hyp& hyp, SampleRng& rng,
                    std::vector<PixelBox>* boxes) {
  const int xc = static_cast<int>(rng.uniform(s / 2.0, 1.5 * s)), yc = static_cast<int>(rng.uniform(s / 2.0, 1.5 * s));
  std::array<size_t, 4> idx = {index, rng.index(ds.size()), rng.index(ds.size()), rng.index(ds.size())};
  for (int i = 3; i > 0; --i) std::swap(idx[i], idx[rng.index(i + 1)]);  // shuffle
  ImageU8 canvas = mosaic_canvas(ds, idx, s, xc, yc, boxes);
  copy_paste(canvas, *boxes, hyp.copy_paste, rng);
  return random_perspective(canvas, boxes, hyp, -s / 2, rng);
}

void augment_hsv(ImageU8& img, double hgain, double sgain, double vgain, SampleRng& rng) {
  if (hgain == 0 && sgain == 0 && vgain == 0) return;
  const double r0 = rng.uniform(-1, 1) * hgain + 1, r1 = rng.uniform(-1, 1) * sgain + 1,
               r2 = rng.uniform(-1, 1) * vgain + 1;
  apply_hsv_gains(img, r0, r1, r2);
}

void apply_hsv_gains(ImageU8& img, double r0, double r1, double r2) {
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
    if (hyp.mixup > 0 && rng.uniform() < hyp.mixup) {  // with a second mosaic, as train.py
      std::vector<PixelBox> boxes2;
      const ImageU8 img2 = load_mosaic(ds, rng.index(ds.size()), size, hyp, rng, &boxes2);
      mixup(img, boxes, img2, boxes2, rng);
    }
  } else {
    Letterbox lb;
    const auto src_ptr = ds.image(index);
    const ImageU8& src = *src_ptr;
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
