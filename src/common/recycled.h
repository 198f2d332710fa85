// Storage reuse for objects made and freed once per message on the latency path (transport
// requests): a small per-thread free list instead of the heap, so a steady stream of small
// collectives allocates nothing. The allocator's own thread caches would do the same at a few
// times the cost (malloc + free was about 5 % of an 8-byte allreduce's samples).
#pragma once

#include <cstddef>
#include <new>

namespace ringlink {

// Derive as `class X final : public Base, public Recycled<X>`; X must be final (every block of
// a list has sizeof(X)). Blocks freed on another thread join that thread's list; each list keeps
// at most kKeep blocks and frees the rest, and is freed when its thread exits.
template <typename T, int kKeep = 32>
class Recycled {
 public:
  static void* operator new(std::size_t bytes) {
    FreeList& list = free_list();
    if (bytes == sizeof(T) && list.head) {
      Block* b = list.head;
      list.head = b->next;
      --list.count;
      return b;
    }
    return ::operator new(bytes);
  }
  static void operator delete(void* p, std::size_t bytes) {
    FreeList& list = free_list();
    if (bytes == sizeof(T) && list.count < kKeep) {
      list.head = new (p) Block{list.head};
      ++list.count;
      return;
    }
    ::operator delete(p);
  }

 private:
  struct Block {
    Block* next;
  };
  struct FreeList {
    Block* head = nullptr;
    int count = 0;
    ~FreeList() {
      while (head) {
        Block* next = head->next;
        ::operator delete(head);
        head = next;
      }
    }
  };
  static FreeList& free_list() {
    static_assert(sizeof(T) >= sizeof(Block));
    thread_local FreeList list;
    return list;
  }
};

}  // namespace ringlink
