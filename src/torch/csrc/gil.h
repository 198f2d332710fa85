// Releases the Python GIL for a scope when the calling thread holds it (and does nothing
// otherwise), without making every file that needs this include Python's headers.
#pragma once

namespace ringlink_torch {

class ReleasedGil {
 public:
  ReleasedGil();
  ~ReleasedGil();
  ReleasedGil(const ReleasedGil&) = delete;
  ReleasedGil& operator=(const ReleasedGil&) = delete;

 private:
  void* saved_ = nullptr;  // PyThreadState*
};

}  // namespace ringlink_torch
