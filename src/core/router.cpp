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

// The checks of one plan_attention call. Paths that share a check (the CUDA fused and split_kv
// paths run one kernel) ask it once: on CUDA a check looks up the compiled kernel and encodes TMA
// maps, more than the rest of a plan.
class Checks {
 public:
  // "" (and *choice filled) when impl can run a; otherwise why not.
  const std::string& check(const PathImpl& impl, const longattn_args& a, const DeviceContext& ctx,
                           BackendChoice* choice) {
    for (int i = 0; i < count_; ++i)
      if (done_[i].fn == impl.check) {
        if (done_[i].why.empty()) *choice = done_[i].choice;
        return done_[i].why;
      }
    if (count_ == kMaxChecks) {  // more distinct checks than paths: ask without keeping
      extra_ = impl.check(a, ctx, choice);
      return extra_;
    }
    Done& d = done_[count_++];
    d.fn = impl.check;
    d.why = impl.check(a, ctx, &d.choice);
    if (d.why.empty()) *choice = d.choice;
    return d.why;
  }

 private:
  struct Done {
    decltype(PathImpl::check) fn = nullptr;
    std::string why;
    BackendChoice choice;
  };
  static constexpr int kMaxChecks = 5;  // one per path
  Done done_[kMaxChecks];
  int count_ = 0;
  std::string extra_;
};

// The order in which AUTO tries paths. Reference is for tests and never chosen; unfused is the
// last resort (it is what longattn exists to replace, but it runs shapes a fused kernel may not).
std::vector<int32_t> auto_order(const longattn_args& a, const DeviceContext& ctx,
                                const PathList& paths, Checks& checks, std::string* why) {
  const int32_t fixed_splits = ctx.options ? ctx.options->num_splits : 0;
  if (fixed_splits > 0) {
    if (why) *why = format("options.num_splits = %d", fixed_splits);
    if (fixed_splits == 1) return {LONGATTN_PATH_FUSED, LONGATTN_PATH_UNFUSED};
    return {LONGATTN_PATH_SPLIT_KV, LONGATTN_PATH_FUSED, LONGATTN_PATH_UNFUSED};
  }
  const PathImpl* fused = find_impl(paths, LONGATTN_PATH_FUSED);
  Decision d{};
  if (fused && checks.check(*fused, a, ctx, &d.choice).empty()) {
    d.plan.path = LONGATTN_PATH_FUSED;
    fused->configure(a, ctx, &d);
    if (paths.split_pays && paths.split_pays(a, ctx, d, why))
      return {LONGATTN_PATH_SPLIT_KV, LONGATTN_PATH_FUSED, LONGATTN_PATH_UNFUSED};
  }
  return {LONGATTN_PATH_FUSED, LONGATTN_PATH_UNFUSED};
}

// Configures `impl` and, if its memory exceeds the budget, lowers the worker count (transient
// memory of the CPU paths is per worker) until it fits. Returns false if even one worker is over.
bool configure_within_budget(const PathImpl& impl, const longattn_args& a, DeviceContext& ctx,
                             Decision* d) {
  longattn_plan* p = &d->plan;
  p->threads = 0;
  impl.configure(a, ctx, d);
  p->transient_bytes = impl.workspace_bytes(a, *d);
  if (p->transient_bytes > 0 && ctx.budget_is_free_memory) read_free_memory(a.device, &ctx);
  if (ctx.budget < 0 || p->transient_bytes <= ctx.budget) return true;
  while (p->threads > 1) {
    p->threads -= 1;
    impl.configure(a, ctx, d);
    p->transient_bytes = impl.workspace_bytes(a, *d);
    if (p->transient_bytes <= ctx.budget) return true;
  }
  return false;
}

const PathImpl* impl_of(int32_t device, int32_t path) {
  return find_impl(device == LONGATTN_DEVICE_CPU ? cpu_paths() : cuda_paths(), path);
}

}  // namespace

Decision plan_attention(const longattn_args& a, const longattn_options& o, bool enforce_budget,
                        bool describe) {
  Decision d{};
  longattn_plan& plan = d.plan;
  plan.device = a.device;
  plan.path = o.path;
  plan.splits = 1;

  DeviceContext ctx = make_context(a, o, enforce_budget);
  PathList paths = a.device == LONGATTN_DEVICE_CPU ? cpu_paths() : cuda_paths();
  if (!ctx.info.available || paths.count == 0) {
    plan.status = LONGATTN_UNSUPPORTED;
    set_reason(&plan, format("device = LONGATTN_DEVICE_%s is not available: %s",
                             a.device == LONGATTN_DEVICE_CPU ? "CPU" : "CUDA", ctx.info.name));
    return d;
  }

  Checks checks;
  std::string auto_why;
  std::vector<int32_t> order =
      o.path == LONGATTN_PATH_AUTO
          ? auto_order(a, ctx, paths, checks, describe ? &auto_why : nullptr)
          : std::vector{o.path};
  std::string refusals;
  bool over_budget = false;
  for (int32_t path : order) {
    const PathImpl* impl = find_impl(paths, path);
    std::string why;
    if (!impl) {
      why = "not implemented on this device";
    } else {
      Decision c = d;
      why = checks.check(*impl, a, ctx, &c.choice);
      if (why.empty()) {
        longattn_plan& p = c.plan;
        p.path = path;
        if (configure_within_budget(*impl, a, ctx, &c)) {
          p.ok = 1;
          p.status = LONGATTN_OK;
          if (!describe) return c;
          std::string reason =
              format("%s on %s (%s): %d thread%s, ", longattn_path_name(path),
                     a.device == LONGATTN_DEVICE_CPU ? "cpu" : "cuda",
                     o.path == LONGATTN_PATH_AUTO ? auto_why.c_str() : "forced by options.path",
                     p.threads, p.threads == 1 ? "" : "s");
          if (path != LONGATTN_PATH_REFERENCE)
            reason += format("tiles of %d queries x %d keys, %d split%s, ", p.block_q, p.block_k,
                             p.splits, p.splits == 1 ? "" : "s");
          const std::string kernel = impl->kernel(a, c);
          std::snprintf(p.kernel, sizeof p.kernel, "%s", kernel.c_str());
          reason += "kernel " + kernel + ", ";
          reason += format("%lld transient bytes", (long long)p.transient_bytes);
          if (!refusals.empty()) reason += " (not taken: " + refusals + ")";
          set_reason(&p, reason);
          return c;
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
  return d;
}

void run_decision(const longattn_args& a, const longattn_options& o, Decision* d) {
  longattn_plan& plan = d->plan;
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
  impl_of(a.device, plan.path)->run(a, *d, arena, o);
  plan.allocated_bytes = arena.used();
  if (arena.used() != plan.transient_bytes)
    fail(LONGATTN_INTERNAL_ERROR, "memory model mismatch: %s predicted %lld bytes, took %lld",
         longattn_path_name(plan.path), (long long)plan.transient_bytes, (long long)arena.used());
}

bool decides_alike(const longattn_args& x, const longattn_args& y) {
  auto ptr = [](const void* p) { return p ? uintptr_t(p) % kDecisionAlignment + 1 : uintptr_t(0); };
  auto same_ptr = [&](const void* p, const void* q) { return ptr(p) == ptr(q); };
  auto same_strides = [](const longattn_strides& s, const longattn_strides& t) {
    return s.batch == t.batch && s.head == t.head && s.token == t.token;
  };
  const longattn_mask &m = x.mask, &n = y.mask;
  for (int i = 0; i < 4; ++i)
    if (m.dims[i] != n.dims[i] || m.strides[i] != n.strides[i]) return false;
  return same_ptr(x.q, y.q) && same_ptr(x.k, y.k) && same_ptr(x.v, y.v) && same_ptr(x.o, y.o) &&
         same_ptr(x.lse, y.lse) && (x.k == x.v) == (y.k == y.v) && x.dtype == y.dtype &&
         x.device == y.device && x.batch == y.batch && x.q_heads == y.q_heads &&
         x.kv_heads == y.kv_heads && x.q_len == y.q_len && x.kv_len == y.kv_len &&
         x.head_dim_qk == y.head_dim_qk && x.head_dim_v == y.head_dim_v &&
         same_strides(x.q_strides, y.q_strides) && same_strides(x.k_strides, y.k_strides) &&
         same_strides(x.v_strides, y.v_strides) && same_strides(x.o_strides, y.o_strides) &&
         x.scale == y.scale && x.causal == y.causal && x.window_left == y.window_left &&
         x.softcap == y.softcap && same_ptr(x.sinks, y.sinks) && m.kind == n.kind &&
         same_ptr(m.data, n.data) && same_ptr(x.block_table, y.block_table) &&
         x.block_table_stride == y.block_table_stride && x.page_size == y.page_size &&
         x.num_blocks == y.num_blocks && kv_dtype_of(x) == kv_dtype_of(y) &&
         x.kv_scale_per_head == y.kv_scale_per_head && same_ptr(x.k_scale, y.k_scale) &&
         same_ptr(x.v_scale, y.v_scale);
}

longattn_plan run_attention(const longattn_args& a, const longattn_options& o, bool describe) {
  Decision d = plan_attention(a, o, /*enforce_budget=*/true, describe || o.log);
  if (!d.plan.ok) fail(static_cast<longattn_status>(d.plan.status), "%s", d.plan.reason);
  if (o.log) o.log(o.log_user, d.plan.reason);
  run_decision(a, o, &d);
  return d.plan;
}

}  // namespace longattn::detail
