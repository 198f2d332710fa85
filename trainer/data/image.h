// 8-bit RGB images in memory (HWC) and the few pixel operations the data
// pipeline needs. Decoding and resizing use stb.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace yolo {

struct ImageU8 {
  int w = 0, h = 0;
  std::vector<uint8_t> px;  // RGB, row-major
  ImageU8() = default;
  ImageU8(int w_, int h_, uint8_t fill = 0) : w(w_), h(h_), px(static_cast<size_t>(w_) * h_ * 3, fill) {}
  uint8_t* row(int y) { return px.data() + static_cast<size_t>(y) * w * 3; }
  const uint8_t* row(int y) const { return px.data() + static_cast<size_t>(y) * w * 3; }
  bool empty() const { return px.empty(); }
};

// Decodes any format stb reads (JPEG, PNG, BMP, ...) to RGB. Throws with the
// path and stb's reason on failure.
ImageU8 read_image(const std::string& path);
void write_png(const std::string& path, const ImageU8& img);
void write_jpg(const std::string& path, const ImageU8& img, int quality = 90);
ImageU8 resize(const ImageU8& img, int w, int h);

}  // namespace yolo
