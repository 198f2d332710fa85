// Training samples as YOLOv5's LoadImagesAndLabels builds them: mosaic (with
// copy-paste and mixup), random perspective, HSV jitter, flips; and the
// letterbox used for validation. Images are RGB uint8, boxes in pixels.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "data/dataset.h"
#include "data/image.h"
#include "data/mix.h"
#include "data/perspective.h"
#include "data/sample_rng.h"
#include "train/hyp.h"

namespace yolo {

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

// The 2s x 2s mosaic canvas (fill 114): images idx[0..3] as the top-left,
// top-right, bottom-left and bottom-right tiles meeting at (xc, yc), their
// boxes shifted with them and clipped to the canvas.
ImageU8 mosaic_canvas(const Dataset& ds, const std::array<size_t, 4>& idx, int s, int xc, int yc,
                      std::vector<PixelBox>* boxes);

// load_mosaic: image `index` and three random others around a random centre
// in [s/2, 3s/2), copy-paste, then random_perspective back to s x s.
ImageU8 load_mosaic(const Dataset& ds, size_t index, int s, const Hyp& hyp, SampleRng& rng,
                    std::vector<PixelBox>* boxes);

// augment_hsv: gains r = 1 + U(-1, 1) * gain per channel, then apply_hsv_gains.
void augment_hsv(ImageU8& img, double hgain, double sgain, double vgain, SampleRng& rng);
// Each pixel through OpenCV's 8-bit HSV (H in [0, 180)) with hue, saturation
// and value remapped by lookup tables of x * r (hue mod 180, the others
// clipped to 255), and back to RGB.
void apply_hsv_gains(ImageU8& img, double rh, double rs, double rv);

// Builds one training sample (augment=true) or validation sample (letterbox
// only) of size x size into dst (HWC uint8) and returns labels as
// class, x, y, w, h normalised (clipped, as YOLOv5's xyxy2xywhn). Without
// augmentation *lb (when given) receives the letterbox that placed the image.
void build_sample(const Dataset& ds, size_t index, int size, bool augment, const Hyp& hyp, SampleRng& rng,
                  uint8_t* dst, std::vector<LabelRow>* labels, Letterbox* lb = nullptr);

}  // namespace yolo
