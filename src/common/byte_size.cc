#include "common/byte_size.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

namespace ringlink {

namespace {

bool is_blank(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// The power of 1024 a unit letter stands for; -1 for anything else.
int unit_exponent(std::string_view unit) {
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) {
    unit.remove_suffix(1);
    if (!unit.empty() && unit.back() == 'i') unit.remove_suffix(1);
  }
  if (unit.empty()) return 0;
  if (unit.size() > 1) return -1;
  switch (std::toupper(static_cast<unsigned char>(unit[0]))) {
    case 'K': return 1;
    case 'M': return 2;
    case 'G': return 3;
    case 'T': return 4;
    default: return -1;
  }
}

}  // namespace

std::optional<uint64_t> parse_byte_size(std::string_view text) {
  while (!text.empty() && is_blank(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_blank(text.back())) text.remove_suffix(1);
  if (text.empty() || text.front() == '-' || text.front() == '+') return std::nullopt;
  const char* const first = text.data();
  const char* const last = text.data() + text.size();

  // Whole numbers are read exactly (every uint64_t is a count); the rest ("1.5K", "1e3")
  // through a double, exact for any count a fraction can sensibly describe.
  double value = 0;
  const auto as_double = std::from_chars(first, last, value);
  if (as_double.ec != std::errc() || !std::isfinite(value)) return std::nullopt;
  uint64_t whole = 0;
  const auto as_integer = std::from_chars(first, last, whole);
  const bool exact = as_integer.ec == std::errc() && as_integer.ptr == as_double.ptr;
  const char* const end = as_double.ptr;

  const int exponent = unit_exponent(std::string_view(end, static_cast<size_t>(last - end)));
  if (exponent < 0) return std::nullopt;
  const unsigned shift = 10u * static_cast<unsigned>(exponent);

  if (exact) {
    if (whole > (std::numeric_limits<uint64_t>::max() >> shift)) return std::nullopt;
    return whole << shift;
  }
  const double bytes = std::ldexp(value, static_cast<int>(shift));
  // 2^64 itself is the first double out of range.
  if (bytes >= std::ldexp(1.0, 64)) return std::nullopt;
  if (bytes != std::floor(bytes)) return std::nullopt;  // "1.5" is refused; "1.5K" is 1536
  return static_cast<uint64_t>(bytes);
}

}  // namespace ringlink
