// The CUDA backend's entry points for a build without CUDA: no paths, device not available.
#include <cstdio>
#include <cstring>

#include "core/backend.hpp"
#include "core/detail.hpp"

namespace longattn::detail {

PathList cuda_paths() { return {}; }

void cuda_device_info(longattn_device_info* info, bool) {
  std::memset(info, 0, sizeof *info);
  info->device = LONGATTN_DEVICE_CUDA;
  std::snprintf(info->name, sizeof info->name,
                "this build has no CUDA backend "
                "(configure with nvcc present and LONGATTN_CUDA=ON)");
}

void* cuda_alloc(int64_t) { fail(LONGATTN_UNSUPPORTED, "this build has no CUDA backend"); }
void cuda_free(void*) {}
bool cuda_stream_capturing(void*) { return false; }
int cuda_current_device() { return -1; }

}  // namespace longattn::detail
