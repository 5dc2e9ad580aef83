// The CUDA kernels timed below the library: the compiled kernels' resources (tiles, registers,
// shared memory, blocks per SM), then a TFLOPS table of the chunked-prefill, Gemma, grid and
// decode shapes through the launcher the backend uses (the split count the policy chooses), each
// against the cuBLAS matmul and device copy rates measured in the same run. Correctness lives in
// the test suite (tests/gpu: the accuracy grid forces split counts through options.num_splits).
//
//   kernel_bench                  the kernel table and the timing table (bf16)
//   kernel_bench --f16            the same with the float16 kernels
//   kernel_bench --decode-sweep   decode shapes at several split counts, CUDA graph timing
//   kernel_bench --decode-chosen  the same at the split count the policy picks only
//   kernel_bench --only S         shapes whose label (e.g. "grid16k d128 c0") contains S
// Exit status: 0, 2 for a bad argument, 77 without a GPU.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "cuda/fused_cuda.hpp"
#include "cuda/fused_traits_sm90.hpp"
#include "cuda/launch_cuda.hpp"

using longattn::cuda::FusedKernelInfo;
using longattn::cuda::FusedParams;

#define CHECK_CUDA(call)                                                        \
  do {                                                                          \
    cudaError_t e_ = (call);                                                    \
    if (e_ != cudaSuccess) {                                                    \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, \
                   cudaGetErrorString(e_));                                     \
      std::exit(1);                                                             \
    }                                                                           \
  } while (0)

namespace {

// ---- timing ----------------------------------------------------------------------------------

__global__ void fill_kernel(uint16_t* p, int64_t n, uint32_t seed, bool bf16) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    const float x = (h & 0xffff) / 32768.f - 1.f;  // [-1, 1)
    p[i] =
        bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(x)) : __half_as_ushort(__float2half_rn(x));
  }
}

struct Shape {
  const char* group;
  int b, hq, hkv, lq, lk, d;
  int causal;
  bool kv_shared;
};

double visible_pairs(const Shape& s) {
  const double off = double(s.lk) - s.lq;
  double n = 0;
  for (int i = 0; i < s.lq; ++i)
    n += s.causal ? std::min<double>(s.lk, std::max(0.0, i + off + 1)) : s.lk;
  return n;
}

float time_ms(const std::function<void()>& fn, int reps) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    CHECK_CUDA(cudaEventRecord(a));
    fn();
    CHECK_CUDA(cudaEventRecord(b));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  cudaEventDestroy(a), cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double matmul_tflops() {
  const int n = 8192;
  uint16_t *a, *b, *c;
  CHECK_CUDA(cudaMalloc(&a, size_t(n) * n * 2));
  CHECK_CUDA(cudaMalloc(&b, size_t(n) * n * 2));
  CHECK_CUDA(cudaMalloc(&c, size_t(n) * n * 2));
  fill_kernel<<<1024, 256>>>(a, int64_t(n) * n, 1, true);
  fill_kernel<<<1024, 256>>>(b, int64_t(n) * n, 2, true);
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return 0;
  const float one = 1.f, zero = 0.f;
  auto gemm = [&] {
    cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n, b, CUDA_R_16BF, n,
                 &zero, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  };
  time_ms(gemm, 3);
  const float ms = time_ms(gemm, 10);
  cublasDestroy(h);
  cudaFree(a), cudaFree(b), cudaFree(c);
  return 2.0 * n * n * double(n) / (ms * 1e-3) / 1e12;
}

// Device-to-device copy of 2 GiB, counting bytes read plus written.
double copy_gbps() {
  const size_t bytes = size_t(1) << 31;
  void *a, *b;
  CHECK_CUDA(cudaMalloc(&a, bytes));
  CHECK_CUDA(cudaMalloc(&b, bytes));
  CHECK_CUDA(cudaMemset(a, 1, bytes));
  auto copy = [&] { CHECK_CUDA(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); };
  time_ms(copy, 2);
  const float ms = time_ms(copy, 10);
  cudaFree(a), cudaFree(b);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

int bench_dtype = LONGATTN_BFLOAT16;  // --f16: time the float16 kernels
std::string bench_only;               // --only S: bench shapes whose label contains S
bool sweep_chosen_only = false;       // --decode-chosen: the sweep at the chosen split count only

int bench() {
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  const double peak = matmul_tflops(), copy = copy_gbps();
  std::printf("\ncuBLAS bf16 8192^3 matmul: %.0f TFLOPS; device copy %.0f GB/s (read + write)\n",
              peak, copy);
  std::vector<Shape> shapes;
  for (int d : {128, 192, 256})
    for (int lq : {512, 2048})
      for (int lk : {16384, 65536, 131072})
        shapes.push_back({"chunk", 1, 16, 8, lq, lk, d, 1, false});
  for (int lk : {32768, 131072}) shapes.push_back({"gemma", 1, 16, 2, 2048, lk, 512, 1, true});
  // bench/peers.py's grid: 16K tokens per batch, 2048 / d heads.
  for (int len : {1024, 4096, 16384})
    for (int d : {64, 128, 256})
      for (int causal : {0, 1})
        shapes.push_back({len == 1024   ? "grid1k"
                          : len == 4096 ? "grid4k"
                                        : "grid16k",
                          16384 / len, 2048 / d, 2048 / d, len, len, d, causal, false});
  for (int d : {128, 256, 512})
    for (auto [hq, hkv] : {std::pair{16, 2}, std::pair{32, 8}})
      for (int lk : {32768, 131072}) shapes.push_back({"decode", 1, hq, hkv, 1, lk, d, 1, false});
  std::printf("\n%-8s %-4s %-6s %-6s %-7s %-4s %-4s %-4s %-6s %-8s %-7s %-6s %-7s %-6s\n", "shape",
              "d", "H", "Lq", "Lk", "caus", "k=v", "kern", "splits", "ms", "TFLOPS", "%mm", "GB/s",
              "%copy");
  for (const Shape& s : shapes) {
    const std::string label = std::string(s.group) + " d" + std::to_string(s.d) + " c" +
                              std::to_string(s.causal) + " lq" + std::to_string(s.lq) + " lk" +
                              std::to_string(s.lk);
    if (label.find(bench_only) == std::string::npos) continue;
    const int64_t nq = int64_t(s.b) * s.hq * s.lq * s.d, nk = int64_t(s.b) * s.hkv * s.lk * s.d;
    uint16_t *q, *k, *v, *o;
    CHECK_CUDA(cudaMalloc(&q, nq * 2));
    CHECK_CUDA(cudaMalloc(&k, nk * 2));
    CHECK_CUDA(cudaMalloc(&o, nq * 2));
    v = k;
    if (!s.kv_shared) CHECK_CUDA(cudaMalloc(&v, nk * 2));
    const bool bf16 = bench_dtype == LONGATTN_BFLOAT16;
    fill_kernel<<<1024, 256>>>(q, nq, 3, bf16);
    fill_kernel<<<1024, 256>>>(k, nk, 4, bf16);
    if (!s.kv_shared) fill_kernel<<<1024, 256>>>(v, nk, 5, bf16);
    longattn_args a;
    std::memset(&a, 0, sizeof a);
    a.q = q, a.k = k, a.v = v, a.o = o, a.dtype = bench_dtype;
    a.batch = s.b, a.q_heads = s.hq, a.kv_heads = s.hkv, a.q_len = s.lq, a.kv_len = s.lk;
    a.head_dim_qk = a.head_dim_v = s.d;
    a.q_strides = {int64_t(s.hq) * s.lq * s.d, int64_t(s.lq) * s.d, s.d};
    a.k_strides = a.v_strides = {int64_t(s.hkv) * s.lk * s.d, int64_t(s.lk) * s.d, s.d};
    a.o_strides = a.q_strides;
    a.causal = s.causal, a.window_left = -1;
    FusedKernelInfo ki;
    CHECK_CUDA(longattn::cuda::kernel_for(a, &ki));
    const int splits = longattn::cuda::choose_splits(a, ki, prop.multiProcessorCount);
    float *o_part = nullptr, *lse_part = nullptr;
    if (splits > 1) {
      CHECK_CUDA(cudaMalloc(&o_part, longattn::cuda::split_o_floats(a, splits) * 4));
      CHECK_CUDA(cudaMalloc(&lse_part, longattn::cuda::split_lse_floats(a, splits) * 4));
    }
    auto run = [&] { CHECK_CUDA(longattn::cuda::run_fused(a, splits, o_part, lse_part, nullptr)); };
    time_ms(run, 2);
    const float ms = time_ms(run, 10);
    const double tflops = 2.0 * 2 * s.d * visible_pairs(s) * s.b * s.hq / (ms * 1e-3) / 1e12;
    // Bytes that must move: K and V once (once in all when k == v), Q read and O written.
    const double bytes = 2.0 * (nk * (s.kv_shared ? 1 : 2) + 2 * nq);
    const double gbps = bytes / (ms * 1e-3) / 1e9;
    std::printf("%-8s %-4d %-6s %-6d %-7d %-4d %-4s %-4d %-6d %-8.3f %-7.1f %-6.1f %-7.0f %-6.1f\n",
                s.group, s.d, (std::to_string(s.hq) + "/" + std::to_string(s.hkv)).c_str(), s.lq,
                s.lk, s.causal, s.kv_shared ? "yes" : "no", ki.family, splits, ms, tflops,
                100 * tflops / peak, gbps, 100 * gbps / copy);
    std::fflush(stdout);
    cudaFree(q), cudaFree(k), cudaFree(o), cudaFree(o_part), cudaFree(lse_part);
    if (!s.kv_shared) cudaFree(v);
  }
  return 0;
}

// The read floor of a decode shape: K and V read once by a plain streaming kernel (16-byte loads,
// four per array in flight per thread, two blocks of 512 threads per SM), nothing computed. The
// gap between it and the decode kernel is what attention itself costs.
__global__ void __launch_bounds__(512)
    read_floor_kernel(const uint4* k, const uint4* v, int64_t n16, uint32_t* sink) {
  uint32_t x = 0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n16; i += 4 * stride) {
    uint4 a[4], b[4];
#pragma unroll
    for (int u = 0; u < 4; ++u)
      a[u] = __ldcs(k + i + u * stride), b[u] = __ldcs(v + i + u * stride);
#pragma unroll
    for (int u = 0; u < 4; ++u) x ^= a[u].x ^ a[u].y ^ a[u].z ^ a[u].w ^ b[u].x ^ b[u].w;
  }
  for (; i < n16; i += stride) {
    const uint4 a = __ldcs(k + i), b = __ldcs(v + i);
    x ^= a.x ^ a.w ^ b.y ^ b.z;
  }
  if (x == 0x9e3779b9u) sink[0] = x;  // keeps the loads; fill_kernel's data never hits it
}

// Decode split sweep: the 12 decode shapes of bench/peers.py, each at several split counts, timed
// as CUDA graph replays (20 calls per graph, K/V rotated among copies of at least 150 MB in all so
// that no call finds the previous one's K/V in L2). "kernel" is the fused launch alone, "total"
// adds the merge: what a serving runtime's decode graph pays.
float graph_us(const std::function<void(cudaStream_t, int)>& enqueue, int calls) {
  cudaStream_t st;
  CHECK_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  for (int i = 0; i < 2; ++i) enqueue(st, i);
  CHECK_CUDA(cudaStreamSynchronize(st));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CHECK_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < calls; ++i) enqueue(st, i);
  CHECK_CUDA(cudaStreamEndCapture(st, &graph));
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  CHECK_CUDA(cudaGraphLaunch(exec, st));
  CHECK_CUDA(cudaStreamSynchronize(st));
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  std::vector<float> t;
  for (int r = 0; r < 9; ++r) {
    CHECK_CUDA(cudaEventRecord(a, st));
    CHECK_CUDA(cudaGraphLaunch(exec, st));
    CHECK_CUDA(cudaEventRecord(b, st));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  cudaEventDestroy(a), cudaEventDestroy(b);
  cudaGraphExecDestroy(exec), cudaGraphDestroy(graph), cudaStreamDestroy(st);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2] * 1000.f / calls;
}

int decode_sweep() {
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  const double copy = copy_gbps();
  std::printf("\ndecode sweep (graph replays, us per call); device copy %.0f GB/s\n", copy);
  std::printf("%-4s %-6s %-7s %-6s %-6s %-7s %-6s %-9s %-9s %-9s %-9s %-7s %-6s %-7s\n", "d", "H",
              "Lk", "sets", "splits", "blocks", "keys", "kernel_us", "total_us", "pdl_us",
              "early_us", "GB/s", "%copy", "read_us");
  constexpr int kCalls = 20;
  for (int d : {128, 256, 512})
    for (auto [hq, hkv] : {std::pair{16, 2}, std::pair{32, 8}})
      for (int lk : {32768, 131072}) {
        const int64_t nq = int64_t(hq) * d, nk = int64_t(hkv) * lk * d;
        const double kv_bytes = 2.0 * 2 * nk;
        const int sets = std::min(8, std::max(1, int(std::ceil(150e6 / kv_bytes))));
        std::vector<uint16_t*> ks(sets), vs(sets);
        uint16_t *q, *o;
        CHECK_CUDA(cudaMalloc(&q, nq * 2));
        CHECK_CUDA(cudaMalloc(&o, nq * 2));
        fill_kernel<<<1024, 256>>>(q, nq, 3, true);
        for (int i = 0; i < sets; ++i) {
          CHECK_CUDA(cudaMalloc(&ks[i], nk * 2));
          CHECK_CUDA(cudaMalloc(&vs[i], nk * 2));
          fill_kernel<<<1024, 256>>>(ks[i], nk, 4 + 2 * i, true);
          fill_kernel<<<1024, 256>>>(vs[i], nk, 5 + 2 * i, true);
        }
        longattn_args a;
        std::memset(&a, 0, sizeof a);
        a.q = q, a.k = ks[0], a.v = vs[0], a.o = o, a.dtype = LONGATTN_BFLOAT16;
        a.batch = 1, a.q_heads = hq, a.kv_heads = hkv, a.q_len = 1, a.kv_len = lk;
        a.head_dim_qk = a.head_dim_v = d;
        a.q_strides = {nq, d, d};
        a.k_strides = a.v_strides = {nk, int64_t(lk) * d, d};
        a.o_strides = a.q_strides;
        a.causal = 1, a.window_left = -1;
        FusedKernelInfo ki;
        CHECK_CUDA(longattn::cuda::kernel_for(a, &ki));
        const int chosen = longattn::cuda::choose_splits(a, ki, prop.multiProcessorCount);
        const int64_t items = hkv, key_tiles = (lk + ki.traits.block_k - 1) / ki.traits.block_k;
        std::vector<int> cand = {chosen};
        for (int sp : {4, 8, 12, 16, 24, 32, 33, 48, 64, 66, 96, 99, 128, 132, 192, 264})
          if (!sweep_chosen_only && sp != chosen && sp <= key_tiles && items * sp <= 1056)
            cand.push_back(sp);
        const int most = *std::max_element(cand.begin(), cand.end());
        uint32_t* sink;
        CHECK_CUDA(cudaMalloc(&sink, 4));
        const float read = graph_us(
            [&](cudaStream_t st, int call) {
              read_floor_kernel<<<2 * prop.multiProcessorCount, 512, 0, st>>>(
                  reinterpret_cast<const uint4*>(ks[call % sets]),
                  reinterpret_cast<const uint4*>(vs[call % sets]), nk * 2 / 16, sink);
              CHECK_CUDA(cudaGetLastError());
            },
            kCalls);
        cudaFree(sink);
        float *o_part, *lse_part;
        CHECK_CUDA(cudaMalloc(&o_part, longattn::cuda::split_o_floats(a, most) * 4));
        CHECK_CUDA(cudaMalloc(&lse_part, longattn::cuda::split_lse_floats(a, most) * 4));
        for (int sp : cand) {
          auto args_for = [&](int call) {
            longattn_args x = a;
            x.k = ks[call % sets], x.v = vs[call % sets];
            return x;
          };
          using longattn::cuda::MergeLaunch;
          auto with_merge = [&](MergeLaunch m, MergeLaunch f) {
            return graph_us(
                [&](cudaStream_t st, int call) {
                  CHECK_CUDA(
                      longattn::cuda::run_fused(args_for(call), sp, o_part, lse_part, st, m, f));
                },
                kCalls);
          };
          const float total = with_merge(MergeLaunch::kPlain, MergeLaunch::kPlain);
          const float pdl =
              sp > 1 ? with_merge(MergeLaunch::kProgrammatic, MergeLaunch::kPlain) : total;
          // "early": the fused kernel too is a programmatic dependent (of the last call's merge).
          const float early = with_merge(MergeLaunch::kProgrammatic, MergeLaunch::kProgrammatic);
          const float kernel = graph_us(
              [&](cudaStream_t st, int call) {
                FusedParams p = longattn::cuda::make_fused_params(args_for(call));
                if (sp > 1) p.splits = sp, p.o_part = o_part, p.lse_part = lse_part;
                CHECK_CUDA(longattn::cuda::fused_launch(d, d, longattn::cuda::Mma16::kBf16, true,
                                                        longattn::cuda::KvRead::kTiles, p, st));
              },
              kCalls);
          const double gbps = (kv_bytes + 4.0 * nq) / (total * 1e-6) / 1e9;
          std::printf(
              "%-4d %-6s %-7d %-6d %-6d %-7lld %-6lld %-9.1f %-9.1f %-9.1f %-9.1f %-7.0f "
              "%-6.1f %-7.1f%s\n",
              d, (std::to_string(hq) + "/" + std::to_string(hkv)).c_str(), lk, sets, sp,
              (long long)(items * sp), (long long)((lk + sp - 1) / sp), kernel, total, pdl, early,
              gbps, 100 * gbps / copy, read, sp == chosen ? "  <- choose_splits" : "");
        }
        std::fflush(stdout);
        cudaFree(q), cudaFree(o), cudaFree(o_part), cudaFree(lse_part);
        for (int i = 0; i < sets; ++i) cudaFree(ks[i]), cudaFree(vs[i]);
      }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool do_sweep = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--f16")
      bench_dtype = LONGATTN_FLOAT16;
    else if (a == "--decode-sweep")
      do_sweep = true;
    else if (a == "--decode-chosen")
      do_sweep = sweep_chosen_only = true;
    else if (a == "--only" && i + 1 < argc)
      bench_only = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--f16] [--decode-sweep | --decode-chosen] [--only S]\n",
                   argv[0]);
      return 2;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIP: no CUDA device (kernel_bench needs a GPU)\n");
    return 77;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs, %zu KB shared/block)\n", prop.name, prop.major,
              prop.minor, prop.multiProcessorCount, prop.sharedMemPerBlockOptin / 1024);
  for (bool decode : {false, true}) {
    const auto type = longattn::cuda::Mma16::kBf16;  // the f16 kernels share the shapes
#define LONGATTN_X(a, b)                                                                      \
  {                                                                                           \
    FusedKernelInfo ki;                                                                       \
    CHECK_CUDA(longattn::cuda::fused_kernel_info(a, b, type, decode,                          \
                                                 longattn::cuda::KvRead::kTiles, &ki));       \
    std::printf(                                                                              \
        "kernel d%d/%d %s: sm_%d code, tiles %dx%d, %d warps, %d stages, %lld B smem, "       \
        "%d regs, %d B local, %d blocks/SM\n",                                                \
        a, b, decode ? "decode" : "prefill", ki.arch, ki.traits.block_q(), ki.traits.block_k, \
        ki.traits.warps, ki.traits.stages, (long long)ki.smem_bytes, ki.regs, ki.local_bytes, \
        ki.blocks_per_sm);                                                                    \
  }
    LONGATTN_FUSED_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
  }
#define LONGATTN_X(a, b)                                                                         \
  {                                                                                              \
    FusedKernelInfo ki;                                                                          \
    CHECK_CUDA(longattn::cuda::fused_sm90_kernel_info(a, b, longattn::cuda::Mma16::kBf16, &ki)); \
    std::printf(                                                                                 \
        "kernel d%d/%d sm90: sm_%d code, tiles %dx%d, %d threads, %lld B smem, "                 \
        "%d regs, %d B local, %d blocks/SM\n",                                                   \
        a, b, ki.arch, ki.block_q, ki.block_k, ki.threads, (long long)ki.smem_bytes, ki.regs,    \
        ki.local_bytes, ki.blocks_per_sm);                                                       \
  }
  LONGATTN_FUSED_SM90_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
  return do_sweep ? decode_sweep() : bench();
}
