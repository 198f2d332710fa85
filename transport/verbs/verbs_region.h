// A memory region the verbs transport handed out: the user's range and its registration.
#pragma once

#include <memory>

#include "transport.h"
#include "transport/verbs/mr_cache.h"

namespace ringlink::verbs {

class VerbsRegion final : public MemoryRegion {
 public:
  VerbsRegion(void* addr, size_t bytes, MemoryKind kind, std::shared_ptr<Registration> reg)
      : MemoryRegion(addr, bytes, kind), reg_(std::move(reg)) {}
  const std::shared_ptr<Registration>& registration() const { return reg_; }

 private:
  std::shared_ptr<Registration> reg_;  // null for CUDA memory that is staged
};

}  // namespace ringlink::verbs
