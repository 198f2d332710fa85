#include "transport/verbs/mr_cache.h"

#include <unistd.h>

#include <algorithm>
#include <set>

namespace ringlink::verbs {
namespace {

std::mutex g_caches_mu;
std::set<MrCache*>& caches() {
  static std::set<MrCache*> s;
  return s;
}

uintptr_t page_size() {
  static const uintptr_t p = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  return p;
}

}  // namespace

MrCache::MrCache(RegisterFn reg, size_t max_bytes, IdentityFn identity)
    : register_(std::move(reg)), identity_(std::move(identity)), max_bytes_(max_bytes) {
  std::lock_guard g(g_caches_mu);
  caches().insert(this);
}

MrCache::~MrCache() {
  {
    std::lock_guard g(g_caches_mu);
    caches().erase(this);
  }
  clear();
}

std::shared_ptr<Registration> MrCache::acquire(const void* p, size_t n, MemoryKind kind) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  const size_t want = std::max<size_t>(n, 1);
  std::lock_guard lk(mu_);
  ++clock_;
  auto it = entries_.upper_bound(addr);
  if (it != entries_.begin()) {
    auto prev = std::prev(it);
    const auto& reg = prev->second.reg;
    if (reg->contains(addr, want) && reg->kind() == kind) {
      uint64_t id = identity_ ? identity_(addr, kind) : 0;
      if (id == reg->identity) {
        prev->second.last_use = clock_;
        ++stats_.hits;
        return reg;
      }
      // The memory behind these addresses changed (freed and allocated again): register anew.
      ++stats_.stale;
      erase_locked(prev);
    }
  }
  ++stats_.misses;
  // Page-aligned, and grown over overlapping entries so neighbouring buffers that share a page
  // do not evict each other. An overlapping entry may be stale (its memory unmapped since): if
  // the grown range cannot be registered, the request's own range is.
  const uintptr_t start = addr & ~(page_size() - 1);
  const uintptr_t end = (addr + want + page_size() - 1) & ~(page_size() - 1);
  uintptr_t grown_start = start, grown_end = end;
  for (auto o = entries_.begin(); o != entries_.end() && o->second.reg->start() < grown_end; ++o) {
    const auto& r = o->second.reg;
    if (r->end() > grown_start && r->kind() == kind) {
      grown_start = std::min(grown_start, r->start());
      grown_end = std::max(grown_end, r->end());
    }
  }
  std::shared_ptr<Registration> reg;
  if (grown_start != start || grown_end != end) {
    try {
      reg = register_(grown_start, grown_end - grown_start, kind);
    } catch (const std::exception&) {
      reg = nullptr;
    }
  }
  if (!reg) reg = register_(start, end - start, kind);
  for (auto o = entries_.begin(); o != entries_.end() && o->second.reg->start() < reg->end();) {
    if (o->second.reg->end() > reg->start())
      o = entries_.erase(o);
    else
      ++o;
  }
  reg->identity = identity_ ? identity_(addr, kind) : 0;
  entries_[reg->start()] = Entry{reg, clock_};
  evict_locked();
  return reg;
}

void MrCache::erase_locked(std::map<uintptr_t, Entry>::iterator it) { entries_.erase(it); }

void MrCache::evict_locked() {
  auto total = [&] {
    size_t b = 0;
    for (auto& [s, e] : entries_) b += e.reg->length();
    return b;
  };
  size_t bytes = total();
  while (bytes > max_bytes_) {
    // The least recently used entry that no message holds right now.
    auto victim = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->second.reg.use_count() > 1) continue;
      if (victim == entries_.end() || it->second.last_use < victim->second.last_use) victim = it;
    }
    if (victim == entries_.end()) break;
    bytes -= victim->second.reg->length();
    entries_.erase(victim);
    ++stats_.evictions;
  }
}

size_t MrCache::invalidate(const void* p, size_t n) {
  const uintptr_t start = reinterpret_cast<uintptr_t>(p), end = start + std::max<size_t>(n, 1);
  std::lock_guard lk(mu_);
  size_t dropped = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.reg->start() < end && it->second.reg->end() > start) {
      it = entries_.erase(it);
      ++dropped;
    } else {
      ++it;
    }
  }
  stats_.invalidations += dropped;
  return dropped;
}

void MrCache::clear() {
  std::lock_guard lk(mu_);
  entries_.clear();
}

MrCache::Stats MrCache::stats() const {
  std::lock_guard lk(mu_);
  Stats s = stats_;
  s.entries = entries_.size();
  s.bytes = 0;
  for (auto& [start, e] : entries_) s.bytes += e.reg->length();
  return s;
}

size_t invalidate_registrations(const void* p, size_t n) {
  std::lock_guard g(g_caches_mu);
  size_t dropped = 0;
  for (MrCache* c : caches()) dropped += c->invalidate(p, n);
  return dropped;
}

}  // namespace ringlink::verbs
