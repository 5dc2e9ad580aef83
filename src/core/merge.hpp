// Combining partial attention results over disjoint key sets through their LSEs: with
// L = log(sum_i e^L_i), O = sum_i e^(L_i - L) O_i (README.md, "Semantics").
#pragma once

#include <cstdint>

namespace longattn::detail {

// One row: parts [n][stride_part] with dv values each (o) and n LSEs (lse_parts[i * lse_stride]).
// Writes the merged row to o (dv floats) and returns the merged LSE. A part whose LSE is -inf adds
// nothing; when every part is -inf the row is O = 0, LSE = -inf.
float merge_row(int64_t n, int64_t dv, const float* o_parts, int64_t part_stride,
                const float* lse_parts, int64_t lse_stride, float* o);

}  // namespace longattn::detail
