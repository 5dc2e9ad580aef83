// The C boundary: every entry point catches everything, stores the message in a thread-local
// string and returns a status. Nothing below this file knows about the C error convention.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "core/backend.hpp"
#include "core/detail.hpp"
#include "core/merge.hpp"
#include "core/router.hpp"
#include "core/thread_pool.hpp"
#include "core/validate.hpp"
#include "longattn/longattn.h"

using namespace longattn::detail;

// A prepared plan: the decision kept, and the args and CUDA device it was made for.
struct longattn_prepared {
  std::mutex mu;
  // Held through runs that use prepare's workspace: two at once would share its bytes.
  std::mutex shared_workspace;
  longattn_options options;  // path, memory_budget, num_threads, num_splits (the rest per run)
  longattn_args args;
  int cuda_device = -1;
  // Whether the decision was planned with a caller's workspace (no free-memory budget): a run
  // without one plans again rather than inherit a decision that may not fit free memory.
  bool planned_with_workspace = false;
  Decision decision;
};

namespace {

thread_local std::string g_last_error;

template <class F>
longattn_status guarded(F&& f) {
  try {
    g_last_error.clear();
    f();
    return LONGATTN_OK;
  } catch (const Failure& e) {
    g_last_error = e.message;
    return e.status;
  } catch (const std::bad_alloc&) {
    g_last_error = "out of memory";
    return LONGATTN_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    g_last_error = std::string("internal error: ") + e.what();
    return LONGATTN_INTERNAL_ERROR;
  } catch (...) {
    g_last_error = "internal error: unknown exception";
    return LONGATTN_INTERNAL_ERROR;
  }
}

}  // namespace

namespace longattn::detail {

void* device_alloc(int32_t device, int64_t bytes) {
  if (device == LONGATTN_DEVICE_CUDA) return cuda_alloc(bytes);
  void* p =
      std::aligned_alloc(kWorkspaceAlign, static_cast<size_t>(round_up(bytes, kWorkspaceAlign)));
  if (!p)
    fail(LONGATTN_OUT_OF_MEMORY, "could not allocate %lld transient bytes on the CPU",
         (long long)bytes);
  return p;
}

void cpu_free(void* p) { std::free(p); }

}  // namespace longattn::detail

extern "C" {

const char* longattn_version(void) { return "0.1.0"; }

const char* longattn_last_error(void) { return g_last_error.c_str(); }

const char* longattn_status_string(longattn_status s) {
  switch (s) {
    case LONGATTN_OK:
      return "ok";
    case LONGATTN_INVALID_ARGUMENT:
      return "invalid argument";
    case LONGATTN_UNSUPPORTED:
      return "unsupported";
    case LONGATTN_OVER_BUDGET:
      return "over budget";
    case LONGATTN_OUT_OF_MEMORY:
      return "out of memory";
    case LONGATTN_DEVICE_ERROR:
      return "device error";
    case LONGATTN_INTERNAL_ERROR:
      return "internal error";
  }
  return "unknown status";
}

const char* longattn_path_name(int32_t path) {
  switch (path) {
    case LONGATTN_PATH_AUTO:
      return "auto";
    case LONGATTN_PATH_REFERENCE:
      return "reference";
    case LONGATTN_PATH_UNFUSED:
      return "unfused";
    case LONGATTN_PATH_FUSED:
      return "fused";
    case LONGATTN_PATH_SPLIT_KV:
      return "split_kv";
  }
  return "unknown";
}

const char* longattn_dtype_name(int32_t dtype) {
  switch (dtype) {
    case LONGATTN_FLOAT32:
      return "float32";
    case LONGATTN_FLOAT16:
      return "float16";
    case LONGATTN_BFLOAT16:
      return "bfloat16";
    case LONGATTN_FLOAT8_E4M3:
      return "float8_e4m3";
    case LONGATTN_FLOAT8_E5M2:
      return "float8_e5m2";
  }
  return "unknown";
}

void longattn_set_contiguous_strides(longattn_args* a) {
  if (!a) return;
  // Sizes are not validated here: products wrap (signed overflow would be undefined), and
  // validation then rejects the strides of sizes too large to address.
  auto mul = [](int64_t x, int64_t y) { return int64_t(uint64_t(x) * uint64_t(y)); };
  auto strides = [&](int64_t h, int64_t l, int64_t d) {
    return longattn_strides{mul(mul(h, l), d), mul(l, d), d};
  };
  a->q_strides = strides(a->q_heads, a->q_len, a->head_dim_qk);
  a->k_strides = strides(a->kv_heads, a->kv_len, a->head_dim_qk);
  a->v_strides = strides(a->kv_heads, a->kv_len, a->head_dim_v);
  a->o_strides = strides(a->q_heads, a->q_len, a->head_dim_v);
}

void longattn_args_init(longattn_args* a) {
  if (!a) return;
  std::memset(a, 0, sizeof *a);
  a->dtype = LONGATTN_FLOAT32;
  a->device = LONGATTN_DEVICE_CPU;
  a->batch = a->q_heads = a->kv_heads = a->q_len = a->kv_len = 1;
  a->head_dim_qk = a->head_dim_v = 64;
  a->window_left = -1;
  a->mask.kind = LONGATTN_MASK_NONE;
  for (int i = 0; i < 4; ++i) a->mask.dims[i] = 1;
  longattn_set_contiguous_strides(a);
}

void longattn_options_init(longattn_options* o) {
  if (!o) return;
  std::memset(o, 0, sizeof *o);
  o->path = LONGATTN_PATH_AUTO;
  o->memory_budget = -1;
}

longattn_status longattn_device_query(int32_t device, longattn_device_info* info) {
  return guarded([&] {
    if (!info) fail(LONGATTN_INVALID_ARGUMENT, "info is NULL");
    if (device == LONGATTN_DEVICE_CPU)
      cpu_device_info(info);
    else if (device == LONGATTN_DEVICE_CUDA)
      cuda_device_info(info);
    else
      fail(LONGATTN_INVALID_ARGUMENT,
           "device = %d: allowed values are LONGATTN_DEVICE_CPU (0), LONGATTN_DEVICE_CUDA (1)",
           device);
  });
}

longattn_status longattn_plan_attention(const longattn_args* args, const longattn_options* options,
                                        longattn_plan* plan) {
  return guarded([&] {
    if (!plan) fail(LONGATTN_INVALID_ARGUMENT, "plan is NULL");
    std::memset(plan, 0, sizeof *plan);
    plan->status = LONGATTN_INVALID_ARGUMENT;
    validate_args(args);
    validate_options(options);
    *plan = plan_attention(*args, *options).plan;
    if (!plan->ok) fail(static_cast<longattn_status>(plan->status), "%s", plan->reason);
  });
}

longattn_status longattn_transient_bytes(const longattn_args* args, int32_t path,
                                         const longattn_options* options, int64_t* bytes) {
  return guarded([&] {
    if (!bytes) fail(LONGATTN_INVALID_ARGUMENT, "bytes is NULL");
    validate_options(options);
    longattn_options o = *options;
    o.path = path;
    validate_options(&o);
    validate_args(args);
    // The question is what the path needs, not whether it fits a budget.
    longattn_plan p = plan_attention(*args, o, /*enforce_budget=*/false, /*describe=*/false).plan;
    if (!p.ok) fail(static_cast<longattn_status>(p.status), "%s", p.reason);
    *bytes = p.transient_bytes;
  });
}

longattn_status longattn_attention(const longattn_args* args, const longattn_options* options,
                                   longattn_plan* plan) {
  return guarded([&] {
    if (plan) std::memset(plan, 0, sizeof *plan);
    validate_args(args);
    validate_options(options);
    longattn_plan p = run_attention(*args, *options, /*describe=*/plan != nullptr);
    if (plan) *plan = p;
  });
}

longattn_status longattn_prepare(const longattn_args* args, const longattn_options* options,
                                 longattn_prepared** prepared, longattn_plan* plan) {
  return guarded([&] {
    if (plan) std::memset(plan, 0, sizeof *plan);
    if (!prepared) fail(LONGATTN_INVALID_ARGUMENT, "prepared is NULL");
    *prepared = nullptr;
    validate_args(args);
    validate_options(options);
    auto p = std::make_unique<longattn_prepared>();
    p->decision = plan_attention(*args, *options);
    if (plan) *plan = p->decision.plan;
    if (!p->decision.plan.ok)
      fail(static_cast<longattn_status>(p->decision.plan.status), "%s", p->decision.plan.reason);
    p->options = *options;
    p->args = *args;
    p->planned_with_workspace = options->workspace != nullptr;
    p->cuda_device = args->device == LONGATTN_DEVICE_CUDA ? cuda_current_device() : -1;
    *prepared = p.release();
  });
}

longattn_status longattn_run_prepared(longattn_prepared* prepared, const longattn_args* args,
                                      const longattn_options* options, longattn_plan* plan) {
  return guarded([&] {
    if (plan) std::memset(plan, 0, sizeof *plan);
    if (!prepared) fail(LONGATTN_INVALID_ARGUMENT, "prepared is NULL");
    validate_args(args);
    longattn_options o = prepared->options;  // set at prepare, never written after
    if (options) {
      validate_options(options);
      o.stream = options->stream;
      o.workspace = options->workspace;
      o.workspace_bytes = options->workspace_bytes;
      o.log = options->log;
      o.log_user = options->log_user;
    }
    const int device = args->device == LONGATTN_DEVICE_CUDA ? cuda_current_device() : -1;
    const bool with_workspace = o.workspace != nullptr;
    Decision d;
    bool reuse;
    {
      std::lock_guard<std::mutex> lock(prepared->mu);
      reuse = device == prepared->cuda_device &&
              with_workspace == prepared->planned_with_workspace &&
              decides_alike(prepared->args, *args);
      if (reuse) d = prepared->decision;
    }
    if (!reuse) {
      d = plan_attention(*args, o);
      if (!d.plan.ok) fail(static_cast<longattn_status>(d.plan.status), "%s", d.plan.reason);
      std::lock_guard<std::mutex> lock(prepared->mu);
      prepared->args = *args;
      prepared->cuda_device = device;
      prepared->planned_with_workspace = with_workspace;
      prepared->decision = d;
    }
    if (o.log) o.log(o.log_user, d.plan.reason);
    std::unique_lock<std::mutex> shared;
    if (!options && with_workspace)
      shared = std::unique_lock<std::mutex>(prepared->shared_workspace);
    run_decision(*args, o, &d);
    if (plan) *plan = d.plan;
  });
}

void longattn_prepared_free(longattn_prepared* prepared) { delete prepared; }

longattn_status longattn_merge_states(int64_t n, int64_t rows, int64_t dv, const float* o_parts,
                                      const float* lse_parts, float* o, float* lse) {
  return guarded([&] {
    if (n < 1) fail(LONGATTN_INVALID_ARGUMENT, "n = %lld: must be >= 1", (long long)n);
    if (rows < 0) fail(LONGATTN_INVALID_ARGUMENT, "rows = %lld: must be >= 0", (long long)rows);
    if (dv < 1 || dv > kMaxHeadDimV)
      fail(LONGATTN_INVALID_ARGUMENT, "dv = %lld: allowed values are 1 to %lld", (long long)dv,
           (long long)kMaxHeadDimV);
    if (!o_parts || !lse_parts || !o)
      fail(LONGATTN_INVALID_ARGUMENT, "%s is NULL",
           !o_parts     ? "o_parts"
           : !lse_parts ? "lse_parts"
                        : "o");
    // Byte counts of o_parts [n, rows, dv] and lse_parts [n, rows] must fit int64.
    const int64_t part = checked_mul(rows, dv, "rows * dv");
    checked_mul(checked_mul(part, n, "n * rows * dv"), 4, "o_parts");
    parallel_for(rows, 1, [&](int64_t r, int) {
      float l = merge_row(n, dv, o_parts + r * dv, part, lse_parts + r, rows, o + r * dv);
      if (lse) lse[r] = l;
    });
  });
}

}  // extern "C"
