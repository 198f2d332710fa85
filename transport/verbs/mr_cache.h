// Memory registration cache: user buffers are registered once and found again by address range,
// not registered per message (ibv_reg_mr pins pages and costs tens of microseconds to
// milliseconds). Entries never overlap: a request that straddles cached ranges registers their
// union (or, when that fails because one was stale, its own range) and replaces them.
// A registration stays alive while a message in flight uses it, even after the cache drops it.
//
// A cached registration is only right while the memory behind the addresses stays the same. For
// CUDA memory every hit checks the allocation's buffer ID, so a freed and reallocated range is
// registered anew. For host memory no cheap check exists: whoever frees or remaps registered
// memory calls invalidate() (or invalidate_registrations() for every transport in the process).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "ringlink/types.h"

namespace ringlink::verbs {

// One registered range with its keys; `release` deregisters it when the last holder lets go.
class Registration {
 public:
  Registration(uintptr_t start, size_t length, MemoryKind kind, uint32_t lkey, uint32_t rkey,
               std::function<void()> release)
      : start_(start), length_(length), kind_(kind), lkey_(lkey), rkey_(rkey), release_(std::move(release)) {}
  ~Registration() {
    if (release_) release_();
  }
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;

  uintptr_t start() const { return start_; }
  size_t length() const { return length_; }
  uintptr_t end() const { return start_ + length_; }
  MemoryKind kind() const { return kind_; }
  uint32_t lkey() const { return lkey_; }
  uint32_t rkey() const { return rkey_; }
  bool contains(uintptr_t p, size_t n) const { return p >= start_ && p + n <= end() && p + n >= p; }

  uint64_t identity = 0;  // the allocation it was made for (CUDA buffer ID), checked on hits

 private:
  uintptr_t start_;
  size_t length_;
  MemoryKind kind_;
  uint32_t lkey_, rkey_;
  std::function<void()> release_;
};

class MrCache {
 public:
  // Registers at least [start, start + length) (page-aligned by the cache; it may cover more, such
  // as a whole CUDA allocation). Throws ringlink::Error when registration fails.
  using RegisterFn = std::function<std::shared_ptr<Registration>(uintptr_t start, size_t length, MemoryKind kind)>;
  // The identity of the allocation at `p` (CUDA buffer ID); 0 when there is none to check.
  using IdentityFn = std::function<uint64_t(uintptr_t p, MemoryKind kind)>;

  MrCache(RegisterFn reg, size_t max_bytes, IdentityFn identity = {});
  ~MrCache();
  MrCache(const MrCache&) = delete;
  MrCache& operator=(const MrCache&) = delete;

  // The registration covering [p, p + n): a cached one, or a new one.
  std::shared_ptr<Registration> acquire(const void* p, size_t n, MemoryKind kind);

  // Drops every cached entry that overlaps [p, p + n). Messages in flight keep theirs until done.
  size_t invalidate(const void* p, size_t n);
  void clear();

  struct Stats {
    uint64_t hits = 0, misses = 0, evictions = 0, invalidations = 0, stale = 0;
    size_t entries = 0, bytes = 0;
  };
  Stats stats() const;

 private:
  struct Entry {
    std::shared_ptr<Registration> reg;
    uint64_t last_use = 0;
  };
  void erase_locked(std::map<uintptr_t, Entry>::iterator it);
  void evict_locked();

  RegisterFn register_;
  IdentityFn identity_;
  size_t max_bytes_;
  mutable std::mutex mu_;
  std::map<uintptr_t, Entry> entries_;  // by start; ranges never overlap
  uint64_t clock_ = 0;
  Stats stats_;
};

// Invalidates [p, p + n) in every live cache of the process; returns the entries dropped.
size_t invalidate_registrations(const void* p, size_t n);

}  // namespace ringlink::verbs
