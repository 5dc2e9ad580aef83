// Host-side tensor helpers for the CLI: seeded random inputs stored in the requested dtype (the
// conversions are core/numeric.hpp's), and 64-byte aligned buffers.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "core/numeric.hpp"
#include "longattn/longattn.h"

namespace longattn::cli {

inline int64_t dtype_size(int32_t dtype) { return numeric::dtype_bytes(dtype); }

// splitmix64: tiny, seedable, and the same sequence on every platform (std distributions are not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    const uint64_t z = numeric::splitmix64(state_);
    state_ += numeric::kGoldenGamma;
    return z;
  }
  // Uniform in [lo, hi), with 24 random bits (all a float holds).
  float uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>(next() >> 40) * (1.0f / 16777216.0f);
  }

 private:
  uint64_t state_;
};

// Fills `count` elements of `dtype` with uniform values in [-1, 1). If `rounded` is given it
// receives, as float, exactly the values stored (after rounding to the dtype), so a float32
// reference sees the same inputs as the path under test.
inline void fill_random(int32_t dtype, void* data, int64_t count, uint64_t seed,
                        std::vector<float>* rounded = nullptr) {
  Rng rng(seed);
  if (rounded) rounded->resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    float stored = numeric::store_element(dtype, data, i, rng.uniform(-1.0f, 1.0f));
    if (rounded) (*rounded)[i] = stored;
  }
}

// A 64-byte aligned host allocation (what the library's vector loads like best).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(int64_t bytes) : bytes_(bytes) {
    size_t rounded = static_cast<size_t>((bytes + 63) / 64 * 64);
    data_.reset(std::aligned_alloc(64, rounded > 0 ? rounded : 64));
    if (!data_) throw std::bad_alloc();
  }
  void* data() const { return data_.get(); }
  int64_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> data_;
  int64_t bytes_ = 0;
};

}  // namespace longattn::cli
