// Scalar float16/bfloat16 <-> float32 conversions (bit exact, round-to-nearest-even), and row
// converters that use F16C where the translation unit is compiled for it.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "longattn/longattn.h"

namespace longattn::cpu {

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }
inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                         // round to nearest even
  return uint16_t(u >> 16);
}

inline float f16_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp == 0) {
    if (man == 0) return bits_to_float(sign);
    // Subnormal: value = man * 2^-24.
    float v = float(man) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return bits_to_float(sign | ((exp + 112) << 23) | (man << 13));
}

inline uint16_t float_to_f16(float f) {
  uint32_t u = float_to_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);   // nan
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // overflow (incl. rounding) -> inf
  if (a < 0x38800000u) {                                  // subnormal or zero in f16
    // Round a * 2^24 to the nearest integer (ties to even) using float arithmetic.
    float v = bits_to_float(a) * 16777216.0f;
    float r = v + 8388608.0f - 8388608.0f;  // RNE in the current (default) rounding mode
    return uint16_t(sign | uint32_t(r));
  }
  uint32_t mant_odd = (a >> 13) & 1u;
  a += 0xfffu + mant_odd;
  return uint16_t(sign | ((a - 0x38000000u) >> 13));
}

// dst[0..n) = float(src[0..n)) * mul
inline void load_row(const void* src, int32_t dtype, int64_t n, float mul, float* dst) {
  if (dtype == LONGATTN_FLOAT32) {
    const float* s = static_cast<const float*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = s[i] * mul;
  } else if (dtype == LONGATTN_BFLOAT16) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = bits_to_float(uint32_t(s[i]) << 16) * mul;
  } else {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    int64_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8) {
      __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
      _mm256_storeu_ps(dst + i, _mm256_mul_ps(v, _mm256_set1_ps(mul)));
    }
#endif
    for (; i < n; ++i) dst[i] = f16_to_float(s[i]) * mul;
  }
}

// dst[0..n) (dtype) = src[0..n) * mul, rounded to nearest even.
inline void store_row(const float* src, float mul, int64_t n, int32_t dtype, void* dst) {
  if (dtype == LONGATTN_FLOAT32) {
    float* d = static_cast<float*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = src[i] * mul;
  } else if (dtype == LONGATTN_BFLOAT16) {
    uint16_t* d = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(src[i] * mul);
  } else {
    uint16_t* d = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = float_to_f16(src[i] * mul);
  }
}

}  // namespace longattn::cpu
