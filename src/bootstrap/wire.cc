#include "bootstrap/wire.h"

#include <limits>

#include <fmt/format.h>

#include "common/socket.h"

namespace ringlink::wire {
namespace {

uint32_t length_field(size_t n) {
  if (n > std::numeric_limits<uint32_t>::max())
    throw FormatError(fmt::format("{} bytes do not fit a u32 length", n));
  return static_cast<uint32_t>(n);
}

}  // namespace

Writer& Writer::str(std::string_view s) {
  u32(length_field(s.size()));
  buf_.append(s);
  return *this;
}

std::string Reader::str() {
  uint32_t n = u32();
  need(n);
  std::string out(s_.substr(pos_, n));
  pos_ += n;
  return out;
}

std::string Reader::fixed(size_t n) {
  need(n);
  std::string out(s_.substr(pos_, n));
  pos_ += n;
  return out;
}

void Reader::expect_end() const {
  if (pos_ != s_.size()) throw FormatError(fmt::format("{} unexpected bytes after the message", s_.size() - pos_));
}

void Reader::need(size_t n) const {
  if (s_.size() - pos_ < n) throw FormatError("malformed message");
}

std::string frame(std::string_view payload) {
  uint32_t len = length_field(payload.size());
  std::string out(reinterpret_cast<const char*>(&len), kFrameHeaderBytes);
  out.append(payload);
  return out;
}

std::optional<size_t> FrameReader::payload_length() const {
  if (buf_.size() < kFrameHeaderBytes) return std::nullopt;
  uint32_t len = 0;
  std::memcpy(&len, buf_.data(), kFrameHeaderBytes);
  if (len > max_payload_bytes_)
    throw FormatError(fmt::format("frame of {} bytes exceeds {}", len, max_payload_bytes_));
  return len;
}

std::optional<std::string> FrameReader::next() {
  auto len = payload_length();
  if (!len || buf_.size() < kFrameHeaderBytes + *len) return std::nullopt;
  std::string payload = buf_.substr(kFrameHeaderBytes, *len);
  buf_.erase(0, kFrameHeaderBytes + *len);
  return payload;
}

size_t FrameReader::wanted() const {
  auto len = payload_length();
  if (!len) return kFrameHeaderBytes - buf_.size();
  size_t whole = kFrameHeaderBytes + *len;
  return whole > buf_.size() ? whole - buf_.size() : 0;
}

void send_frame(int fd, std::string_view payload, Deadline deadline) {
  std::string bytes = frame(payload);
  net::send_all(fd, bytes.data(), bytes.size(), deadline);
}

std::string recv_frame(int fd, Deadline deadline, size_t max_payload_bytes) {
  FrameReader reader(max_payload_bytes);
  std::string chunk;
  try {
    for (;;) {
      if (auto payload = reader.next()) return std::move(*payload);
      // Read exactly what the frame still lacks, so no byte of the next frame is consumed.
      chunk.resize(reader.wanted());
      net::recv_all(fd, chunk.data(), chunk.size(), deadline);
      reader.append(chunk);
    }
  } catch (const FormatError& e) {
    throw net::SocketError(net::SocketError::Reason::Other, e.what());
  }
}

}  // namespace ringlink::wire
