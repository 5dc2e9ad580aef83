// The memory model's single source of truth. A path describes its transient buffers once, as a
// WorkspaceLayout; the router sums that layout to report transient_bytes, and the kernel carves the
// same layout out of one Arena. Prediction and allocation cannot drift apart because they are the
// same function, and the Arena checks at the end that every predicted byte was taken and no more.
#pragma once

#include <cstdint>

#include "core/detail.hpp"

namespace longattn::detail {

// Every buffer starts on a cache line (and a full AVX-512 vector).
constexpr int64_t kWorkspaceAlign = 64;

struct WorkspaceLayout {
  int64_t total = 0;
  // Reserves `count` elements of `elem_bytes` and returns their offset.
  int64_t add(int64_t count, int64_t elem_bytes) {
    int64_t bytes = checked_mul(count, elem_bytes, "transient memory");
    int64_t offset = total;
    total = checked_add(total, round_up(bytes, kWorkspaceAlign), "transient memory");
    return offset;
  }
};

// Hands out consecutive slices of caller- or library-owned memory, in layout order.
class Arena {
 public:
  Arena(void* base, int64_t bytes) : base_(static_cast<char*>(base)), size_(bytes) {}
  template <class T>
  T* take(int64_t count) {
    int64_t bytes =
        round_up(checked_mul(count, int64_t(sizeof(T)), "transient memory"), kWorkspaceAlign);
    if (used_ + bytes > size_)
      fail(LONGATTN_INTERNAL_ERROR, "workspace overrun: %lld + %lld > %lld bytes", (long long)used_,
           (long long)bytes, (long long)size_);
    T* p = reinterpret_cast<T*>(base_ + used_);
    used_ += bytes;
    return p;
  }
  int64_t used() const { return used_; }
  int64_t size() const { return size_; }

 private:
  char* base_;
  int64_t size_;
  int64_t used_ = 0;
};

}  // namespace longattn::detail
