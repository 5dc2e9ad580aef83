// What the GPU tests ask of the machine: a usable CUDA device, and whether it is Hopper
// (compute capability 9.0: the sm_90a kernels and the FP8-cache kernels run there only).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>

#include "longattn/longattn.h"

namespace longattn_test {

inline bool have_gpu() {
  longattn_device_info info;
  return longattn_device_query(LONGATTN_DEVICE_CUDA, &info) == LONGATTN_OK && info.available;
}

inline bool hopper() {
  int device = 0, major = 0, minor = 0;
  return cudaGetDevice(&device) == cudaSuccess &&
         cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
         cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
         major == 9 && minor == 0;
}

// Hopper, with the router free to pick the sm_90a kernel (LONGATTN_CUDA_KERNEL=sm80 keeps it on the
// portable kernel: scripts/device_run.sh runs the suite both ways).
inline bool sm90a_expected() {
  const char* forced = std::getenv("LONGATTN_CUDA_KERNEL");
  return hopper() && !(forced && std::strcmp(forced, "sm80") == 0);
}

}  // namespace longattn_test
