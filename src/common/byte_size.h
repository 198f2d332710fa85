// Byte counts as people write them, for the environment (RINGLINK_CHUNK_BYTES) and the tools'
// size options: "65536", "512K", "1M", "2g", "1.5K", "4KB", "4KiB", " 16M " (binary multiples
// K, M, G, T in either case, an optional trailing B or iB, blanks around the text ignored).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace ringlink {

// nullopt for anything else: signs, a fraction of a byte ("1.5" but not "1.5K"), an unknown
// or doubled unit, not a finite number, or more than 2^64 - 1 bytes.
std::optional<uint64_t> parse_byte_size(std::string_view text);

}  // namespace ringlink
