// The CPU kernels for generic (flags in src/cpu/CMakeLists.txt); the code is kernels_cpu.inc.
#define LONGATTN_ISA generic
#define LONGATTN_ISA_NAME "generic"
#define LONGATTN_ISA_TABLE kIsaGeneric
#define LONGATTN_WIDTH 4
#define LONGATTN_MR 4
#define LONGATTN_BF16_DOT 0
#include "cpu/kernels_cpu.inc"
