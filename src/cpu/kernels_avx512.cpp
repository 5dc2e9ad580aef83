// The CPU kernels for avx512 (flags in src/cpu/CMakeLists.txt); the code is kernels_cpu.inc.
#define LONGATTN_ISA avx512
#define LONGATTN_ISA_NAME "avx512"
#define LONGATTN_ISA_TABLE kIsaAvx512
#define LONGATTN_WIDTH 16
#define LONGATTN_MR 8
#define LONGATTN_BF16_DOT 0
#include "cpu/kernels_cpu.inc"
