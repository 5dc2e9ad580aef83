// The float64 reference: one query row at a time, every score materialized, nothing clever. It is
// the definition the other paths are tested against (README.md, "Semantics"), so it favours
// clarity.
#include <cmath>
#include <vector>

#include "core/numeric.hpp"
#include "core/thread_pool.hpp"
#include "core/validate.hpp"
#include "cpu/convert_cpu.hpp"
#include "cpu/paths_cpu.hpp"
#include "cpu/problem_cpu.hpp"

namespace longattn::cpu {
namespace {

double load(const void* base, int32_t dtype, int64_t idx) {
  return numeric::load_element(dtype, base, idx);
}

void reference_row(const longattn_args& a, int64_t b, int64_t h, int64_t i, double* scores,
                   double* acc, float* out_row) {
  const int64_t kvh = h / (a.q_heads / a.kv_heads);
  const double scale = detail::effective_scale(a);
  // An FP8 cache's values are its elements times the scales (kv_dtype is a's dtype otherwise).
  const int32_t kv_dtype = detail::kv_dtype_of(a);
  const double k_scale = detail::kv_scale(a, a.k_scale, kvh),
               v_scale = detail::kv_scale(a, a.v_scale, kvh);
  const Band band = visible_band(a, i);
  const MaskRow mask = mask_row(a, b, h, i);
  const int64_t q_off = elem_offset(a.q_strides, b, h, i);
  double max_s = -INFINITY;
  for (int64_t j = 0; j < a.kv_len; ++j) {
    double s = -INFINITY;
    if (j >= band.lo && j < band.hi) {
      const int64_t k_off = kv_offset(a, a.k_strides, b, kvh, j);
      double dot = 0;
      for (int64_t c = 0; c < a.head_dim_qk; ++c)
        dot += load(a.q, a.dtype, q_off + c) * (load(a.k, kv_dtype, k_off + c) * k_scale);
      s = dot * scale;
      if (a.softcap > 0) s = a.softcap * std::tanh(s / a.softcap);
      s = mask.apply(j, s);
    }
    scores[j] = s;
    max_s = std::fmax(max_s, s);
  }
  for (int64_t d = 0; d < a.head_dim_v; ++d) acc[d] = 0;
  float lse = -INFINITY;
  if (max_s > -INFINITY) {  // else the row sees no key: O = 0, LSE = -inf
    double ref = a.sinks ? std::fmax(max_s, double(a.sinks[h])) : max_s;
    double denom = a.sinks ? std::exp(double(a.sinks[h]) - ref) : 0.0;
    for (int64_t j = 0; j < a.kv_len; ++j) {
      if (scores[j] == -INFINITY) continue;
      double p = std::exp(scores[j] - ref);
      denom += p;
      const int64_t v_off = kv_offset(a, a.v_strides, b, kvh, j);
      for (int64_t d = 0; d < a.head_dim_v; ++d)
        acc[d] += p * (load(a.v, kv_dtype, v_off + d) * v_scale);
    }
    for (int64_t d = 0; d < a.head_dim_v; ++d) acc[d] /= denom;
    lse = float(ref + std::log(denom));
  }
  for (int64_t d = 0; d < a.head_dim_v; ++d) out_row[d] = float(acc[d]);
  store_row(
      out_row, 1.f, a.head_dim_v, a.dtype,
      static_cast<char*>(a.o) + elem_offset(a.o_strides, b, h, i) * detail::dtype_bytes(a.dtype));
  if (a.lse) a.lse[(b * a.q_heads + h) * a.q_len + i] = lse;
}

struct ReferenceLayout {
  int64_t scores, acc, out, per_worker;
};
ReferenceLayout reference_layout(const longattn_args& a) {
  detail::WorkspaceLayout l;
  ReferenceLayout r;
  r.scores = l.add(a.kv_len, sizeof(double));
  r.acc = l.add(a.head_dim_v, sizeof(double));
  r.out = l.add(a.head_dim_v, sizeof(float));
  r.per_worker = l.total;
  return r;
}

}  // namespace

int64_t reference_workspace_bytes(const longattn_args& a, const longattn_plan& p) {
  return detail::checked_mul(reference_layout(a).per_worker, p.threads, "reference workspace");
}

void reference_run(const longattn_args& a, const longattn_plan& p, detail::Arena& arena) {
  const ReferenceLayout lay = reference_layout(a);
  std::vector<char*> scratch(p.threads);
  for (auto& s : scratch) s = arena.take<char>(lay.per_worker);
  const int64_t rows = a.batch * a.q_heads * a.q_len;
  detail::parallel_for(rows, p.threads, [&](int64_t r, int w) {
    char* s = scratch[w];
    reference_row(a, r / (a.q_heads * a.q_len), (r / a.q_len) % a.q_heads, r % a.q_len,
                  reinterpret_cast<double*>(s + lay.scores), reinterpret_cast<double*>(s + lay.acc),
                  reinterpret_cast<float*>(s + lay.out));
  });
}

}  // namespace longattn::cpu
