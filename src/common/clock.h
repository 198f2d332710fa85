// Deadlines: every blocking wait in ringlink takes one.
#pragma once

#include <chrono>

namespace ringlink {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

class Deadline {
 public:
  static Deadline after(milliseconds d) { return Deadline(Clock::now() + d); }
  static Deadline never() { return Deadline(Clock::time_point::max()); }
  explicit Deadline(Clock::time_point at) : at_(at) {}

  Clock::time_point at() const { return at_; }
  bool expired() const { return Clock::now() >= at_; }
  // Remaining time, clamped at zero (and at a day, so it fits every API's int).
  milliseconds remaining() const {
    if (at_ == Clock::time_point::max()) return std::chrono::hours(24);
    auto left = std::chrono::duration_cast<milliseconds>(at_ - Clock::now());
    return left.count() < 0 ? milliseconds(0) : std::min<milliseconds>(left, std::chrono::hours(24));
  }

 private:
  Clock::time_point at_;
};

inline double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

}  // namespace ringlink
