// Internal helpers shared by every layer: the failure type that the C API turns into a status,
// element sizes, and overflow-checked arithmetic for byte counts.
#pragma once

#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <string>

#include "core/numeric.hpp"
#include "longattn/longattn.h"

namespace longattn::detail {

// Thrown inside the library, caught at the C boundary (c_api.cpp) and nowhere else.
struct Failure : std::exception {
  longattn_status status;
  std::string message;
  Failure(longattn_status s, std::string m) : status(s), message(std::move(m)) {}
  const char* what() const noexcept override { return message.c_str(); }
};

template <class... A>
std::string format(const char* fmt, A... a) {
  int n = std::snprintf(nullptr, 0, fmt, a...);
  std::string s(n > 0 ? n : 0, '\0');
  if (n > 0) std::snprintf(s.data(), s.size() + 1, fmt, a...);
  return s;
}

template <class... A>
[[noreturn]] void fail(longattn_status status, const char* fmt, A... a) {
  throw Failure(status, format(fmt, a...));
}

using numeric::dtype_bytes;
using numeric::is_fp8;
inline int32_t kv_dtype_of(const longattn_args& a) {
  return numeric::kv_dtype_or_same(a.dtype, a.kv_dtype);
}

// a * b, or fail naming `what` when the product does not fit int64. Every such count is made of the
// call's sizes, so the message names them: the caller's fix is to make them smaller.
#define LONGATTN_OVERFLOW_MESSAGE                                                               \
  "%s overflows a 64-bit byte count: the sizes that make it (batch, q_heads, kv_heads, q_len, " \
  "kv_len, head_dim_qk, head_dim_v; n, rows and dv for merge_states) are too large"
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    fail(LONGATTN_INVALID_ARGUMENT, LONGATTN_OVERFLOW_MESSAGE, what);
  return r;
}
inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    fail(LONGATTN_INVALID_ARGUMENT, LONGATTN_OVERFLOW_MESSAGE, what);
  return r;
}
#undef LONGATTN_OVERFLOW_MESSAGE

// For a >= 0, b > 0; never forms a + b (a page_size near INT64_MAX would overflow it).
inline int64_t ceil_div(int64_t a, int64_t b) { return a / b + (a % b != 0); }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

}  // namespace longattn::detail
