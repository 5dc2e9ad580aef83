// A kernel launch configuration that may make the kernel a programmatic dependent of the kernel
// before it on the stream (sm_90+): its blocks are placed while that kernel drains, and the kernel
// must begin with griddepcontrol.wait before it touches that kernel's results. Used by the decode
// kernel and the split_kv merge (launch_cuda.cpp says when).
#pragma once

#include <cuda_runtime_api.h>

namespace longattn::cuda {

struct LaunchConfig {
  cudaLaunchConfig_t config = {};
  cudaLaunchAttribute attr[1] = {};

  LaunchConfig(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool programmatic) {
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    config.attrs = attr;
    config.numAttrs = programmatic ? 1 : 0;
  }
  LaunchConfig(const LaunchConfig&) = delete;  // config.attrs points into this object
  LaunchConfig& operator=(const LaunchConfig&) = delete;
};

}  // namespace longattn::cuda
