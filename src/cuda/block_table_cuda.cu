// poison_bad_blocks_launch (block_table_cuda.hpp): one block per batch entry scans the entry's
// table row (4 bytes a page) and, only when an id is out of the pool, writes NaN over the entry's O
// and LSE. A valid table, the case that matters for speed, costs the scan alone.

#include <cstdint>

#include "cuda/block_table_cuda.hpp"

namespace longattn::cuda {
namespace {

constexpr int kThreads = 256;

struct PoisonParams {
  const int32_t* table;
  int64_t table_stride, pages, num_blocks;
  char* o;
  int64_t o_stride[3];  // elements: batch, head, token
  float* lse;           // [B, Hq, Lq] or null
  int64_t q_heads, q_len, dim_v;
  int32_t elem_bytes;
  uint32_t nan_bits;  // a quiet NaN of O's type in its low elem_bytes bytes
};

__global__ void __launch_bounds__(kThreads) poison_kernel(PoisonParams p) {
  const int64_t b = blockIdx.x;
  const int32_t* row = p.table + b * p.table_stride;
  int bad = 0;
  for (int64_t i = threadIdx.x; i < p.pages; i += kThreads)
    bad |= row[i] < 0 || row[i] >= p.num_blocks;
  if (!__syncthreads_or(bad)) return;
  const int64_t elems = p.q_heads * p.q_len * p.dim_v;
  for (int64_t x = threadIdx.x; x < elems; x += kThreads) {
    const int64_t d = x % p.dim_v, i = x / p.dim_v % p.q_len, h = x / (p.dim_v * p.q_len);
    char* e = p.o + (b * p.o_stride[0] + h * p.o_stride[1] + i * p.o_stride[2] + d) * p.elem_bytes;
    if (p.elem_bytes == 4)
      *reinterpret_cast<uint32_t*>(e) = p.nan_bits;
    else
      *reinterpret_cast<uint16_t*>(e) = uint16_t(p.nan_bits);
  }
  if (p.lse)
    for (int64_t x = threadIdx.x; x < p.q_heads * p.q_len; x += kThreads)
      p.lse[b * p.q_heads * p.q_len + x] = __int_as_float(0x7fc00000);
}

}  // namespace

cudaError_t poison_bad_blocks_launch(const longattn_args& a, cudaStream_t stream) {
  PoisonParams p{};
  p.table = a.block_table;
  p.table_stride = a.block_table_stride;
  p.pages = (a.kv_len + a.page_size - 1) / a.page_size;
  p.num_blocks = a.num_blocks;
  p.o = static_cast<char*>(a.o);
  p.o_stride[0] = a.o_strides.batch, p.o_stride[1] = a.o_strides.head;
  p.o_stride[2] = a.o_strides.token;
  p.lse = a.lse;
  p.q_heads = a.q_heads, p.q_len = a.q_len, p.dim_v = a.head_dim_v;
  p.elem_bytes = a.dtype == LONGATTN_FLOAT32 ? 4 : 2;
  p.nan_bits = a.dtype == LONGATTN_FLOAT32    ? 0x7fc00000u
               : a.dtype == LONGATTN_BFLOAT16 ? 0x7fc0u
                                              : 0x7e00u;
  if (a.batch == 0 || p.pages == 0) return cudaSuccess;
  poison_kernel<<<unsigned(a.batch), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace longattn::cuda
