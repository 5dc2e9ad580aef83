// Row converters float16/bfloat16 <-> float32 (bit exact, round-to-nearest-even) that use F16C
// where the translation unit is compiled for it, and FP8 -> float32 (exact, by table); the scalar
// conversions come from core/numeric.hpp.
#pragma once

#include <cstdint>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "core/numeric.hpp"
#include "longattn/longattn.h"

namespace longattn::cpu {

// The scalar conversions are core/numeric.hpp's; the row converters below must match them bit for
// bit.
using numeric::bf16_to_float;
using numeric::f16_to_float;
using numeric::float_to_bf16;
using numeric::float_to_f16;

// The 256 values of an FP8 format (numeric::e4m3_to_float / e5m2_to_float), for row conversion.
// Built once, in a translation unit of the baseline ISA (paths_cpu.cpp): this header is compiled
// for every ISA, and an inline builder could be taken from an AVX-512 one.
struct Fp8Table {
  float e4m3[256], e5m2[256];
};
const Fp8Table& fp8_table();

// dst[0..n) = float(src[0..n)) * mul
inline void load_row(const void* src, int32_t dtype, int64_t n, float mul, float* dst) {
  if (numeric::is_fp8(dtype)) {
    const Fp8Table& t = fp8_table();
    const float* value = dtype == LONGATTN_FLOAT8_E4M3 ? t.e4m3 : t.e5m2;
    const uint8_t* s = static_cast<const uint8_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = value[s[i]] * mul;
  } else if (dtype == LONGATTN_FLOAT32) {
    const float* s = static_cast<const float*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = s[i] * mul;
  } else if (dtype == LONGATTN_BFLOAT16) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(s[i]) * mul;
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
