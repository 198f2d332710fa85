#include "bench/buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>

namespace ringlink::bench {

Buffer::Buffer(size_t bytes) : size_(bytes) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t mapped = std::max(page, (bytes + page - 1) / page * page);
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  // First touch now, so no page fault is ever timed.
  std::memset(p, 0, mapped);
  data_ = p;
}

Buffer::~Buffer() {
  if (data_) {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    ::munmap(data_, std::max(page, (size_ + page - 1) / page * page));
  }
}

Buffer::Buffer(Buffer&& o) noexcept : data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    this->~Buffer();
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

}  // namespace ringlink::bench
