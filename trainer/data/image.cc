#include "data/image.h"

#include <stb_image_resize.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <stdexcept>

#include "data/image_decode.h"
#include "data/orientation.h"

namespace yolo {

const char* const kSupportedImageExtensions = "bmp, jpeg, jpg, mpo, png, tif, tiff, webp";

ImageU8 read_image(const std::string& path) {
  const ImageFormat format = sniff_image_format(path);
  ImageU8 img = decode_image(path, format);
  if (format == ImageFormat::jpeg) img = apply_orientation(img, jpeg_exif_orientation(path));
  return img;
}

std::array<int, 2> read_image_size(const std::string& path) {
  const ImageFormat format = sniff_image_format(path);
  auto size = stored_image_size(path, format);
  if (format == ImageFormat::jpeg && orientation_swaps_axes(jpeg_exif_orientation(path))) std::swap(size[0], size[1]);
  return size;
}

ImageExtension classify_image_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  // mpo (multi-picture JPEG): the first picture is a plain JPEG.
  for (const char* e : {".bmp", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp"})
    if (ext == e) return ImageExtension::supported;
  for (const char* e : {".dng", ".pfm"})
    if (ext == e) return ImageExtension::unsupported;
  return ImageExtension::not_image;
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
