#include "data/npy.h"

#include <fmt/core.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <stdexcept>

#include "data/image_decode.h"

namespace yolo {

namespace {

constexpr char kMagic[] = "\x93NUMPY";  // then version 1.0 and a little-endian uint16 header length
constexpr size_t kPrefix = 10;

std::string header_text(int w, int h) {
  std::string dict = fmt::format("{{'descr': '|u1', 'fortran_order': False, 'shape': ({}, {}, 3), }}", h, w);
  // Padded with spaces to a 64-byte boundary, ending in a newline (the format's rule).
  const size_t total = (kPrefix + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - kPrefix - dict.size() - 1, ' ');
  return dict + "\n";
}

}  // namespace

void write_npy(const std::string& path, const ImageU8& img) {
  const std::string header = header_text(img.w, img.h);
  const std::string tmp = fmt::format("{}.tmp{}", path, ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary);
    const unsigned char prefix[kPrefix] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                           static_cast<unsigned char>(header.size() & 0xff),
                                           static_cast<unsigned char>(header.size() >> 8)};
    out.write(reinterpret_cast<const char*>(prefix), kPrefix);
    out << header;
    out.write(reinterpret_cast<const char*>(img.px.data()), static_cast<std::streamsize>(img.px.size()));
    if (!out) throw std::runtime_error("cannot write the disk cache file " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

ImageU8 read_npy(const std::string& path) {
  auto bad = [&](const std::string& why) { return std::runtime_error("bad disk cache file " + path + ": " + why); };
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw bad("cannot open it");
  const auto file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  unsigned char prefix[kPrefix];
  if (!in.read(reinterpret_cast<char*>(prefix), kPrefix) || std::string(reinterpret_cast<char*>(prefix), 6) != kMagic)
    throw bad("not a .npy file");
  if (prefix[6] != 1 || prefix[7] != 0) throw bad("not .npy version 1.0");
  const size_t header_len = prefix[8] | (static_cast<size_t>(prefix[9]) << 8);
  std::string header(header_len, '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(header_len))) throw bad("truncated header");
  static const std::regex layout(R"(\{'descr': '\|u1', 'fortran_order': False, 'shape': \((\d{1,6}), (\d{1,6}), 3\), \} *\n)");
  std::smatch m;
  if (!std::regex_match(header, m, layout)) throw bad("not an (h, w, 3) uint8 array");
  const int64_t h = std::stoll(m[1]), w = std::stoll(m[2]);
  if (w <= 0 || h <= 0 || w * h > kMaxImagePixels) throw bad(fmt::format("image size {} x {}", w, h));
  if (file_size != kPrefix + header_len + static_cast<uint64_t>(w * h * 3)) throw bad("size does not match its header");
  ImageU8 img(static_cast<int>(w), static_cast<int>(h));
  if (!in.read(reinterpret_cast<char*>(img.px.data()), static_cast<std::streamsize>(img.px.size())))
    throw bad("truncated data");
  return img;
}

}  // namespace yolo
