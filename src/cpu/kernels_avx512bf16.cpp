// The CPU kernels for AVX-512 with BF16 dot products (flags in src/cpu/CMakeLists.txt); the code
// is kernels_cpu.inc. It differs from kernels_avx512.cpp only for bfloat16 inputs.
#define LONGATTN_ISA avx512bf16
#define LONGATTN_ISA_NAME "avx512bf16"
#define LONGATTN_ISA_TABLE kIsaAvx512Bf16
#define LONGATTN_WIDTH 16
#define LONGATTN_MR 8
#define LONGATTN_BF16_DOT 1
#include "cpu/kernels_cpu.inc"
