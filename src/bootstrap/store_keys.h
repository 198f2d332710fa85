// The store's key namespace, which lets the server check who may write a key:
//   rank/<r>/<name>  written (Set, Add) only by rank r, e.g. its transport addresses;
//   count/<name>     counters: any rank may Add, no rank may Set;
// and every rank of the epoch may read any key. Anything else is refused, so no rank can
// overwrite what another published.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ringlink::store_keys {

// rank/<r>/<name>
std::string owned(int rank, std::string_view name);
// count/<name>
std::string counter(std::string_view name);

// A key as messages show it: at most 80 characters, bytes outside printable ASCII escaped
// (keys come from peers and may hold anything).
std::string shown(std::string_view key);

// Why `rank` may not write `key` (Set when !add, Add when add); nullopt when it may.
std::optional<std::string> write_refusal(std::string_view key, int rank, bool add);

}  // namespace ringlink::store_keys
