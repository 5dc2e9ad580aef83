// GPU memory for the KV caches and the prefill driver's chunk buffers, through the CUDA runtime.
// Copies are synchronous (cudaMemcpy2D), so a chunk's inputs are in place before its kernel runs
// on the default stream, and timing needs only synchronize() after the attention call.
#include "engine/allocator_cuda.hpp"

#include <string>

#include "longattn/engine/stack.hpp"

#if defined(LONGATTN_ENGINE_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace longattn::engine {

#if defined(LONGATTN_ENGINE_CUDA)
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(LONGATTN_DEVICE_ERROR, std::string(what) + ": " + cudaGetErrorString(e));
}

class CudaAllocator final : public Allocator {
 public:
  longattn_device device() const override { return LONGATTN_DEVICE_CUDA; }
  void* allocate(int64_t bytes) override {
    if (bytes <= 0) return nullptr;
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, static_cast<size_t>(bytes));
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear it: an allocation failure is not sticky
      throw Error(LONGATTN_OUT_OF_MEMORY, "KV cache: could not allocate " + format_bytes(bytes) +
                                              " of GPU memory (" + cudaGetErrorString(e) + ")");
    }
    return p;  // cudaMalloc aligns to at least 256 bytes
  }
  void deallocate(void* p, int64_t) noexcept override {
    if (p) cudaFree(p);
  }
  void copy_2d(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width,
               int64_t rows, CopyKind kind) override {
    if (rows <= 0 || width <= 0) return;
    cudaMemcpyKind k = kind == CopyKind::kHostToDevice   ? cudaMemcpyHostToDevice
                       : kind == CopyKind::kDeviceToHost ? cudaMemcpyDeviceToHost
                                                         : cudaMemcpyDeviceToDevice;
    check(cudaMemcpy2D(dst, static_cast<size_t>(dst_pitch), src, static_cast<size_t>(src_pitch),
                       static_cast<size_t>(width), static_cast<size_t>(rows), k),
          "KV cache copy");
  }
  void synchronize() override { check(cudaDeviceSynchronize(), "synchronize"); }
};

}  // namespace

std::shared_ptr<Allocator> cuda_allocator() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    return nullptr;
  }
  static std::shared_ptr<Allocator> a = std::make_shared<CudaAllocator>();
  return a;
}

#else

std::shared_ptr<Allocator> cuda_allocator() { return nullptr; }

#endif

}  // namespace longattn::engine
