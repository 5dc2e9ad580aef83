// What the engine's sources share beyond the public headers: the one way they report a bad
// argument, and the planner's rules that the caches and the driver apply too (defined in
// planner.cpp), so that what the planner predicts is what they do.
#pragma once

#include <cstdint>
#include <string>

#include "longattn/engine/stack.hpp"

namespace longattn::engine {

// Every validation error of the engine: INVALID_ARGUMENT with a message that names the argument,
// its value and what is allowed. The check_ helpers below write the common forms.
[[noreturn]] inline void invalid(const std::string& message) {
  throw Error(LONGATTN_INVALID_ARGUMENT, message);
}

// "name = value: must be >= min"
inline void check_at_least(const char* name, int64_t value, int64_t min) {
  if (value < min)
    invalid(std::string(name) + " = " + std::to_string(value) +
            ": must be >= " + std::to_string(min));
}

// "name = value: must be between lo and hi"
inline void check_between(const char* name, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi)
    invalid(std::string(name) + " = " + std::to_string(value) + ": must be between " +
            std::to_string(lo) + " and " + std::to_string(hi));
}

// A limit where -1 stands for `minus_one` (e.g. "unlimited"): "name = value: must be -1
// (minus_one) or >= 0[ unit]".
inline void check_limit(const char* name, int64_t value, const char* minus_one,
                        const char* unit = "") {
  if (value < -1)
    invalid(std::string(name) + " = " + std::to_string(value) + ": must be -1 (" + minus_one +
            ") or >= 0" + (*unit ? std::string(" ") + unit : std::string()));
}

// Throws unless block_size is in [kMinBlockSize, kMaxBlockSize] (the paged cache's and the prefix
// cache's block).
void check_block_size(int64_t block_size);

// Blocks of block_size tokens that hold `tokens` tokens (the last one may be partly used).
int64_t blocks_for(int64_t tokens, int64_t block_size);

// First key a layer's queries from position `start` on can see: start - window_left for a
// sliding layer (never below 0), 0 for a global one.
int64_t first_visible_key(const LayerSpec& layer, int64_t start);

// First block a paged cache still holds for a layer when queries from `start` on run: the one
// holding first_visible_key; the blocks before it are released.
int64_t first_live_block(const LayerSpec& layer, int64_t start, int64_t block_size);

}  // namespace longattn::engine
