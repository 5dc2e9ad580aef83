// The one home of scalar number formats and hashes, shared by the library, the engine, the CLI and
// the tests: float32 <-> bfloat16, float16 and OCP FP8 (E4M3, E5M2), all round-to-nearest-even and
// bit exact; dtype-generic load / store / round helpers; splitmix64 and FNV-1a. Plain C++17, header
// only, no CUDA. tests/numeric_test.cpp checks every 16- and 8-bit code and sweeps of floats
// against a slow reference written independently of this file.
//
// The vectorized (SIMD) conversions in src/cpu/ are separate; they must agree bit for bit with the
// scalar ones here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "longattn/longattn.h"

// With __builtin_bit_cast (GCC >= 11, Clang >= 9) the conversions are constexpr.
#if defined(__has_builtin)
#if __has_builtin(__builtin_bit_cast)
#define LONGATTN_NUMERIC_BIT_CAST 1
#endif
#endif
#if defined(LONGATTN_NUMERIC_BIT_CAST)
#define LONGATTN_NUMERIC_CONSTEXPR constexpr
#else
#define LONGATTN_NUMERIC_CONSTEXPR inline
#endif

namespace longattn::numeric {

// ---- float32 bits

LONGATTN_NUMERIC_CONSTEXPR uint32_t float_bits(float f) {
#if defined(LONGATTN_NUMERIC_BIT_CAST)
  return __builtin_bit_cast(uint32_t, f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
LONGATTN_NUMERIC_CONSTEXPR float bits_float(uint32_t u) {
#if defined(LONGATTN_NUMERIC_BIT_CAST)
  return __builtin_bit_cast(float, u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// m / 2^s rounded to nearest, ties to even; 1 <= s <= 31.
constexpr uint32_t shift_right_rne(uint32_t m, int s) {
  const uint32_t q = m >> s, rem = m & ((1u << s) - 1u), half = 1u << (s - 1);
  return q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
}

// ---- bfloat16: the upper half of a float32

// Adding 0x7fff plus the lowest kept bit carries into the kept half exactly when the dropped half
// is above the midpoint, or at it with an odd kept half; a carry into the exponent is the right
// answer (up to inf). NaN stays a NaN (sign and upper payload kept, quiet bit set). Float
// subnormals round like the rest (AVX512-BF16's vcvtneps2bf16 would flush them to zero).
LONGATTN_NUMERIC_CONSTEXPR uint16_t float_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
LONGATTN_NUMERIC_CONSTEXPR float bf16_to_float(uint16_t h) { return bits_float(uint32_t(h) << 16); }

// ---- float16: IEEE binary16 (5 exponent bits, bias 15, 10 mantissa bits)

// Overflow (65520 and up: the tie above 65504 rounds to even, which is inf) gives +-inf, NaN the
// quiet NaN 0x7e00 with the sign kept, values below 2^-14 become subnormals (or zero).
LONGATTN_NUMERIC_CONSTEXPR uint16_t float_to_f16(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);
  if (a < 0x38800000u) {                          // below 2^-14: a subnormal, in units of 2^-24
    if (a <= 0x33000000u) return uint16_t(sign);  // at most 2^-25, half a unit: ties to 0
    // a = m * 2^(e - 150) with the implicit bit in m; in units of 2^-24 that is m >> (126 - e).
    // 1024 units is the smallest normal, which is also its encoding.
    const uint32_t m = (a & 0x7fffffu) | 0x800000u;
    return uint16_t(sign | shift_right_rne(m, 126 - int(a >> 23)));
  }
  // Keep 10 of 23 mantissa bits (rounded to even), rebias the exponent from 127 to 15; a carry
  // out of the mantissa bumps the exponent, correctly.
  const uint32_t rounded = a + 0xfffu + ((a >> 13) & 1u);
  return uint16_t(sign | ((rounded >> 13) - ((127u - 15u) << 10)));
}
// Exact. inf stays inf; a NaN keeps its sign and payload.
LONGATTN_NUMERIC_CONSTEXPR float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {  // zero or subnormal: man * 2^-24, exact in float
    const float v = float(man) * 0x1p-24f;
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 127u - 15u) << 23) | (man << 13));
}

// ---- FP8 (OCP 8-bit floating point, v1.0)
//
// E4M3: bias 7, no infinities, one NaN per sign (0x7f, 0xff); largest finite 448 (0x7e).
// E5M2: bias 15, IEEE-like (the upper byte of a float16): inf 0x7c, NaN 0x7d..0x7f; largest finite
// 57344 (0x7b).
// Rounding is to nearest even as if the exponent were unbounded; a result past the largest finite
// value overflows: by default to inf (E5M2) or NaN (E4M3), with `saturate` to +-max, infinities
// included (CUDA's __NV_SATFINITE). NaN always gives NaN (0x7f for E4M3, 0x7e for E5M2, sign kept).

namespace fp8_detail {

// |x| (its float bits `a`, not NaN) in a format of M mantissa bits and exponent bias B: the
// rounded magnitude code, which may exceed the largest finite code.
template <int M, int B>
constexpr uint32_t magnitude_code(uint32_t a) {
  constexpr uint32_t kMinNormal = uint32_t(127 - B + 1) << 23;  // float bits of 2^(1 - B)
  if (a >= kMinNormal) {
    constexpr int s = 23 - M;
    const uint32_t rounded = a + ((1u << (s - 1)) - 1u) + ((a >> s) & 1u);
    return (rounded >> s) - (uint32_t(127 - B) << M);
  }
  // Subnormal target, in units of 2^(1 - B - M): a = m * 2^(e - 150), so m >> (151 - B - M - e).
  // Float zeros and subnormals (e = 0) shift out to 0, as does anything below half a unit.
  const int s = 151 - B - M - int(a >> 23);
  if (s > 24) return 0;
  return shift_right_rne((a & 0x7fffffu) | 0x800000u, s);
}

template <int M, int B, uint32_t kMaxCode, uint32_t kOverflowCode, uint32_t kNanCode>
LONGATTN_NUMERIC_CONSTEXPR uint8_t encode(float x, bool saturate) {
  const uint32_t u = float_bits(x);
  const uint32_t sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint8_t(sign | kNanCode);
  uint32_t c = magnitude_code<M, B>(a);
  if (c > kMaxCode) c = saturate ? kMaxCode : kOverflowCode;
  return uint8_t(sign | c);
}

}  // namespace fp8_detail

LONGATTN_NUMERIC_CONSTEXPR uint8_t float_to_e4m3(float x, bool saturate = false) {
  return fp8_detail::encode<3, 7, 0x7e, 0x7f, 0x7f>(x, saturate);
}
LONGATTN_NUMERIC_CONSTEXPR uint8_t float_to_e5m2(float x, bool saturate = false) {
  return fp8_detail::encode<2, 15, 0x7b, 0x7c, 0x7e>(x, saturate);
}

// Exact; NaN codes give a quiet float NaN with the sign kept.
LONGATTN_NUMERIC_CONSTEXPR float e4m3_to_float(uint8_t c) {
  const uint32_t sign = uint32_t(c & 0x80u) << 24, exp = (c >> 3) & 0xfu, man = c & 0x7u;
  if ((c & 0x7fu) == 0x7fu) return bits_float(sign | 0x7fc00000u);
  if (exp == 0) {  // zero or subnormal: man * 2^-9
    const float v = float(man) * 0x1p-9f;
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 127u - 7u) << 23) | (man << 20));
}
LONGATTN_NUMERIC_CONSTEXPR float e5m2_to_float(uint8_t c) {
  const uint32_t sign = uint32_t(c & 0x80u) << 24, exp = (c >> 2) & 0x1fu, man = c & 0x3u;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (man != 0 ? 0x400000u | (man << 21) : 0));
  if (exp == 0) {  // zero or subnormal: man * 2^-16
    const float v = float(man) * 0x1p-16f;
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 127u - 15u) << 23) | (man << 21));
}

// ---- round trips: the float a value becomes when stored in a narrower format

LONGATTN_NUMERIC_CONSTEXPR float round_to_bf16(float x) { return bf16_to_float(float_to_bf16(x)); }
LONGATTN_NUMERIC_CONSTEXPR float round_to_f16(float x) { return f16_to_float(float_to_f16(x)); }
LONGATTN_NUMERIC_CONSTEXPR float round_to_e4m3(float x, bool saturate = false) {
  return e4m3_to_float(float_to_e4m3(x, saturate));
}
LONGATTN_NUMERIC_CONSTEXPR float round_to_e5m2(float x, bool saturate = false) {
  return e5m2_to_float(float_to_e5m2(x, saturate));
}

// Bytes of one element of `dtype` (a longattn_dtype); 0 for a code that is none.
constexpr int64_t dtype_bytes(int32_t dtype) {
  switch (dtype) {
    case LONGATTN_FLOAT32:
      return 4;
    case LONGATTN_FLOAT16:
    case LONGATTN_BFLOAT16:
      return 2;
    case LONGATTN_FLOAT8_E4M3:
    case LONGATTN_FLOAT8_E5M2:
      return 1;
  }
  return 0;
}

// The dtype's short name, as the CLI's flags spell it (f32, f16, bf16, e4m3, e5m2); "?" for a code
// that is none.
constexpr const char* dtype_short_name(int32_t dtype) {
  switch (dtype) {
    case LONGATTN_FLOAT32:
      return "f32";
    case LONGATTN_FLOAT16:
      return "f16";
    case LONGATTN_BFLOAT16:
      return "bf16";
    case LONGATTN_FLOAT8_E4M3:
      return "e4m3";
    case LONGATTN_FLOAT8_E5M2:
      return "e5m2";
  }
  return "?";
}

constexpr bool is_fp8(int32_t dtype) {
  return dtype == LONGATTN_FLOAT8_E4M3 || dtype == LONGATTN_FLOAT8_E5M2;
}

// The dtype of K and V elements: longattn_args.kv_dtype, where 0 means the same as dtype (Q, O).
constexpr int32_t kv_dtype_or_same(int32_t dtype, int32_t kv_dtype) {
  return kv_dtype ? kv_dtype : dtype;
}

// x as stored in a tensor of `dtype` (a longattn_dtype), read back; float32 keeps x, FP8
// saturates.
LONGATTN_NUMERIC_CONSTEXPR float round_to_dtype(float x, int32_t dtype) {
  if (dtype == LONGATTN_FLOAT16) return round_to_f16(x);
  if (dtype == LONGATTN_BFLOAT16) return round_to_bf16(x);
  if (dtype == LONGATTN_FLOAT8_E4M3) return round_to_e4m3(x, /*saturate=*/true);
  if (dtype == LONGATTN_FLOAT8_E5M2) return round_to_e5m2(x, /*saturate=*/true);
  return x;
}

// Element i of a buffer of `dtype`, as a float (any alignment).
inline float load_element(int32_t dtype, const void* data, int64_t i) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  if (dtype == LONGATTN_FLOAT32) {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  }
  if (dtype == LONGATTN_FLOAT8_E4M3) return e4m3_to_float(p[i]);
  if (dtype == LONGATTN_FLOAT8_E5M2) return e5m2_to_float(p[i]);
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return dtype == LONGATTN_BFLOAT16 ? bf16_to_float(h) : f16_to_float(h);
}

// Stores x rounded to `dtype` as element i of `data` (any alignment); returns the value stored.
inline float store_element(int32_t dtype, void* data, int64_t i, float x) {
  unsigned char* p = static_cast<unsigned char*>(data);
  if (dtype == LONGATTN_FLOAT32) {
    std::memcpy(p + 4 * i, &x, 4);
    return x;
  }
  if (is_fp8(dtype)) {
    // Saturating, as FP8 caches are written (an out-of-range value keeps its sign, not NaN).
    p[i] = dtype == LONGATTN_FLOAT8_E4M3 ? float_to_e4m3(x, true) : float_to_e5m2(x, true);
    return load_element(dtype, data, i);
  }
  const uint16_t h = dtype == LONGATTN_BFLOAT16 ? float_to_bf16(x) : float_to_f16(x);
  std::memcpy(p + 2 * i, &h, 2);
  return dtype == LONGATTN_BFLOAT16 ? bf16_to_float(h) : f16_to_float(h);
}

// ---- hashes

// splitmix64 (Steele, Lea, Flood 2014): the generator's output for state x, i.e. its finalizer
// applied to x + the golden gamma. Every input bit affects every output bit; a generator is
// `z = splitmix64(state); state += kGoldenGamma;`.
constexpr uint64_t kGoldenGamma = 0x9e3779b97f4a7c15ull;
constexpr uint64_t splitmix64(uint64_t x) {
  x += kGoldenGamma;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// FNV-1a over bytes, 64- and 32-bit; `h` chains one call into the next.
constexpr uint64_t kFnv1a64Offset = 0xcbf29ce484222325ull;
constexpr uint32_t kFnv1a32Offset = 2166136261u;
inline uint64_t fnv1a64(const void* data, size_t n, uint64_t h = kFnv1a64Offset) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}
inline uint32_t fnv1a32(const void* data, size_t n, uint32_t h = kFnv1a32Offset) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 16777619u;
  return h;
}

}  // namespace longattn::numeric
