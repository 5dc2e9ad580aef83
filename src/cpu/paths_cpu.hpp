// The CPU backend's internals: the scratch layout that both the memory model and the kernels use,
// and the per-ISA kernel table chosen at run time.
#pragma once

#include <cstdint>

#include "core/workspace.hpp"
#include "longattn/longattn.h"

namespace longattn::cpu {

// Keys per tile: a multiple of every ISA's NR * W (32 floats on AVX-512), and S rows of 256 bytes.
constexpr int64_t kKeysPerTile = 64;

// One worker's scratch for a tile of `rows` query rows (fused, split_kv: the g heads of a KV head
// times block_q positions; unfused: block_q positions of one head). Offsets in bytes.
struct TileScratch {
  int64_t rows = 0;      // row capacity
  int64_t rows_pad = 0;  // rows rounded up to whole vectors (scores are [keys][rows_pad])
  int64_t dv_pad = 0;    // head_dim_v rounded up to whole vectors
  bool k_copy = false;   // K tiles are converted to float32 (else read in place)
  int64_t o_rows = 0;    // rows of O: rows, or rows_pad where AMX tiles load and store whole blocks
  int64_t qt = 0, kf = 0, vt = 0, st = 0, o = 0, m = 0, l = 0, alpha = 0, row = 0, pb = 0;
  int64_t bytes = 0;  // per worker
};

// The whole transient memory of one CPU path: shared buffers first, then one scratch per worker.
struct CpuLayout {
  TileScratch tile;
  int64_t scores = 0;       // unfused: [B, Hq, Lq, Lk] float32
  int64_t partial_o = 0;    // split_kv: [splits, B, Hq, Lq, Dv] float32
  int64_t partial_lse = 0;  // split_kv: [splits, B, Hq, Lq] float32
  int64_t total = 0;
};

CpuLayout cpu_layout(const longattn_args& a, const longattn_plan& p);

// Kernels of one instruction set (kernels_<isa>.cpp, all compiled from kernels_cpu.inc).
struct CpuIsa {
  const char* name;
  int width;  // floats per vector
  int mr;     // rows of the GEMM micro-kernel
  void (*fused)(const longattn_args&, const longattn_plan&, const CpuLayout&, detail::Arena&);
  void (*split_kv)(const longattn_args&, const longattn_plan&, const CpuLayout&, detail::Arena&);
  void (*unfused)(const longattn_args&, const longattn_plan&, const CpuLayout&, detail::Arena&);
  bool amx;  // prefill tiles of bf16 inputs run on AMX tiles (their scratch is laid out for it)
};
extern const CpuIsa kIsaAmx, kIsaAvx512Bf16, kIsaAvx512, kIsaAvx2, kIsaGeneric;
// The best one this CPU runs; LONGATTN_CPU_ISA=avx512bf16|avx512|avx2|generic lowers it.
const CpuIsa& active_isa();

// F16C and AVX-512 BF16 through cpuid: clang before 15 does not know them in
// __builtin_cpu_supports, and the fuzzer (tests/fuzz) builds the library with clang.
bool cpu_has_f16c();
bool cpu_has_avx512bf16();
// AMX-TILE and AMX-BF16, with the OS saving the tile state (cpuid, XCR0); asks nothing.
bool cpu_has_amx();
// cpu_has_amx() and Linux's grant of the tile state to this process (asked for on the first call:
// only when the AMX kernels are chosen, since a grant enlarges every signal frame of the process).
bool cpu_amx_granted();

int64_t reference_workspace_bytes(const longattn_args& a, const longattn_plan& p);
void reference_run(const longattn_args& a, const longattn_plan& p, detail::Arena& arena);

}  // namespace longattn::cpu
