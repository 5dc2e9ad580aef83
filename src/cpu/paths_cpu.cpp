// The CPU backend's paths: what each supports, its exact memory, how it runs (the choices they
// read are made in policy_cpu.cpp).
#include "cpu/paths_cpu.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/backend.hpp"
#include "core/detail.hpp"
#include "cpu/convert_cpu.hpp"
#include "cpu/policy_cpu.hpp"

namespace longattn::cpu {

using detail::ceil_div;
using detail::checked_add;
using detail::checked_mul;
using detail::round_up;

namespace {

// Every CPU path runs every valid input; the kernel (the ISA) is the process's, not the plan's.
std::string supported_everywhere(const longattn_args&, const detail::DeviceContext&,
                                 detail::BackendChoice*) {
  return "";
}

int64_t tiled_bytes(const longattn_args& a, const detail::Decision& d) {
  return cpu_layout(a, d.plan).total;
}

int64_t reference_bytes(const longattn_args& a, const detail::Decision& d) {
  return reference_workspace_bytes(a, d.plan);
}

void run_tiled(const longattn_args& a, const detail::Decision& d, detail::Arena& arena,
               const longattn_options&) {
  const longattn_plan& p = d.plan;
  const CpuLayout layout = cpu_layout(a, p);
  const CpuIsa& isa = active_isa();
  if (p.path == LONGATTN_PATH_FUSED) isa.fused(a, p, layout, arena);
  if (p.path == LONGATTN_PATH_SPLIT_KV) isa.split_kv(a, p, layout, arena);
  if (p.path == LONGATTN_PATH_UNFUSED) isa.unfused(a, p, layout, arena);
}

std::string kernel_name(const longattn_args& a, const detail::Decision& d) {
  return cpu_kernel_name(a, d.plan);
}

void run_reference(const longattn_args& a, const detail::Decision& d, detail::Arena& arena,
                   const longattn_options&) {
  reference_run(a, d.plan, arena);
}

const detail::PathImpl kCpuPaths[] = {
    {LONGATTN_DEVICE_CPU, LONGATTN_PATH_REFERENCE, supported_everywhere, configure_plan,
     reference_bytes, run_reference, kernel_name},
    {LONGATTN_DEVICE_CPU, LONGATTN_PATH_UNFUSED, supported_everywhere, configure_plan, tiled_bytes,
     run_tiled, kernel_name},
    {LONGATTN_DEVICE_CPU, LONGATTN_PATH_FUSED, supported_everywhere, configure_plan, tiled_bytes,
     run_tiled, kernel_name},
    {LONGATTN_DEVICE_CPU, LONGATTN_PATH_SPLIT_KV, supported_everywhere, configure_plan, tiled_bytes,
     run_tiled, kernel_name},
};

}  // namespace

CpuLayout cpu_layout(const longattn_args& a, const longattn_plan& p) {
  const CpuIsa& isa = active_isa();
  const int64_t g = a.q_heads / a.kv_heads;
  CpuLayout L;
  TileScratch& t = L.tile;
  t.rows = (packs_gqa(p.path) ? g : 1) * p.block_q;
  t.rows_pad = round_up(t.rows, isa.width);
  t.dv_pad = round_up(a.head_dim_v, isa.width);
  // Contiguous float32 K is read where it lies; other dtypes and paged caches are converted one
  // tile at a time. V is always copied: its rows must be padded to whole vectors, and a dense
  // copy streams better than strided in-place rows (bench/NOTES.md).
  t.kv_dtype = detail::kv_dtype_of(a);
  t.k_copy = t.kv_dtype != LONGATTN_FLOAT32 || a.block_table != nullptr;
  t.kernel = tile_kernel(a, p, isa, t.rows_pad);
  const bool amx = t.kernel == TileKernel::kAmxBf16;
  detail::WorkspaceLayout w;
  // Q^T [d][rows_pad], or a decode tile's Q rows [rows][d rounded up to whole vectors].
  t.qt = w.add(round_up(a.head_dim_qk, isa.width) * t.rows_pad, 4);
  t.kf = t.k_copy ? w.add(p.block_k * a.head_dim_qk, 4) : 0;
  t.vt = w.add(p.block_k * t.dv_pad, 4);
  t.st = w.add(p.block_k * t.rows_pad, 4);
  t.o_rows = amx ? t.rows_pad : t.rows;
  t.o = w.add(t.o_rows * t.dv_pad, 4);
  t.m = w.add(t.rows_pad, 4);
  t.l = w.add(t.rows_pad, 4);
  t.alpha = w.add(t.rows_pad, 4);
  t.row = w.add(std::max(a.head_dim_qk, t.dv_pad), 4);
  t.pb = amx ? w.add(t.rows_pad * p.block_k, 2) : 0;
  t.bytes = w.total;

  // The order of these terms is the order in which the kernels take them from the arena.
  detail::WorkspaceLayout total;
  const int64_t rows_total = checked_mul(a.batch * a.q_heads, a.q_len, "rows");
  if (p.path == LONGATTN_PATH_UNFUSED)
    L.scores = total.add(checked_mul(rows_total, a.kv_len, "unfused scores"), 4);
  if (p.path == LONGATTN_PATH_SPLIT_KV) {
    const int64_t split_rows = checked_mul(p.splits, rows_total, "split_kv partials");
    L.partial_o = total.add(checked_mul(split_rows, a.head_dim_v, "split_kv partials"), 4);
    L.partial_lse = total.add(split_rows, 4);
  }
  total.total = checked_add(total.total, checked_mul(t.bytes, p.threads, "scratch"), "workspace");
  L.total = total.total;
  return L;
}

std::string cpu_kernel_name(const longattn_args& a, const longattn_plan& p) {
  if (p.path == LONGATTN_PATH_REFERENCE) return "cpu float64 reference";
  const std::string isa = active_isa().name;
  if (p.path == LONGATTN_PATH_UNFUSED) return "cpu " + isa + " fp32 GEMMs, scores materialized";
  switch (cpu_layout(a, p).tile.kernel) {
    case TileKernel::kVectorRows:
      return "cpu " + isa + " decode rows";
    case TileKernel::kAmxBf16:
      return "cpu amx-bf16 tiles";
    case TileKernel::kBf16Pairs:
      return "cpu " + isa + " bf16-pair tiles";
    case TileKernel::kFp32:
      break;
  }
  return "cpu " + isa + " fp32 tiles";
}

const Fp8Table& fp8_table() {
  static const Fp8Table table = [] {
    Fp8Table t;
    for (int c = 0; c < 256; ++c) {
      t.e4m3[c] = numeric::e4m3_to_float(uint8_t(c));
      t.e5m2[c] = numeric::e5m2_to_float(uint8_t(c));
    }
    return t;
  }();
  return table;
}

// The best instruction set the CPU runs whose kernels were compiled (LONGATTN_CPU_ISAS=host leaves
// some out), at most LONGATTN_CPU_ISA's when it names one; the best compiled one the CPU runs when
// none at or below it was compiled.
const CpuIsa& active_isa() {
  static const CpuIsa* const isa = []() -> const CpuIsa* {
    const bool avx2 =
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    const bool bf16 = avx512 && cpu_has_avx512bf16();
    const struct {
      const CpuIsa* isa;
      const char* name;
      bool runs;
    } best_first[] = {{&kIsaAmx, "amx", bf16 && cpu_amx_granted()},
                      {&kIsaAvx512Bf16, "avx512bf16", bf16},
                      {&kIsaAvx512, "avx512", avx512},
                      {&kIsaAvx2, "avx2", avx2},
                      {&kIsaGeneric, "generic", true}};
    const char* want = std::getenv("LONGATTN_CPU_ISA");
    bool allowed = !want || std::strcmp(want, "amx") == 0;  // "amx": the default order
    for (const auto& c : best_first) {
      allowed = allowed || std::strcmp(want, c.name) == 0;
      if (allowed && c.runs && c.isa->fused) return c.isa;
    }
    for (const auto& c : best_first)
      if (c.runs && c.isa->fused) return c.isa;
    return &kIsaGeneric;
  }();
  return *isa;
}

}  // namespace longattn::cpu

namespace longattn::detail {

PathList cpu_paths() {
  return {cpu::kCpuPaths, static_cast<int>(sizeof cpu::kCpuPaths / sizeof cpu::kCpuPaths[0]),
          cpu::split_pays};
}

}  // namespace longattn::detail
