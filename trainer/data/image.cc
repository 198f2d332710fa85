#include "data/image.h"

#include <stb_image.h>
#include <stb_image_resize.h>
#include <stb_image_write.h>

#include <cstring>
#include <stdexcept>

namespace yolo {

ImageU8 read_image(const std::string& path) {
  int w = 0, h = 0, c = 0;
  unsigned char* data = stbi_load(path.c_str(), &w, &h, &c, 3);
  if (!data) {
    const char* why = stbi_failure_reason();
    throw std::runtime_error("cannot decode image " + path + ": " + (why ? why : "unknown error"));
  }
  ImageU8 img(w, h);
  std::memcpy(img.px.data(), data, img.px.size());
  stbi_image_free(data);
  return img;
}

void write_png(const std::string& path, const ImageU8& img) {
  if (!stbi_write_png(path.c_str(), img.w, img.h, 3, img.px.data(), img.w * 3))
    throw std::runtime_error("cannot write " + path);
}

void write_jpg(const std::string& path, const ImageU8& img, int quality) {
  if (!stbi_write_jpg(path.c_str(), img.w, img.h, 3, img.px.data(), quality))
    throw std::runtime_error("cannot write " + path);
}

ImageU8 resize(const ImageU8& img, int w, int h) {
  ImageU8 out(w, h);
  if (!stbir_resize_uint8(img.px.data(), img.w, img.h, 0, out.px.data(), w, h, 0, 3))
    throw std::runtime_error("image resize failed");
  return out;
}

}  // namespace yolo
