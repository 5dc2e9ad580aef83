// The host cost of each CUDA runtime call a longattn call makes (ns per call, median of 5 runs of
// 20000): what bounds the host cost of a prepared run. No arguments; needs a GPU.
//   build/bench/longattn_cuda_api_cost
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>
// Never writes (blocks of 128 threads): a launch with nothing to run.
__global__ void empty_kernel(int* p) {
  if (p && threadIdx.x == 1000) *p = 1;
}
template <class F>
double ns(F f, int n = 20000) {
  std::vector<double> r;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) f(i);
    auto t1 = std::chrono::steady_clock::now();
    r.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / n);
    cudaDeviceSynchronize();
  }
  std::sort(r.begin(), r.end());
  return r[2];
}
int main() {
  void* d = nullptr;
  cudaMalloc(&d, 1 << 20);
  cudaStream_t st;
  cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
  int dev = 0;
  printf("cudaGetDevice %.0f ns\n", ns([&](int) { cudaGetDevice(&dev); }));
  cudaPointerAttributes at;
  printf("cudaPointerGetAttributes %.0f ns\n",
         ns([&](int i) { cudaPointerGetAttributes(&at, (char*)d + (i & 1023)); }));
  cudaStreamCaptureStatus cs;
  printf("cudaStreamIsCapturing %.0f ns\n", ns([&](int) { cudaStreamIsCapturing(st, &cs); }));
  cudaStreamCaptureMode m = cudaStreamCaptureModeRelaxed;
  printf("cudaThreadExchangeStreamCaptureMode x2 %.0f ns\n", ns([&](int) {
           cudaThreadExchangeStreamCaptureMode(&m);
           cudaThreadExchangeStreamCaptureMode(&m);
         }));
  int v = 0;
  printf("cudaDeviceGetAttribute %.0f ns\n",
         ns([&](int) { cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, 0); }));
  printf("cudaGetLastError %.0f ns\n", ns([&](int) { cudaGetLastError(); }));
  cudaFuncAttributes fa;
  printf("cudaFuncGetAttributes %.0f ns\n",
         ns([&](int) { cudaFuncGetAttributes(&fa, empty_kernel); }));
  int* p = nullptr;
  printf("launch <<<>>> %.0f ns\n", ns([&](int i) {
           empty_kernel<<<132, 128, 0, st>>>(p);
           if ((i & 255) == 255) cudaStreamSynchronize(st);
         }));
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = 132;
  cfg.blockDim = 128;
  cfg.stream = st;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  printf("cudaLaunchKernelEx programmatic %.0f ns\n", ns([&](int i) {
           cudaLaunchKernelEx(&cfg, empty_kernel, p);
           if ((i & 255) == 255) cudaStreamSynchronize(st);
         }));
  void* f = nullptr;
  cudaDriverEntryPointQueryResult q{};
  cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q);
  auto enc = (PFN_cuTensorMapEncodeTiled_v12000)f;
  alignas(64) CUtensorMap map;
  cuuint64_t sizes[4] = {128, 4096, 8, 1}, strides[3] = {256, 256 * 4096, 256 * 4096 * 8};
  cuuint32_t box[4] = {64, 64, 1, 1}, unit[4] = {1, 1, 1, 1};
  printf("cuTensorMapEncodeTiled %.0f ns\n", ns([&](int) {
           enc(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, d, sizes, strides, box, unit,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
               CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
         }));
  cudaDeviceProp prop;
  printf("cudaGetDeviceProperties %.0f ns\n",
         ns([&](int) { cudaGetDeviceProperties(&prop, 0); }, 200));
  size_t fr, tot;
  printf("cudaMemGetInfo %.0f ns\n", ns([&](int) { cudaMemGetInfo(&fr, &tot); }, 2000));
  return 0;
}
