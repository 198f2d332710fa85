// 8-bit RGB images in memory (HWC), reading and writing them, and resizing.
#pragma once

#include <array>
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

// Decodes a JPEG, PNG, BMP, TIFF or WebP file (told apart by its first bytes)
// to RGB: grey becomes RGB, alpha is dropped, and a JPEG's EXIF orientation is
// applied, as OpenCV's imread does for YOLOv5. Throws with the path and the
// reason for anything else.
ImageU8 read_image(const std::string& path);

// Width and height that read_image returns (orientation included), from the
// file's header without decoding the pixels.
std::array<int, 2> read_image_size(const std::string& path);

// YOLOv5's image extensions (IMG_FORMATS). dng and pfm are among them but not
// read here; a dataset that lists them gets an error naming the file.
enum class ImageExtension { not_image, supported, unsupported };
ImageExtension classify_image_extension(const std::string& path);
extern const char* const kSupportedImageExtensions;  // for messages

void write_png(const std::string& path, const ImageU8& img);
void write_jpg(const std::string& path, const ImageU8& img, int quality = 90);
ImageU8 resize(const ImageU8& img, int w, int h);

}  // namespace yolo
