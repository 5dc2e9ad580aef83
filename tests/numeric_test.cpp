// src/core/numeric.hpp against a slow reference written from the format definitions alone: every
// bfloat16, float16 and FP8 (E4M3, E5M2) code decoded with ldexp, every float rounded by finding
// the two neighbouring codes and comparing with their midpoint in double (exact here). Covers all
// 16- and 8-bit codes, the midpoints between them (ties) and their float neighbours, and a sweep
// over float bit patterns; plus the hashes' known values.
#include "core/numeric.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace longattn_test {
namespace {

namespace num = longattn::numeric;

// A binary floating-point format of 1 + E + M bits. `ieee`: the top exponent holds inf and NaNs;
// otherwise (E4M3) only the all-ones code of each sign is NaN and there is no inf.
struct Format {
  const char* name;
  int exp_bits, man_bits, bias;
  bool ieee;
  int bits() const { return 1 + exp_bits + man_bits; }
  uint32_t sign_bit() const { return 1u << (exp_bits + man_bits); }
  uint32_t codes() const { return 1u << bits(); }
};

constexpr Format kBf16{"bf16", 8, 7, 127, true};
constexpr Format kF16{"f16", 5, 10, 15, true};
constexpr Format kE4m3{"e4m3", 4, 3, 7, false};
constexpr Format kE5m2{"e5m2", 5, 2, 15, true};

double ref_decode(const Format& f, uint32_t code) {
  const bool neg = (code & f.sign_bit()) != 0;
  const uint32_t mag = code & (f.sign_bit() - 1);
  const int e = int(mag >> f.man_bits), m = int(mag & ((1u << f.man_bits) - 1));
  const int e_max = (1 << f.exp_bits) - 1;
  double v;
  if (f.ieee && e == e_max)
    v = m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  else if (!f.ieee && e == e_max && m == (1 << f.man_bits) - 1)
    v = std::numeric_limits<double>::quiet_NaN();
  else if (e == 0)
    v = std::ldexp(double(m), 1 - f.bias - f.man_bits);
  else
    v = std::ldexp(double((1 << f.man_bits) + m), e - f.bias - f.man_bits);
  return neg ? -v : v;
}

// Rounds floats to a format: nearest, ties to the even code, as if the exponent were unbounded;
// what passes the largest finite value overflows (to inf, NaN or, saturating, the largest value).
class RefRounder {
 public:
  explicit RefRounder(const Format& f) : f_(f) {
    for (uint32_t c = 0; c < f.sign_bit(); ++c) {
      const double v = ref_decode(f, c);
      if (std::isfinite(v)) values_.push_back(v);  // increasing with the code
    }
    max_code_ = uint32_t(values_.size() - 1);
    // The value the next code would have with an unbounded exponent: max + one ulp of max.
    const int e_max = int(max_code_ >> f.man_bits);
    past_max_ = values_.back() + std::ldexp(1.0, e_max - f.bias - f.man_bits);
  }
  uint32_t max_code() const { return max_code_; }
  double past_max() const { return past_max_; }

  // The code of x, or NaN codes left to the caller (x must not be NaN).
  uint32_t round(float x, bool saturate) const {
    const uint32_t sign = std::signbit(x) ? f_.sign_bit() : 0;
    const double a = std::fabs(double(x));
    uint32_t c = 0;
    if (a > past_max_) {
      c = max_code_ + 1;
    } else {
      // values_[lo] <= a < values_[lo + 1] (or past_max_).
      const size_t lo =
          size_t(std::upper_bound(values_.begin(), values_.end(), a) - values_.begin()) - 1;
      const double below = values_[lo],
                   above = lo + 1 < values_.size() ? values_[lo + 1] : past_max_;
      const double mid = (below + above) / 2;  // exact: a few significant bits, in range
      if (a == below || a < mid)
        c = uint32_t(lo);
      else if (a > mid)
        c = uint32_t(lo + 1);
      else
        c = uint32_t(lo % 2 == 0 ? lo : lo + 1);  // the even code
    }
    if (c > max_code_) c = saturate ? max_code_ : overflow_code();
    return sign | c;
  }
  uint32_t overflow_code() const {
    // inf for IEEE-like formats (exponent all ones, mantissa 0), the NaN for E4M3.
    return f_.ieee ? ((1u << f_.exp_bits) - 1) << f_.man_bits : f_.sign_bit() - 1;
  }

  // Floats that test the rounding hardest: every value, every midpoint and their neighbours.
  std::vector<float> probes() const {
    std::vector<float> out;
    auto add = [&](double d) {
      const float f = float(d);
      if (double(f) != d || !std::isfinite(f)) return;
      for (float g : {f, std::nextafter(f, 0.0f), std::nextafter(f, INFINITY)})
        for (float s : {g, -g}) out.push_back(s);
    };
    for (size_t i = 0; i < values_.size(); ++i) {
      const double next = i + 1 < values_.size() ? values_[i + 1] : past_max_;
      add(values_[i]);
      add((values_[i] + next) / 2);
    }
    add(past_max_);
    return out;
  }

 private:
  Format f_;
  std::vector<double> values_;
  uint32_t max_code_;
  double past_max_;
};

// Floats over every sign, exponent and leading 8 mantissa bits (2^20 bit patterns, the low 12
// bits scrambled), plus the specials.
std::vector<float> float_sweep() {
  std::vector<float> out;
  for (uint32_t i = 0; i < (1u << 20); ++i)
    out.push_back(num::bits_float((i << 12) | ((i * 2654435761u) >> 20)));
  for (float f : {0.0f, -0.0f, INFINITY, -INFINITY, std::numeric_limits<float>::max(),
                  std::numeric_limits<float>::min(), std::numeric_limits<float>::denorm_min()})
    out.push_back(f);
  return out;
}

bool same_bits(float a, float b) { return num::float_bits(a) == num::float_bits(b); }

// ---- the 16-bit formats

TEST(Numeric, Bf16EveryCode) {
  for (uint32_t c = 0; c < kBf16.codes(); ++c) {
    const uint16_t h = uint16_t(c);
    const float f = num::bf16_to_float(h);
    const double ref = ref_decode(kBf16, c);
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << c;
      ASSERT_EQ(num::float_to_bf16(f), h | 0x40) << std::hex << c;  // quieted, payload kept
    } else {
      ASSERT_EQ(double(f), ref) << std::hex << c;
      ASSERT_EQ(std::signbit(f), (c & 0x8000) != 0) << std::hex << c;
      ASSERT_EQ(num::float_to_bf16(f), h) << std::hex << c;
    }
  }
}

TEST(Numeric, F16EveryCode) {
  for (uint32_t c = 0; c < kF16.codes(); ++c) {
    const uint16_t h = uint16_t(c);
    const float f = num::f16_to_float(h);
    const double ref = ref_decode(kF16, c);
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << c;
      ASSERT_EQ(num::float_to_f16(f), (c & 0x8000) | 0x7e00) << std::hex << c;
    } else {
      ASSERT_EQ(double(f), ref) << std::hex << c;
      ASSERT_EQ(std::signbit(f), (c & 0x8000) != 0) << std::hex << c;
      ASSERT_EQ(num::float_to_f16(f), h) << std::hex << c;
    }
  }
}

void check_16bit_rounding(const Format& fmt, uint16_t (*encode)(float)) {
  const RefRounder ref(fmt);
  std::vector<float> xs = ref.probes();
  const std::vector<float> sweep = float_sweep();
  xs.insert(xs.end(), sweep.begin(), sweep.end());
  for (float x : xs) {
    if (std::isnan(x)) continue;
    ASSERT_EQ(encode(x), ref.round(x, false))
        << fmt.name << " " << std::hex << num::float_bits(x) << " (" << x << ")";
  }
}

TEST(Numeric, Bf16RoundsToNearestEven) {
  check_16bit_rounding(kBf16, [](float x) { return num::float_to_bf16(x); });
}
TEST(Numeric, F16RoundsToNearestEven) {
  check_16bit_rounding(kF16, [](float x) { return num::float_to_f16(x); });
}

TEST(Numeric, NaNStaysQuietNaN) {
  for (uint32_t u :
       {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fbfffffu, 0x7fffffffu}) {
    const float x = num::bits_float(u);
    const uint16_t b = num::float_to_bf16(x), h = num::float_to_f16(x);
    EXPECT_EQ(b, uint16_t((u >> 16) | 0x40)) << std::hex << u;  // sign, upper payload, quiet bit
    EXPECT_TRUE(std::isnan(num::bf16_to_float(b)));
    EXPECT_EQ(h, uint16_t(((u >> 16) & 0x8000) | 0x7e00)) << std::hex << u;
    const uint8_t e4 = num::float_to_e4m3(x), e5 = num::float_to_e5m2(x);
    EXPECT_EQ(e4, uint8_t(((u >> 24) & 0x80) | 0x7f)) << std::hex << u;
    EXPECT_EQ(e5, uint8_t(((u >> 24) & 0x80) | 0x7e)) << std::hex << u;
    EXPECT_EQ(num::float_to_e4m3(x, true), e4);
    EXPECT_EQ(num::float_to_e5m2(x, true), e5);
  }
}

// Known encodings, ties and edges, written out.
TEST(Numeric, KnownValues) {
  EXPECT_EQ(num::float_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(num::float_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(num::float_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(num::float_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(num::float_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(num::float_to_f16(65520.0f), 0x7c00);  // tie at the top rounds to inf
  EXPECT_EQ(num::float_to_f16(-INFINITY), 0xfc00);
  EXPECT_EQ(num::float_to_f16(1.0f + 0x1p-11f), 0x3c00);      // tie -> even (down)
  EXPECT_EQ(num::float_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);  // tie -> even (up)
  EXPECT_EQ(num::float_to_f16(0x1p-24f), 0x0001);             // smallest subnormal
  EXPECT_EQ(num::float_to_f16(0x1p-25f), 0x0000);             // tie -> even (zero)
  EXPECT_EQ(num::float_to_f16(0x1.000002p-25f), 0x0001);      // just above the tie
  EXPECT_EQ(num::float_to_f16(3 * 0x1p-25f), 0x0002);         // tie -> even (up)
  EXPECT_EQ(num::float_to_f16(0x1p-14f - 0x1p-26f), 0x0400);  // rounds up into the normals
  EXPECT_EQ(num::f16_to_float(0x0001), 0x1p-24f);
  EXPECT_EQ(num::f16_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(num::f16_to_float(0xfc00), -INFINITY);
  EXPECT_TRUE(same_bits(num::f16_to_float(0x8000), -0.0f));

  EXPECT_EQ(num::float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(num::float_to_bf16(1.0f + 0x1p-8f), 0x3f80);                     // tie -> even (down)
  EXPECT_EQ(num::float_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);                 // tie -> even (up)
  EXPECT_EQ(num::float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);          // above the tie
  EXPECT_EQ(num::float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to inf
  EXPECT_EQ(num::float_to_bf16(0x1p-133f), 0x0001);  // a float subnormal: not flushed
  EXPECT_EQ(num::bf16_to_float(0xc040), -3.0f);

  EXPECT_EQ(num::float_to_e4m3(448.0f), 0x7e);
  EXPECT_EQ(num::float_to_e4m3(464.0f), 0x7e);  // tie between 448 and (480): even is 448
  EXPECT_EQ(num::float_to_e4m3(464.5f), 0x7f);  // past it: overflow is NaN
  EXPECT_EQ(num::float_to_e4m3(-464.5f, true), 0xfe);
  EXPECT_EQ(num::float_to_e4m3(INFINITY), 0x7f);
  EXPECT_EQ(num::float_to_e4m3(-INFINITY, true), 0xfe);
  EXPECT_EQ(num::float_to_e4m3(0x1p-9f), 0x01);   // smallest subnormal
  EXPECT_EQ(num::float_to_e4m3(0x1p-10f), 0x00);  // tie -> even (zero)
  EXPECT_EQ(num::float_to_e4m3(3 * 0x1p-10f), 0x02);
  EXPECT_EQ(num::float_to_e4m3(0x1p-6f), 0x08);  // smallest normal
  EXPECT_EQ(num::e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(num::e4m3_to_float(0x01), 0x1p-9f);
  EXPECT_TRUE(std::isnan(num::e4m3_to_float(0xff)));
  EXPECT_EQ(num::e4m3_to_float(0x78), 256.0f);  // exponent 15 is a normal exponent in E4M3

  EXPECT_EQ(num::float_to_e5m2(57344.0f), 0x7b);
  EXPECT_EQ(num::float_to_e5m2(61439.0f), 0x7b);
  EXPECT_EQ(num::float_to_e5m2(61440.0f), 0x7c);  // tie between 57344 and (65536): even is inf
  EXPECT_EQ(num::float_to_e5m2(61440.0f, true), 0x7b);
  EXPECT_EQ(num::float_to_e5m2(-INFINITY), 0xfc);
  EXPECT_EQ(num::float_to_e5m2(INFINITY, true), 0x7b);
  EXPECT_EQ(num::float_to_e5m2(0x1p-16f), 0x01);
  EXPECT_EQ(num::float_to_e5m2(0x1p-17f), 0x00);
  EXPECT_EQ(num::float_to_e5m2(1.0f + 0x1p-3f), 0x3c);  // tie -> even (down)
  EXPECT_EQ(num::float_to_e5m2(1.0f + 3 * 0x1p-3f), 0x3e);
  EXPECT_EQ(num::e5m2_to_float(0x7c), INFINITY);
  EXPECT_TRUE(std::isnan(num::e5m2_to_float(0x7d)));
}

// ---- FP8

void check_fp8(const Format& fmt, float (*decode)(uint8_t), uint8_t (*encode)(float, bool)) {
  const RefRounder ref(fmt);
  for (uint32_t c = 0; c < 256; ++c) {
    const float f = decode(uint8_t(c));
    const double want = ref_decode(fmt, c);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(f)) << fmt.name << " " << c;
      ASSERT_EQ(num::float_bits(f) & 0x7fc00000u, 0x7fc00000u) << fmt.name << " " << c;  // quiet
      ASSERT_EQ(std::signbit(f), c >= 0x80) << fmt.name << " " << c;
      continue;
    }
    ASSERT_EQ(double(f), want) << fmt.name << " " << c;
    ASSERT_EQ(std::signbit(f), c >= 0x80) << fmt.name << " " << c;
    ASSERT_EQ(encode(f, false), c) << fmt.name << " " << c;  // every value round-trips
    const bool is_inf = std::isinf(want);
    ASSERT_EQ(encode(f, true), is_inf ? (c & 0x80) | ref.max_code() : c) << fmt.name << " " << c;
  }
  std::vector<float> xs = ref.probes();
  const std::vector<float> sweep = float_sweep();
  xs.insert(xs.end(), sweep.begin(), sweep.end());
  for (float x : xs) {
    if (std::isnan(x)) continue;
    for (bool sat : {false, true})
      ASSERT_EQ(encode(x, sat), ref.round(x, sat))
          << fmt.name << (sat ? " saturating " : " ") << std::hex << num::float_bits(x) << " (" << x
          << ")";
  }
}

TEST(Numeric, E4m3EveryCodeAndSweep) {
  EXPECT_EQ(RefRounder(kE4m3).max_code(), 0x7eu);
  EXPECT_EQ(RefRounder(kE4m3).past_max(), 480.0);
  check_fp8(
      kE4m3, [](uint8_t c) { return num::e4m3_to_float(c); },
      [](float x, bool s) { return num::float_to_e4m3(x, s); });
}

TEST(Numeric, E5m2EveryCodeAndSweep) {
  EXPECT_EQ(RefRounder(kE5m2).max_code(), 0x7bu);
  check_fp8(
      kE5m2, [](uint8_t c) { return num::e5m2_to_float(c); },
      [](float x, bool s) { return num::float_to_e5m2(x, s); });
}

// ---- dtype helpers

TEST(Numeric, RoundToDtypeAndElements) {
  for (float x : {0.1f, -3.14159f, 1e-6f, 1234.5f, 7e4f, -1e-30f}) {
    EXPECT_TRUE(same_bits(num::round_to_dtype(x, LONGATTN_FLOAT32), x));
    EXPECT_TRUE(same_bits(num::round_to_dtype(x, LONGATTN_FLOAT16), num::round_to_f16(x)));
    EXPECT_TRUE(same_bits(num::round_to_dtype(x, LONGATTN_BFLOAT16), num::round_to_bf16(x)));
    for (int32_t dt : {LONGATTN_FLOAT16, LONGATTN_BFLOAT16}) {  // idempotent
      const float r = num::round_to_dtype(x, dt);
      EXPECT_TRUE(same_bits(num::round_to_dtype(r, dt), r));
    }
    for (bool sat : {false, true}) {
      const float r4 = num::round_to_e4m3(x, sat), r5 = num::round_to_e5m2(x, sat);
      EXPECT_TRUE(same_bits(num::round_to_e4m3(r4, sat), r4) || std::isnan(r4));
      EXPECT_TRUE(same_bits(num::round_to_e5m2(r5, sat), r5) || std::isinf(r5));
    }
    // Stored at an odd byte offset: the helpers take any alignment.
    unsigned char buf[1 + 3 * 4] = {};
    for (int32_t dt : {LONGATTN_FLOAT32, LONGATTN_FLOAT16, LONGATTN_BFLOAT16}) {
      const float stored = num::store_element(dt, buf + 1, 2, x);
      EXPECT_TRUE(same_bits(stored, num::round_to_dtype(x, dt)));
      EXPECT_TRUE(same_bits(num::load_element(dt, buf + 1, 2), stored));
    }
  }
}

// Conversions are usable in constant expressions (where the compiler has __builtin_bit_cast).
#if defined(LONGATTN_NUMERIC_BIT_CAST)
static_assert(num::float_to_bf16(1.0f) == 0x3f80);
static_assert(num::float_to_f16(65520.0f) == 0x7c00);
static_assert(num::e4m3_to_float(num::float_to_e4m3(-448.0f)) == -448.0f);
static_assert(num::e5m2_to_float(0x7b) == 57344.0f);
#endif

// ---- hashes: pinned, since seeds and checksums derived from them must not change.

TEST(Numeric, Hashes) {
  // splitmix64 from state 0: the reference generator's first two outputs.
  uint64_t state = 0;
  const uint64_t z0 = num::splitmix64(state);
  state += num::kGoldenGamma;
  EXPECT_EQ(z0, 0xe220a8397b1dcdafull);
  EXPECT_EQ(num::splitmix64(state), 0x6e789e6aa1b965f4ull);
  // FNV-1a test vectors.
  EXPECT_EQ(num::fnv1a64("", 0), 0xcbf29ce484222325ull);
  EXPECT_EQ(num::fnv1a64("a", 1), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(num::fnv1a64("foobar", 6), 0x85944171f73967e8ull);
  EXPECT_EQ(num::fnv1a32("", 0), 0x811c9dc5u);
  EXPECT_EQ(num::fnv1a32("a", 1), 0xe40c292cu);
  EXPECT_EQ(num::fnv1a32("foobar", 6), 0xbf9cf968u);
  // Chaining equals one call over the concatenation.
  EXPECT_EQ(num::fnv1a64("bar", 3, num::fnv1a64("foo", 3)), num::fnv1a64("foobar", 6));
}

}  // namespace
}  // namespace longattn_test
