// The CPU kernels for AVX-512 BF16 with AMX-BF16 tiles (flags in src/cpu/CMakeLists.txt); the
// code is kernels_cpu.inc. It differs from kernels_avx512bf16.cpp only in the prefill tiles of
// bfloat16 inputs whose head_dim_qk is a multiple of 32 (attend_amx).
#define LONGATTN_ISA amx
#define LONGATTN_ISA_NAME "amx"
#define LONGATTN_ISA_TABLE kIsaAmx
#define LONGATTN_WIDTH 16
#define LONGATTN_MR 8
#define LONGATTN_BF16_DOT 1
#define LONGATTN_AMX 1
#include "cpu/kernels_cpu.inc"
