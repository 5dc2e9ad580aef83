// Host memory for the KV caches and the prefill driver (CpuAllocator), and the choice of allocator
// per device; the GPU's is in allocator_cuda.cpp.
#include "longattn/engine/allocator.hpp"

#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/allocator_cuda.hpp"
#include "engine/common.hpp"

namespace longattn::engine {
namespace {

constexpr int64_t kAlign = 64;  // a cache line and a full AVX-512 vector

class CpuAllocator final : public Allocator {
 public:
  longattn_device device() const override { return LONGATTN_DEVICE_CPU; }
  void* allocate(int64_t bytes) override {
    if (bytes <= 0) return nullptr;
    size_t size = static_cast<size_t>((bytes + kAlign - 1) / kAlign * kAlign);
    void* p = std::aligned_alloc(kAlign, size);
    if (!p)
      throw Error(LONGATTN_OUT_OF_MEMORY, "KV cache: could not allocate " + std::to_string(bytes) +
                                              " bytes of host memory");
    return p;
  }
  void deallocate(void* p, int64_t) noexcept override { std::free(p); }
  void copy_2d(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width,
               int64_t rows, CopyKind) override {
    if (dst_pitch == width && src_pitch == width) {
      std::memcpy(dst, src, static_cast<size_t>(width * rows));
      return;
    }
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(static_cast<char*>(dst) + r * dst_pitch,
                  static_cast<const char*>(src) + r * src_pitch, static_cast<size_t>(width));
  }
};

}  // namespace

std::shared_ptr<Allocator> cpu_allocator() {
  static std::shared_ptr<Allocator> a = std::make_shared<CpuAllocator>();
  return a;
}

std::shared_ptr<Allocator> make_allocator(longattn_device device) {
  if (device == LONGATTN_DEVICE_CPU) return cpu_allocator();
  if (device == LONGATTN_DEVICE_CUDA) {
    if (auto a = cuda_allocator()) return a;
    throw Error(
        LONGATTN_UNSUPPORTED,
        "device = cuda: this build has no CUDA backend (or the machine no GPU); use device = cpu");
  }
  invalid("device = " + std::to_string(device) + ": must be cpu (0) or cuda (1)");
}

}  // namespace longattn::engine
