// Host-side tensor helpers for the CLI: float <-> bfloat16 / float16 conversions, seeded random
// inputs stored in the requested dtype, and 64-byte aligned buffers.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "longattn/longattn.h"

namespace longattn::cli {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round-to-nearest-even: adding 0x7fff plus the lowest kept bit carries into the kept half
// exactly when the dropped half is above the midpoint, or at it with an odd kept half. Subnormal
// floats round like the rest (AVX512-BF16's vcvtneps2bf16 would flush them to zero).
inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float bf16_to_float(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

// IEEE binary16, round-to-nearest-even; overflow gives +-inf, tiny values become subnormals.
inline uint16_t float_to_f16(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t mag = u & 0x7fffffffu;
  if (mag >= 0x7f800000u)  // inf stays inf, NaN stays a (quiet) NaN
    return sign | 0x7c00 | (mag > 0x7f800000u ? 0x200 : 0);
  // 65520 is halfway between 65504 (the largest half) and 65536; the tie rounds to even = inf.
  if (mag >= 0x477ff000u) return sign | 0x7c00;
  if (mag < 0x38800000u) {  // below 2^-14: a half subnormal, in units of 2^-24
    // Scaling by 2^24 is exact and nearbyint rounds to nearest even in the default FP mode.
    float units = std::nearbyint(bits_float(mag) * 16777216.0f);
    return sign | static_cast<uint16_t>(units);  // 1024 units is the smallest normal: still right
  }
  // Normal: keep 10 of 23 mantissa bits (rounded to even), rebias the exponent from 127 to 15. A
  // carry out of the mantissa correctly bumps the exponent.
  uint32_t rounded = mag + 0xfffu + ((mag >> 13) & 1u);
  return sign | static_cast<uint16_t>((rounded >> 13) - ((127u - 15u) << 10));
}
inline float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24 is exact in float
    float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return bits_float(float_bits(v) | sign);
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));
  return bits_float(sign | ((exp + 127u - 15u) << 23) | (mant << 13));
}

inline int64_t dtype_size(int32_t dtype) { return dtype == LONGATTN_FLOAT32 ? 4 : 2; }

// Stores `x` as element i of a buffer of `dtype` and returns the value actually stored.
inline float store_as(int32_t dtype, void* data, int64_t i, float x) {
  switch (dtype) {
    case LONGATTN_FLOAT16: {
      uint16_t h = float_to_f16(x);
      static_cast<uint16_t*>(data)[i] = h;
      return f16_to_float(h);
    }
    case LONGATTN_BFLOAT16: {
      uint16_t h = float_to_bf16(x);
      static_cast<uint16_t*>(data)[i] = h;
      return bf16_to_float(h);
    }
    default:
      static_cast<float*>(data)[i] = x;
      return x;
  }
}

inline float load_as(int32_t dtype, const void* data, int64_t i) {
  switch (dtype) {
    case LONGATTN_FLOAT16:
      return f16_to_float(static_cast<const uint16_t*>(data)[i]);
    case LONGATTN_BFLOAT16:
      return bf16_to_float(static_cast<const uint16_t*>(data)[i]);
    default:
      return static_cast<const float*>(data)[i];
  }
}

// splitmix64: tiny, seedable, and the same sequence on every platform (std distributions are not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
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
    float stored = store_as(dtype, data, i, rng.uniform(-1.0f, 1.0f));
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
