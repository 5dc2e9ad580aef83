#include "core/merge.hpp"

#include <cmath>

namespace longattn::detail {

float merge_row(int64_t n, int64_t dv, const float* o_parts, int64_t part_stride,
                const float* lse_parts, int64_t lse_stride, float* o) {
  float max_lse = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max_lse = std::fmax(max_lse, lse_parts[i * lse_stride]);
  for (int64_t d = 0; d < dv; ++d) o[d] = 0.f;
  if (max_lse == -INFINITY) return -INFINITY;
  // Weights e^{L_i - L} with L = log sum e^{L_i}, computed relative to the max for stability.
  float sum = 0.f;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(lse_parts[i * lse_stride] - max_lse);
  for (int64_t i = 0; i < n; ++i) {
    float w = std::exp(lse_parts[i * lse_stride] - max_lse) / sum;
    if (w == 0.f) continue;
    const float* src = o_parts + i * part_stride;
    for (int64_t d = 0; d < dv; ++d) o[d] += w * src[d];
  }
  return max_lse + std::log(sum);
}

}  // namespace longattn::detail
