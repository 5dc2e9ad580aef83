// Where the engine's storage lives: an Allocator over host memory (cpu_allocator) or GPU memory
// (the CUDA allocator, built with the CUDA backend); the KV caches and the prefill driver allocate
// and copy only through it. Part of the engine (engine.hpp).
#pragma once

#include <cstdint>
#include <memory>

#include "longattn/attention.hpp"

namespace longattn::engine {

enum class CopyKind { kHostToDevice, kDeviceToDevice, kDeviceToHost };

class LONGATTN_API Allocator {
 public:
  virtual ~Allocator() = default;
  virtual longattn_device device() const = 0;
  // Throws Error(LONGATTN_OUT_OF_MEMORY) on failure; memory is aligned to 64 bytes.
  virtual void* allocate(int64_t bytes) = 0;
  virtual void deallocate(void* p, int64_t bytes) noexcept = 0;
  // Copies `rows` rows of `width` bytes; pitches are bytes between row starts. Regions never
  // overlap. "Device" is this allocator's memory (host memory for the CPU allocator).
  virtual void copy_2d(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch,
                       int64_t width, int64_t rows, CopyKind kind) = 0;
  // Waits for queued work (timing); the CPU has none.
  virtual void synchronize() {}
};

LONGATTN_API std::shared_ptr<Allocator> cpu_allocator();
// The allocator for a device; throws UNSUPPORTED where this build or machine has none.
LONGATTN_API std::shared_ptr<Allocator> make_allocator(longattn_device device);

}  // namespace longattn::engine
