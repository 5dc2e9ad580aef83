// A process-wide pool of CPU workers. parallel_for hands out items through one atomic counter, so
// each item runs on exactly one thread; results never depend on which thread ran what.
#pragma once

#include <cstdint>
#include <functional>

namespace longattn::detail {

// Runs fn(item, worker) for item in [0, n) on `threads` workers (the caller is worker 0).
// worker < threads, so per-worker scratch can be indexed by it. Exceptions from fn are rethrown
// on the caller after all workers stop.
void parallel_for(int64_t n, int threads, const std::function<void(int64_t item, int worker)>& fn);

}  // namespace longattn::detail
