// Training-time augmentation as YOLOv5 does it: mosaic, random affine
// (rotation/scale/shear/translation), HSV jitter, flips; and the letterbox
// used for validation. Images are RGB uint8, boxes in pixels (x1 y1 x2 y2).
#pragma once

#include <array>
#include <cstdint>
#include <random>
#include <vector>

#include "data/dataset.h"
#include "data/image.h"
#include "train/hyp.h"

namespace yolo {

// Per-sample random stream; seeded from (seed, epoch, position) so a sample
// is the same whichever worker thread builds it.
class SampleRng {
 public:
  explicit SampleRng(uint64_t seed) : gen_(seed) {}
  double uniform(double a = 0.0, double b = 1.0) { return a + (b - a) * ((gen_() >> 11) * 0x1.0p-53); }
  size_t index(size_t n) { return static_cast<size_t>(uniform() * n) % n; }

 private:
  std::mt19937_64 gen_;
};

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c);

// Pixel boxes: class, x1, y1, x2, y2.
using PixelBox = std::array<float, 5>;

// Normalised labels (class, xc, yc, w, h) of an image drawn w x h pixels
// large with its top-left corner at (padw, padh): YOLOv5's xywhn2xyxy.
std::vector<PixelBox> pixel_boxes(const std::vector<LabelRow>& labels, float w, float h, float padw, float padh);

struct Letterbox {
  float ratio = 1.f;
  float padw = 0.f, padh = 0.f;  // left and top border
  int w = 0, h = 0;              // the resized image inside the borders
};

// Resizes (keeping aspect) and pads with 114 to size x size. With scaleup =
// false the image is never enlarged.
ImageU8 letterbox(const ImageU8& img, int size, bool scaleup, Letterbox* info);

// 2x2 mosaic of image `index` and three random others, then random_perspective
// back to size x size.
ImageU8 load_mosaic(const Dataset& ds, size_t index, int size, const Hyp& hyp, SampleRng& rng,
                    std::vector<PixelBox>* boxes);

// Random affine warp; output is (in + 2*border) square-ish as YOLOv5's
// random_perspective (border is negative for mosaics). Boxes are warped by
// their corners, clipped and filtered by box_candidates.
ImageU8 random_perspective(const ImageU8& img, std::vector<PixelBox>* boxes, const Hyp& hyp, int border,
                           SampleRng& rng);

void augment_hsv(ImageU8& img, double hgain, double sgain, double vgain, SampleRng& rng);

// Builds one training sample (augment=true) or validation sample (letterbox
// only) of size x size into dst (HWC uint8) and returns labels as
// class, x, y, w, h normalised (clipped, as YOLOv5's xyxy2xywhn). Without
// augmentation *lb (when given) receives the letterbox that placed the image.
void build_sample(const Dataset& ds, size_t index, int size, bool augment, const Hyp& hyp, SampleRng& rng,
                  uint8_t* dst, std::vector<LabelRow>* labels, Letterbox* lb = nullptr);

}  // namespace yolo
