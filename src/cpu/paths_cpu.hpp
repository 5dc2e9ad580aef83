// The CPU backend's internals: the scratch layout that both the memory model and the kernels use,
// and the per-ISA kernel table chosen at run time.
#pragma once

#include <cstdint>
#include <string>

#include "core/workspace.hpp"
#include "longattn/longattn.h"

namespace longattn::cpu {

// Keys per tile: a multiple of every ISA's NR * W (32 floats on AVX-512), and S rows of 256 bytes.
constexpr int64_t kKeysPerTile = 64;

// The code that runs a fused or split_kv tile: chosen once per plan (cpu_layout), read by the
// kernels and named in the plan.
enum class TileKernel : uint8_t {
  kVectorRows,  // at most one vector of rows (decode): K and V rows read in place, key by key
  kAmxBf16,     // bf16 on AMX tiles: head_dim_qk and block_k whole 32-column steps
  kBf16Pairs,   // bf16 pair dot products (AVX-512 BF16): an even head_dim_qk
  kFp32,        // float32 GEMMs on converted tiles; also the unfused path's GEMMs
};

// One worker's scratch for a tile of `rows` query rows (fused, split_kv: the g heads of a KV head
// times block_q positions; unfused: block_q positions of one head). Offsets in bytes.
struct TileScratch {
  int64_t rows = 0;      // row capacity
  int64_t rows_pad = 0;  // rows rounded up to whole vectors (scores are [keys][rows_pad])
  int64_t dv_pad = 0;    // head_dim_v rounded up to whole vectors
  TileKernel kernel = TileKernel::kFp32;
  int32_t kv_dtype = LONGATTN_FLOAT32;  // of the K and V elements (detail::kv_dtype_of)
  bool k_copy = false;                  // K tiles are converted to float32 (else read in place)
  int64_t o_rows = 0;  // rows of O: rows, or rows_pad where AMX tiles load and store whole blocks
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
// What runs the plan's tiles, e.g. "cpu amx-bf16 tiles" (the plan's kernel).
std::string cpu_kernel_name(const longattn_args& a, const longattn_plan& p);

// Kernels of one instruction set (kernels_<isa>.cpp, all compiled from kernels_cpu.inc).
struct CpuIsa {
  const char* name;
  int width;  // floats per vector
  int mr;     // rows of the GEMM micro-kernel
  // Null where this build left the instruction set out (LONGATTN_CPU_ISAS=host).
  void (*fused)(const longattn_args&, const longattn_plan&, const CpuLayout&, detail::Arena&);
  void (*split_kv)(const longattn_args&, const longattn_plan&, const CpuLayout&, detail::Arena&);
  void (*unfused)(const longattn_args&, const longattn_plan&, const CpuLayout&, detail::Arena&);
  bool amx;       // has the AMX tile kernel (TileKernel::kAmxBf16)
  bool bf16_dot;  // has the bf16 pair kernel (TileKernel::kBf16Pairs)
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
