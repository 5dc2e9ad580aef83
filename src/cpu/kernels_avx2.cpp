// The CPU kernels for avx2 (flags in src/cpu/CMakeLists.txt); the code is kernels_cpu.inc.
#define LONGATTN_ISA avx2
#define LONGATTN_ISA_NAME "avx2"
#define LONGATTN_ISA_TABLE kIsaAvx2
#define LONGATTN_WIDTH 8
#define LONGATTN_MR 6
#define LONGATTN_BF16_DOT 0
#include "cpu/kernels_cpu.inc"
