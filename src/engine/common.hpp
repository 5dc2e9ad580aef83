// What the engine's sources share beyond the public headers: the error helper, and the planner's
// rules that the caches and the driver apply too (defined in planner.cpp), so that what the
// planner predicts is what they do.
#pragma once

#include <cstdint>
#include <string>

#include "longattn/engine/stack.hpp"

namespace longattn::engine {

[[noreturn]] inline void invalid(const std::string& message) {
  throw Error(LONGATTN_INVALID_ARGUMENT, message);
}

// Throws unless block_size is in [16, 256] (the paged cache's and the prefix cache's block).
void check_block_size(int64_t block_size);

// First key a layer's queries from position `start` on can see: start - window_left for a
// sliding layer (never below 0), 0 for a global one.
int64_t first_visible_key(const LayerSpec& layer, int64_t start);

}  // namespace longattn::engine
