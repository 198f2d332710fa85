// The bootstrap's wire format: length-prefixed frames, and the fields inside a frame's payload.
//
// A frame is a u32 payload length followed by the payload. Fields are u8 / u32 / i32 / i64 /
// u64 / f64 in the host's byte order, which the static_assert below pins to little-endian,
// strings as a u32 length followed by the bytes, and fixed-size byte fields (nonces, proofs)
// as their bytes alone. One frame writer (frame(), send_frame()) and one frame
// reader (FrameReader, which recv_frame() drives) serve the blocking client and the polling
// server alike, so the size limit is enforced in one place.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "common/clock.h"

namespace ringlink::wire {

static_assert(std::endian::native == std::endian::little, "the bootstrap wire format is little-endian");

// Bytes that do not follow the format: a field past the end of its payload, a frame longer
// than the reader's limit, a payload too long for the u32 length.
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Builds a payload field by field.
class Writer {
 public:
  Writer& u8(uint8_t v) { return raw(&v, 1); }
  Writer& u32(uint32_t v) { return raw(&v, 4); }
  Writer& i32(int32_t v) { return raw(&v, 4); }
  Writer& i64(int64_t v) { return raw(&v, 8); }
  Writer& u64(uint64_t v) { return raw(&v, 8); }
  Writer& f64(double v) { return raw(&v, 8); }
  Writer& str(std::string_view s);
  Writer& fixed(std::string_view bytes) { return raw(bytes.data(), bytes.size()); }
  const std::string& bytes() const { return buf_; }
  std::string take() { return std::move(buf_); }

 private:
  Writer& raw(const void* p, size_t n) {
    buf_.append(static_cast<const char*>(p), n);
    return *this;
  }
  std::string buf_;
};

// Reads a payload field by field; throws FormatError where a field runs past the end.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  uint8_t u8() { return get<uint8_t>(); }
  uint32_t u32() { return get<uint32_t>(); }
  int32_t i32() { return get<int32_t>(); }
  int64_t i64() { return get<int64_t>(); }
  uint64_t u64() { return get<uint64_t>(); }
  double f64() { return get<double>(); }
  std::string str();
  std::string fixed(size_t n);  // exactly n bytes
  // Throws FormatError unless every byte was read: a message with trailing bytes is malformed.
  void expect_end() const;

 private:
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, s_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  void need(size_t n) const;
  std::string_view s_;
  size_t pos_ = 0;
};

inline constexpr size_t kFrameHeaderBytes = 4;

// The frame writer: the length header followed by the payload.
std::string frame(std::string_view payload);

// The frame reader. Bytes go in as they arrive; whole payloads come out. A header announcing
// more than max_payload_bytes is refused (FormatError) before any of that payload is held.
class FrameReader {
 public:
  explicit FrameReader(size_t max_payload_bytes) : max_payload_bytes_(max_payload_bytes) {}

  void append(std::string_view bytes) { buf_.append(bytes); }
  // The next complete payload, or nullopt until more bytes arrive.
  std::optional<std::string> next();
  // How many more bytes complete the header or payload being read (after next() said nullopt).
  size_t wanted() const;
  size_t buffered() const { return buf_.size(); }
  // The limit for frames not yet read (the store raises it once a connection has authenticated).
  void set_limit(size_t max_payload_bytes) { max_payload_bytes_ = max_payload_bytes; }

 private:
  std::optional<size_t> payload_length() const;  // once the header is in; checks the limit
  size_t max_payload_bytes_;
  std::string buf_;
};

// Blocking frame I/O on a socket, bounded by `deadline`; net::SocketError on timeout, EOF or
// error, and on a frame over the limit (Reason::Other).
void send_frame(int fd, std::string_view payload, Deadline deadline);
std::string recv_frame(int fd, Deadline deadline, size_t max_payload_bytes);

}  // namespace ringlink::wire
