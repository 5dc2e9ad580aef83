// The engine's GPU memory: an Allocator over the CUDA runtime, present when the library is built
// with the CUDA backend (allocator_cuda.cpp is compiled with LONGATTN_ENGINE_CUDA then).
#pragma once

#include <memory>

#include "longattn/engine/allocator.hpp"

namespace longattn::engine {

// The current CUDA device's allocator, or null when this build has no CUDA or there is no GPU.
std::shared_ptr<Allocator> cuda_allocator();

}  // namespace longattn::engine
