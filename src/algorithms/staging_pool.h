// Fixed-size staging slots carved from one buffer the engine allocated, touched and registered
// once. Receives that must be combined with local data land here.
#pragma once

#include <cstddef>
#include <vector>

#include "transport.h"

namespace ringlink::algo {

class StagingPool {
 public:
  StagingPool(std::byte* base, size_t slot_bytes, int slots, MemoryRegion* mr)
      : base_(base), slot_bytes_(slot_bytes), mr_(mr) {
    for (int i = slots - 1; i >= 0; --i) free_.push_back(i);
  }
  int available() const { return static_cast<int>(free_.size()); }
  MemoryRegion* mr() const { return mr_; }
  // -1 when none is free.
  int acquire() {
    if (free_.empty()) return -1;
    int s = free_.back();
    free_.pop_back();
    return s;
  }
  void release(int s) {
    if (s >= 0) free_.push_back(s);
  }
  std::byte* at(int s) const { return base_ + static_cast<size_t>(s) * slot_bytes_; }

 private:
  std::byte* base_;
  size_t slot_bytes_;
  MemoryRegion* mr_;
  std::vector<int> free_;
};

}  // namespace ringlink::algo
