// How a backend (cpu/, cuda/) plugs a path into the router. One PathImpl per (device, path); the
// router (router.cpp) only ever asks these functions, so "is it supported?", "how much memory?"
// and "run it" are answered by the same code for planning and for running.
#pragma once

#include <cstdint>
#include <string>

#include "core/workspace.hpp"
#include "longattn/longattn.h"

namespace longattn::detail {

// What the router knows about the device it plans for.
struct DeviceContext {
  longattn_device_info info{};
  int max_threads = 1;  // CPU: worker threads allowed by options (or all cores)
  int64_t budget = -1;  // bytes of transient memory allowed; -1 = unlimited
  // No budget given: the device's free memory is the budget, read when a plan first needs
  // transient memory (a /proc read or cudaMemGetInfo costs more than the rest of a plan).
  bool budget_is_free_memory = false;
  const longattn_options* options = nullptr;
};

// No path's check reads more of a pointer than whether it is NULL and its residue modulo this
// (16-byte rows for vector loads, TMA and cuBLAS): a decision holds for any pointers alike in both.
constexpr uintptr_t kDecisionAlignment = 16;

// What a backend decided for one path beyond the public plan: the kernel it runs (the CUDA
// backend: which compiled kernel, its occupancy, the TMA maps). Written by `check`, read by every
// later stage, so no stage re-derives it. Plain bytes: core needs no backend header, and each
// backend static_asserts that its record fits.
struct BackendChoice {
  alignas(64) unsigned char bytes[640];
};

// The router's decision: the public plan and the backend's choice behind it.
struct Decision {
  longattn_plan plan;
  BackendChoice choice;
};

struct PathImpl {
  longattn_device device;
  longattn_path path;
  // "" when this path can run args on this device (and then *choice holds what it will run);
  // otherwise why not, naming the argument and the allowed values (e.g. "head_dim_qk=100: the
  // CUDA fused path needs one of 64, 80, ...").
  std::string (*check)(const longattn_args& args, const DeviceContext& ctx, BackendChoice* choice);
  // Fills plan.threads, block_q, block_k, splits for this path. `threads` is an upper bound the
  // router may lower to fit a budget; configure must honour plan.threads if already set (> 0).
  void (*configure)(const longattn_args& args, const DeviceContext& ctx, Decision* d);
  // Exact transient bytes for a configured plan: what run() takes from its Arena.
  int64_t (*workspace_bytes)(const longattn_args& args, const Decision& d);
  // Runs the plan. Must take exactly workspace_bytes() from the arena. Throws Failure on error.
  // The decision may come from args that differ in their pointers (a prepared plan, same
  // alignment): run reads the pointers from args, never from the choice.
  void (*run)(const longattn_args& args, const Decision& d, Arena& arena,
              const longattn_options& options);
  // The kernel a configured plan runs (e.g. "sm90a wgmma+TMA"): plan.kernel and the reason. At
  // most 63 characters.
  std::string (*kernel)(const longattn_args& args, const Decision& d);
};

// Each backend lists its paths; a backend that is not built returns an empty list.
struct PathList {
  const PathImpl* items = nullptr;
  int count = 0;
  // AUTO's one backend-specific choice, made by the backend's policy (policy_cpu, policy_cuda):
  // whether split_kv beats the fused path, given the fused path's configured decision. *why (when
  // not NULL) gets the reason either way.
  bool (*split_pays)(const longattn_args& args, const DeviceContext& ctx, const Decision& fused,
                     std::string* why) = nullptr;
};
PathList cpu_paths();
PathList cuda_paths();

// Transient memory of one run. Allocation failures throw Failure(LONGATTN_OUT_OF_MEMORY).
void* device_alloc(int32_t device, int64_t bytes);
void cpu_free(void* p);
void cuda_free(void* p);
void* cuda_alloc(int64_t bytes);

// Device queries (src/cpu/cpu_info.cpp, the cuda backend). Never throw. free_memory = false skips
// the free-memory read (memory_free stays 0) where no budget needs it.
void cpu_device_info(longattn_device_info* info, bool free_memory = true);
// available = 0 when not built or no GPU. free_memory = false skips cudaMemGetInfo (a device-wide
// query, tens of microseconds): memory_free and memory_total stay 0.
void cuda_device_info(longattn_device_info* info, bool free_memory = true);
// Whether work enqueued on `stream` (a cudaStream_t; NULL = default stream) is being captured into
// a CUDA graph, where allocation and synchronous copies are not allowed. false without CUDA.
bool cuda_stream_capturing(void* stream);
// The current CUDA device of this thread (-1 without CUDA or on error): a decision is made for it.
int cuda_current_device();

}  // namespace longattn::detail
