// The sm_90a instructions of the Hopper kernel (fused_kernel_sm90.cuh), one wrapper each:
// mbarriers (transaction-counted barriers in shared memory), TMA bulk tensor loads, the async-proxy
// fence, wgmma (warpgroup MMA, operands described by shared-memory descriptors) and setmaxnreg.
// PTX ISA 8.x: "Asynchronous warpgroup level matrix multiply", "cp.async.bulk.tensor", "mbarrier".
#pragma once

#include <cstdint>

#include "cuda/fused_cuda.hpp"
#include "cuda/ptx_sm80.cuh"

namespace longattn::cuda::ptx {

// ---- mbarrier: `count` arrivals (plus, with expect_tx, a byte count) complete a phase.
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// Makes the initialized barriers visible to the async proxy (TMA) and the other threads.
__device__ __forceinline__ void mbar_fence_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// One arrival that also expects `bytes` from async copies before the phase can complete.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
// Waits until the phase with this parity has completed. A fresh barrier is in phase 0, and
// waiting on parity 1 (the phase "before" it) returns at once.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}

// ---- TMA: a box of a 4-D tensor (coordinates innermost first) into shared memory; its bytes
// count towards the mbarrier's expected transaction bytes. Elements outside the tensor are zeros.
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const void* tensor_map, uint32_t bar,
                                            int c0, int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes "
      "[%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(dst),
      "l"(tensor_map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
      : "memory");
}

// Orders this thread's ordinary shared-memory writes before later async-proxy reads (wgmma, TMA).
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// ---- wgmma
// Shared-memory matrix descriptor for a 128-byte-swizzled operand: rows of 128 bytes (64 16-bit
// elements), 8 rows per 1024-byte swizzle atom. K-major (Q, K, P): `sbo` steps between 8-row
// groups, `lbo` is unused. N-major (V): `lbo` steps between 64-column panels, `sbo` between
// 8-row groups along K. The atoms must be 1024-byte aligned; steps of 32 bytes inside a row
// select the next 16 elements of K (the hardware applies the swizzle to the final address).
// The low 14 bits hold the address / 16, and shared addresses stay below 256 KB: adding n to a
// descriptor moves its operand 16 n bytes on, so the kernel builds one per operand and steps it.
__device__ __forceinline__ uint64_t sw128_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((addr & 0x3FFFF) >> 4) | uint64_t((lbo >> 4) & 0x3FFF) << 16 |
         uint64_t((sbo >> 4) & 0x3FFF) << 32 | uint64_t(1) << 62;
}
// Before the first wgmma that reads registers (A fragments, accumulators) written by other code.
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Keeps the compiler from moving reads or writes of accumulator registers across a wgmma that is
// still in flight (the registers change under it asynchronously).
template <int kN>
__device__ __forceinline__ void pin(float (&r)[kN]) {
#pragma unroll
  for (int i = 0; i < kN; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

template <Mma16 kType, int kN>
struct Wgmma;
#include "cuda/instantiations/wgmma_sm90.inc"

// ---- registers: a warpgroup gives up (dec) or claims (inc) registers per thread.
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

}  // namespace longattn::cuda::ptx
