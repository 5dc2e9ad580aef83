#include "core/router.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/detail.hpp"

namespace longattn::detail {
namespace {

// split_kv only pays when the fused path would leave workers idle: fewer (batch, kv head, query
// tile) work items than workers. Each split must still get a few key tiles, or the merge costs
// more than the parallelism gains; below kMinKeysForSplit keys one pass is as fast.
constexpr int64_t kMinKeysForSplit = 1024;

const PathImpl* find_impl(const PathList& list, int32_t path) {
  for (int i = 0; i < list.count; ++i)
    if (list.items[i].path == path) return &list.items[i];
  return nullptr;
}

DeviceContext make_context(const longattn_args& a, const longattn_options& o, bool enforce_budget) {
  DeviceContext ctx;
  ctx.options = &o;
  // With no explicit budget, the memory the device has available is the budget: a plan that
  // cannot be allocated is refused here with a reason instead of failing (or swapping) later.
  // Free memory only matters when the library allocates: not with a caller's workspace (the run
  // takes its bytes from there, and run_attention checks that they fit), nor during CUDA graph
  // capture (which cannot allocate). There the device-wide query is skipped.
  const bool free_memory_matters =
      enforce_budget && o.memory_budget < 0 && !o.workspace &&
      !(a.device == LONGATTN_DEVICE_CUDA && cuda_stream_capturing(o.stream));
  if (a.device == LONGATTN_DEVICE_CPU)
    cpu_device_info(&ctx.info, /*free_memory=*/false);
  else
    cuda_device_info(&ctx.info, /*free_memory=*/false);
  int cores = std::max(1, ctx.info.cores);
  ctx.max_threads =
      a.device == LONGATTN_DEVICE_CPU ? (o.num_threads > 0 ? o.num_threads : cores) : 1;
  ctx.budget = enforce_budget ? o.memory_budget : -1;
  ctx.budget_is_free_memory = free_memory_matters;
  return ctx;
}

// Reads the device's free memory into ctx.budget (see DeviceContext::budget_is_free_memory).
void read_free_memory(int32_t device, DeviceContext* ctx) {
  longattn_device_info info;
  if (device == LONGATTN_DEVICE_CPU)
    cpu_device_info(&info, /*free_memory=*/true);
  else
    cuda_device_info(&info, /*free_memory=*/true);
  ctx->info.memory_free = info.memory_free;
  ctx->info.memory_total = info.memory_total;
  if (info.memory_free > 0) ctx->budget = info.memory_free;
  ctx->budget_is_free_memory = false;
}

void set_reason(longattn_plan* p, const std::string& reason) {
  std::snprintf(p->reason, sizeof p->reason, "%s", reason.c_str());
}

// The order in which AUTO tries paths. Reference is for tests and never chosen; unfused is the
// last resort (it is what longattn exists to replace, but it runs shapes a fused kernel may not).
std::vector<int32_t> auto_order(const longattn_args& a, const DeviceContext& ctx,
                                const PathList& paths, std::string* why) {
  const PathImpl* fused = find_impl(paths, LONGATTN_PATH_FUSED);
  if (fused && fused->unsupported(a, ctx).empty()) {
    longattn_plan p{};
    fused->configure(a, ctx, &p);
    int64_t items = fused->work_items(a, p);
    // The machine's cores, never options.num_threads: the path (and so the bits) must not
    // change with the thread count (README: the same bits whatever the thread count).
    int64_t workers = std::max(1, ctx.info.cores);
    if (items < workers && a.kv_len >= kMinKeysForSplit) {
      if (why)
        *why = format(
            "%lld (batch, kv head, query tile) item%s for %lld workers: splitting %lld "
            "keys keeps every worker busy",
            (long long)items, items == 1 ? "" : "s", (long long)workers, (long long)a.kv_len);
      return {LONGATTN_PATH_SPLIT_KV, LONGATTN_PATH_FUSED, LONGATTN_PATH_UNFUSED};
    }
    if (why)
      *why = format("%lld (batch, kv head, query tile) item%s for %lld worker%s", (long long)items,
                    items == 1 ? "" : "s", (long long)workers, workers == 1 ? "" : "s");
  }
  return {LONGATTN_PATH_FUSED, LONGATTN_PATH_UNFUSED};
}

// Configures `impl` and, if its memory exceeds the budget, lowers the worker count (transient
// memory of the CPU paths is per worker) until it fits. Returns false if even one worker is over.
bool configure_within_budget(const PathImpl& impl, const longattn_args& a, DeviceContext& ctx,
                             longattn_plan* p) {
  p->threads = 0;
  impl.configure(a, ctx, p);
  p->transient_bytes = impl.workspace_bytes(a, *p);
  if (p->transient_bytes > 0 && ctx.budget_is_free_memory) read_free_memory(a.device, &ctx);
  if (ctx.budget < 0 || p->transient_bytes <= ctx.budget) return true;
  while (p->threads > 1) {
    p->threads -= 1;
    impl.configure(a, ctx, p);
    p->transient_bytes = impl.workspace_bytes(a, *p);
    if (p->transient_bytes <= ctx.budget) return true;
  }
  return false;
}

}  // namespace

longattn_plan plan_attention(const longattn_args& a, const longattn_options& o, bool enforce_budget,
                             bool describe) {
  longattn_plan plan{};
  plan.device = a.device;
  plan.path = o.path;
  plan.splits = 1;

  DeviceContext ctx = make_context(a, o, enforce_budget);
  PathList paths = a.device == LONGATTN_DEVICE_CPU ? cpu_paths() : cuda_paths();
  if (!ctx.info.available || paths.count == 0) {
    plan.status = LONGATTN_UNSUPPORTED;
    set_reason(&plan, format("device = LONGATTN_DEVICE_%s is not available: %s",
                             a.device == LONGATTN_DEVICE_CPU ? "CPU" : "CUDA", ctx.info.name));
    return plan;
  }

  std::string auto_why;
  std::vector<int32_t> order = o.path == LONGATTN_PATH_AUTO
                                   ? auto_order(a, ctx, paths, describe ? &auto_why : nullptr)
                                   : std::vector{o.path};
  std::string refusals;
  bool over_budget = false;
  for (int32_t path : order) {
    const PathImpl* impl = find_impl(paths, path);
    std::string why;
    if (!impl) {
      why = "not implemented on this device";
    } else {
      why = impl->unsupported(a, ctx);
      if (why.empty()) {
        longattn_plan p = plan;
        p.path = path;
        if (configure_within_budget(*impl, a, ctx, &p)) {
          p.ok = 1;
          p.status = LONGATTN_OK;
          if (!describe) return p;
          std::string reason =
              format("%s on %s (%s): %d thread%s, ", longattn_path_name(path),
                     a.device == LONGATTN_DEVICE_CPU ? "cpu" : "cuda",
                     o.path == LONGATTN_PATH_AUTO ? auto_why.c_str() : "forced by options.path",
                     p.threads, p.threads == 1 ? "" : "s");
          if (path != LONGATTN_PATH_REFERENCE)
            reason += format("tiles of %d queries x %d keys, %d split%s, ", p.block_q, p.block_k,
                             p.splits, p.splits == 1 ? "" : "s");
          if (impl->kernel) reason += impl->kernel(a, p) + ", ";
          reason += format("%lld transient bytes", (long long)p.transient_bytes);
          if (!refusals.empty()) reason += " (not taken: " + refusals + ")";
          set_reason(&p, reason);
          return p;
        }
        over_budget = true;
        why = format("needs at least %lld transient bytes, over the memory budget of %lld (%s)",
                     (long long)p.transient_bytes, (long long)ctx.budget,
                     o.memory_budget >= 0 ? "options.memory_budget"
                                          : "memory available on the device; options.memory_budget "
                                            "sets another");
      }
    }
    if (!refusals.empty()) refusals += "; ";
    refusals += format("%s: %s", longattn_path_name(path), why.c_str());
  }
  plan.status = over_budget ? LONGATTN_OVER_BUDGET : LONGATTN_UNSUPPORTED;
  set_reason(&plan, "no path can run this: " + refusals);
  return plan;
}

longattn_plan run_attention(const longattn_args& a, const longattn_options& o, bool describe) {
  longattn_plan plan = plan_attention(a, o, /*enforce_budget=*/true, describe || o.log);
  if (!plan.ok) fail(static_cast<longattn_status>(plan.status), "%s", plan.reason);
  if (o.log) o.log(o.log_user, plan.reason);

  void* base = o.workspace;
  std::unique_ptr<void, void (*)(void*)> owned(nullptr, [](void*) {});
  if (base) {
    if (o.workspace_bytes < plan.transient_bytes)
      fail(LONGATTN_INVALID_ARGUMENT,
           "options.workspace_bytes = %lld is smaller than the %lld transient bytes the %s path "
           "needs",
           (long long)o.workspace_bytes, (long long)plan.transient_bytes,
           longattn_path_name(plan.path));
  } else if (plan.transient_bytes > 0) {
    if (a.device == LONGATTN_DEVICE_CUDA && cuda_stream_capturing(o.stream))
      fail(LONGATTN_INVALID_ARGUMENT,
           "the %s path needs %lld transient bytes, and options.stream is being captured into a "
           "CUDA graph, where they cannot be allocated: pass them as options.workspace "
           "(longattn_transient_bytes says how many)",
           longattn_path_name(plan.path), (long long)plan.transient_bytes);
    base = device_alloc(a.device, plan.transient_bytes);
    owned = std::unique_ptr<void, void (*)(void*)>(
        base, a.device == LONGATTN_DEVICE_CPU ? cpu_free : cuda_free);
  }
  Arena arena(base, base == o.workspace ? o.workspace_bytes : plan.transient_bytes);
  const PathImpl* impl =
      find_impl(a.device == LONGATTN_DEVICE_CPU ? cpu_paths() : cuda_paths(), plan.path);
  impl->run(a, plan, arena, o);
  plan.allocated_bytes = arena.used();
  if (arena.used() != plan.transient_bytes)
    fail(LONGATTN_INTERNAL_ERROR, "memory model mismatch: %s predicted %lld bytes, took %lld",
         longattn_path_name(plan.path), (long long)plan.transient_bytes, (long long)arena.used());
  return plan;
}

}  // namespace longattn::detail
