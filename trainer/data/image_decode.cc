#include "data/image_decode.h"

#include <fmt/core.h>
#include <stb_image.h>

#include <cstdarg>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "trainer_config.h"

#if defined(YOLO_HAVE_TIFF)
#include <tiffio.h>
#endif
#if defined(YOLO_HAVE_WEBP)
#include <webp/decode.h>
#endif

namespace yolo {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw std::runtime_error("cannot decode image " + path + ": " + why);
}

void check_size(const std::string& path, int64_t w, int64_t h) {
  if (w <= 0 || h <= 0) fail(path, fmt::format("bad size {} x {}", w, h));
  if (w * h > kMaxImagePixels) fail(path, fmt::format("{} x {} pixels is over the limit of {}", w, h, kMaxImagePixels));
}

// The whole file, or with `prefix` only its first bytes. A file over `limit`
// bytes is refused before anything is allocated for it.
std::vector<uint8_t> read_file(const std::string& path, size_t limit, size_t prefix = 0) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(path, "cannot open the file");
  const auto size = static_cast<std::streamoff>(in.tellg());
  if (size < 0 || static_cast<uint64_t>(size) > limit) fail(path, fmt::format("file of {} bytes is too large", size));
  size_t n = static_cast<size_t>(size);
  if (prefix) n = std::min(n, prefix);
  std::vector<uint8_t> data(n);
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(n))) fail(path, "read error");
  return data;
}

ImageU8 decode_stb(const std::string& path) {
  int w = 0, h = 0, c = 0;
  if (!stbi_info(path.c_str(), &w, &h, &c)) fail(path, stbi_failure_reason() ? stbi_failure_reason() : "unknown error");
  check_size(path, w, h);
  unsigned char* data = stbi_load(path.c_str(), &w, &h, &c, 3);
  if (!data) fail(path, stbi_failure_reason() ? stbi_failure_reason() : "unknown error");
  ImageU8 img(w, h);
  std::memcpy(img.px.data(), data, img.px.size());
  stbi_image_free(data);
  return img;
}

#if defined(YOLO_HAVE_TIFF)
// libtiff reports through process-wide handlers; each decoding thread keeps
// its own last message, so parallel loaders do not mix them up.
thread_local std::string tiff_error;

void tiff_handler(const char* module, const char* format, va_list ap) {
  char buf[512];
  std::vsnprintf(buf, sizeof(buf), format, ap);
  tiff_error = module ? std::string(module) + ": " + buf : std::string(buf);
}

void tiff_quiet(const char*, const char*, va_list) {}

struct Tiff {
  TIFF* tif;
  explicit Tiff(const std::string& path) {
    static std::once_flag once;
    std::call_once(once, [] {
      TIFFSetErrorHandler(tiff_handler);
      TIFFSetWarningHandler(tiff_quiet);  // unknown tags and the like
    });
    tiff_error.clear();
    tif = TIFFOpen(path.c_str(), "r");
    if (!tif) fail(path, tiff_error.empty() ? "libtiff cannot open it" : tiff_error);
  }
  ~Tiff() { TIFFClose(tif); }
  std::array<int, 2> size(const std::string& path) const {
    uint32_t w = 0, h = 0;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h))
      fail(path, "no image size in the TIFF header");
    check_size(path, w, h);
    return {static_cast<int>(w), static_cast<int>(h)};
  }
};

ImageU8 decode_tiff(const std::string& path) {
  Tiff t(path);
  const auto [w, h] = t.size(path);
  std::vector<uint32_t> raster(static_cast<size_t>(w) * h);
  // RGBA with the TIFF's own orientation tag applied, top row first.
  if (!TIFFReadRGBAImageOriented(t.tif, w, h, raster.data(), ORIENTATION_TOPLEFT, 0))
    fail(path, tiff_error.empty() ? "libtiff cannot read the pixels" : tiff_error);
  ImageU8 img(w, h);
  uint8_t* o = img.px.data();
  for (uint32_t p : raster) {
    *o++ = static_cast<uint8_t>(TIFFGetR(p));
    *o++ = static_cast<uint8_t>(TIFFGetG(p));
    *o++ = static_cast<uint8_t>(TIFFGetB(p));
  }
  return img;
}
#endif

#if defined(YOLO_HAVE_WEBP)
constexpr size_t kMaxWebpFile = size_t{1} << 30;

ImageU8 decode_webp(const std::string& path) {
  const auto data = read_file(path, kMaxWebpFile);
  int w = 0, h = 0;
  if (!WebPGetInfo(data.data(), data.size(), &w, &h)) fail(path, "not a valid WebP bitstream");
  check_size(path, w, h);
  ImageU8 img(w, h);
  if (!WebPDecodeRGBInto(data.data(), data.size(), img.px.data(), img.px.size(), w * 3))
    fail(path, "libwebp cannot decode it");
  return img;
}
#endif

[[noreturn, maybe_unused]] void not_built(const std::string& path, const char* format, const char* package) {
  fail(path, fmt::format("{} support was not built (install {} and rebuild)", format, package));
}

}  // namespace

ImageFormat sniff_image_format(const std::string& path) {
  unsigned char m[12] = {};
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open the file");
  in.read(reinterpret_cast<char*>(m), sizeof(m));
  const auto n = in.gcount();
  if (n >= 3 && m[0] == 0xFF && m[1] == 0xD8 && m[2] == 0xFF) return ImageFormat::jpeg;
  if (n >= 8 && std::memcmp(m, "\x89PNG\r\n\x1a\n", 8) == 0) return ImageFormat::png;
  if (n >= 2 && m[0] == 'B' && m[1] == 'M') return ImageFormat::bmp;
  if (n >= 4 && (std::memcmp(m, "II*\0", 4) == 0 || std::memcmp(m, "MM\0*", 4) == 0)) return ImageFormat::tiff;
  if (n >= 12 && std::memcmp(m, "RIFF", 4) == 0 && std::memcmp(m + 8, "WEBP", 4) == 0) return ImageFormat::webp;
  return ImageFormat::unknown;
}

ImageU8 decode_image(const std::string& path, ImageFormat format) {
  switch (format) {
    case ImageFormat::jpeg:
    case ImageFormat::png:
    case ImageFormat::bmp: return decode_stb(path);
    case ImageFormat::tiff:
#if defined(YOLO_HAVE_TIFF)
      return decode_tiff(path);
#else
      not_built(path, "TIFF", "libtiff-dev");
#endif
    case ImageFormat::webp:
#if defined(YOLO_HAVE_WEBP)
      return decode_webp(path);
#else
      not_built(path, "WebP", "libwebp-dev");
#endif
    case ImageFormat::unknown: break;
  }
  fail(path, "not a JPEG, PNG, BMP, TIFF or WebP file");
}

std::array<int, 2> stored_image_size(const std::string& path, ImageFormat format) {
  switch (format) {
    case ImageFormat::jpeg:
    case ImageFormat::png:
    case ImageFormat::bmp: {
      int w = 0, h = 0, c = 0;
      if (!stbi_info(path.c_str(), &w, &h, &c))
        fail(path, stbi_failure_reason() ? stbi_failure_reason() : "unknown error");
      check_size(path, w, h);
      return {w, h};
    }
    case ImageFormat::tiff:
#if defined(YOLO_HAVE_TIFF)
      return Tiff(path).size(path);
#else
      not_built(path, "TIFF", "libtiff-dev");
#endif
    case ImageFormat::webp: {
#if defined(YOLO_HAVE_WEBP)
      // The RIFF and frame headers are in the first few dozen bytes.
      const auto data = read_file(path, kMaxWebpFile, 256);
      int w = 0, h = 0;
      if (!WebPGetInfo(data.data(), data.size(), &w, &h)) fail(path, "not a valid WebP bitstream");
      check_size(path, w, h);
      return {w, h};
#else
      not_built(path, "WebP", "libwebp-dev");
#endif
    }
    case ImageFormat::unknown: break;
  }
  fail(path, "not a JPEG, PNG, BMP, TIFF or WebP file");
}

}  // namespace yolo
