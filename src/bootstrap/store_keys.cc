#include "bootstrap/store_keys.h"

#include <charconv>

#include <fmt/format.h>

namespace ringlink::store_keys {
namespace {

constexpr std::string_view kOwnedPrefix = "rank/";
constexpr std::string_view kCounterPrefix = "count/";

// The owner in "rank/<r>/<name>", written the one way owned() writes it (no sign, no leading
// zero), so two spellings cannot name one rank; nullopt for any other key.
std::optional<int> owner(std::string_view key) {
  if (!key.starts_with(kOwnedPrefix)) return std::nullopt;
  std::string_view rest = key.substr(kOwnedPrefix.size());
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == rest.size()) return std::nullopt;
  std::string_view digits = rest.substr(0, slash);
  if (digits.size() > 1 && digits.front() == '0') return std::nullopt;
  int r = -1;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), r);
  if (ec != std::errc() || p != digits.data() + digits.size() || r < 0) return std::nullopt;
  return r;
}

}  // namespace

std::string owned(int rank, std::string_view name) { return fmt::format("{}{}/{}", kOwnedPrefix, rank, name); }

std::string counter(std::string_view name) { return fmt::format("{}{}", kCounterPrefix, name); }

std::string shown(std::string_view key) {
  constexpr size_t kMax = 80;
  std::string out;
  for (size_t i = 0; i < key.size() && i < kMax; ++i) {
    auto c = static_cast<unsigned char>(key[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\')
      out += static_cast<char>(c);
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (key.size() > kMax) out += fmt::format("... ({} bytes)", key.size());
  return out;
}

std::optional<std::string> write_refusal(std::string_view key, int rank, bool add) {
  if (key.starts_with(kCounterPrefix) && key.size() > kCounterPrefix.size()) {
    if (add) return std::nullopt;
    return fmt::format("key '{}' is a counter: ranks may only add to it", shown(key));
  }
  if (auto r = owner(key)) {
    if (*r == rank) return std::nullopt;
    return fmt::format("key '{}' belongs to rank {}: rank {} may not write it", shown(key), *r, rank);
  }
  return fmt::format("key '{}' is outside the store's namespace (rank/<r>/<name> or count/<name>)", shown(key));
}

}  // namespace ringlink::store_keys
