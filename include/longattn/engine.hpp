// longattn engine: what a runtime builds around the attention call to prefill a long prompt in
// chunks under a memory ceiling. This header includes every part; each is usable alone through
// its own header under longattn/engine/:
//   stack.hpp         layer stacks: the attention shapes of a model (presets and a JSON format);
//   allocator.hpp     where cache storage lives (host or GPU memory);
//   kv_cache.hpp      KV caches: contiguous (one buffer per layer) and paged (block pool + tables);
//   prefix_cache.hpp  full blocks keyed by a chained hash of their token ids, LRU eviction;
//   planner.hpp       the prefill planner: the largest chunk whose memory fits a budget, per chunk;
//                     it owns the block-size, window and kept-key rules the others apply;
//   prefill.hpp       the prefill driver behind `longattn prefill`;
//   report.hpp        the driver's report as JSON.
// Attention only: Q/K/V come from a seeded generator, there are no weights and no model output.
// Errors are thrown as longattn::Error with a message that names the argument or field.
#pragma once

#include "longattn/engine/allocator.hpp"
#include "longattn/engine/kv_cache.hpp"
#include "longattn/engine/planner.hpp"
#include "longattn/engine/prefill.hpp"
#include "longattn/engine/prefix_cache.hpp"
#include "longattn/engine/report.hpp"
#include "longattn/engine/stack.hpp"
