// A compiled kernel's driver facts (attributes, occupancy, shared-memory opt-in) per device.
#pragma once

#include <cuda_runtime_api.h>

#include <mutex>

#include "cuda/fused_cuda.hpp"

namespace longattn::cuda {

// The answer is fixed per device, and the router and every launch ask for it (several times per
// call): queried once per device and kept. forget() drops it, for a launch that failed (say the
// context was reset, and with it the shared-memory opt-in).
template <class Query>  // Query::query(device, info) asks the driver
struct KernelInfoCache {
  static constexpr int kDevices = 64;
  std::mutex mu;
  bool known[kDevices] = {};
  FusedKernelInfo info[kDevices];

  static KernelInfoCache& get() {
    static KernelInfoCache cache;
    return cache;
  }
  cudaError_t lookup(FusedKernelInfo* out) {
    int device = 0;
    cudaError_t e = cudaGetDevice(&device);
    if (e != cudaSuccess) return e;
    if (device < 0 || device >= kDevices) return Query::query(device, out);
    {
      std::lock_guard<std::mutex> lock(mu);
      if (known[device]) return *out = info[device], cudaSuccess;
    }
    e = Query::query(device, out);
    if (e != cudaSuccess) return e;
    std::lock_guard<std::mutex> lock(mu);
    info[device] = *out, known[device] = true;
    return cudaSuccess;
  }
  void forget() {
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kDevices) return;
    std::lock_guard<std::mutex> lock(mu);
    known[device] = false;
  }
};

}  // namespace longattn::cuda
