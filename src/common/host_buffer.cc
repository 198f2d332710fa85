#include "common/host_buffer.h"

#include <sys/mman.h>

#include <cstring>
#include <new>

namespace ringlink {
namespace {
constexpr size_t kHugePage = 2u << 20;
}

HostBuffer::HostBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  // Round up to 2 MiB and ask for transparent huge pages: one fault per 2 MiB instead of per
  // 4 KiB, and fewer TLB misses when the reduction kernels stream through the buffer.
  mapped_ = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  ::madvise(p, mapped_, MADV_HUGEPAGE);
  std::memset(p, 0, mapped_);  // touch every page now
  data_ = p;
}

HostBuffer::~HostBuffer() { release(); }

HostBuffer& HostBuffer::operator=(HostBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    mapped_ = std::exchange(o.mapped_, 0);
  }
  return *this;
}

void HostBuffer::release() {
  if (data_) ::munmap(data_, mapped_);
  data_ = nullptr;
  bytes_ = 0;
  mapped_ = 0;
}

}  // namespace ringlink
