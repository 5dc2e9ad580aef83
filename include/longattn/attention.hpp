// longattn C++ API: a thin, exception-based layer over the C API (longattn.h). The arguments struct
// is the C one, so what a C++ caller fills is exactly what every layer below sees.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "longattn/longattn.h"

namespace longattn {

using AttentionArgs = longattn_args;
using Options = longattn_options;
using DeviceInfo = longattn_device_info;

// Thrown by the C++ functions below; status() is the C status, what() the message.
class Error : public std::runtime_error {
 public:
  Error(longattn_status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  longattn_status status() const { return status_; }

 private:
  longattn_status status_;
};

struct Plan {
  bool ok_ = false;
  longattn_status status = LONGATTN_OK;
  longattn_path path = LONGATTN_PATH_AUTO;
  longattn_device device = LONGATTN_DEVICE_CPU;
  int threads = 0, block_q = 0, block_k = 0, splits = 1;
  int64_t transient_bytes = 0;
  int64_t allocated_bytes = 0;
  std::string reason;
  bool ok() const { return ok_; }
};

// Args with contiguous strides for the given shape; pointers and dtype are still the caller's.
inline AttentionArgs make_args(int64_t batch, int64_t q_heads, int64_t kv_heads, int64_t q_len,
                               int64_t kv_len, int64_t head_dim_qk, int64_t head_dim_v = -1) {
  AttentionArgs a;
  longattn_args_init(&a);
  a.batch = batch;
  a.q_heads = q_heads;
  a.kv_heads = kv_heads;
  a.q_len = q_len;
  a.kv_len = kv_len;
  a.head_dim_qk = head_dim_qk;
  a.head_dim_v = head_dim_v < 0 ? head_dim_qk : head_dim_v;
  longattn_set_contiguous_strides(&a);
  return a;
}

inline Options default_options() {
  Options o;
  longattn_options_init(&o);
  return o;
}

inline Plan to_plan(const longattn_plan& p) {
  Plan r;
  r.ok_ = p.ok != 0;
  r.status = static_cast<longattn_status>(p.status);
  r.path = static_cast<longattn_path>(p.path);
  r.device = static_cast<longattn_device>(p.device);
  r.threads = p.threads;
  r.block_q = p.block_q;
  r.block_k = p.block_k;
  r.splits = p.splits;
  r.transient_bytes = p.transient_bytes;
  r.allocated_bytes = p.allocated_bytes;
  r.reason = p.reason;
  return r;
}

// The router's decision; never throws for unsupported or over-budget cases (plan.ok() says),
// throws Error only for invalid arguments.
inline Plan plan(const AttentionArgs& args, const Options& options = default_options()) {
  longattn_plan p;
  longattn_status s = longattn_plan_attention(&args, &options, &p);
  if (s == LONGATTN_INVALID_ARGUMENT) throw Error(s, longattn_last_error());
  return to_plan(p);
}

// Runs attention; throws Error on any failure. Returns the plan it ran.
inline Plan run(const AttentionArgs& args, const Options& options = default_options()) {
  longattn_plan p;
  longattn_status s = longattn_attention(&args, &options, &p);
  if (s != LONGATTN_OK) throw Error(s, longattn_last_error());
  return to_plan(p);
}

inline int64_t transient_bytes(const AttentionArgs& args, longattn_path path,
                               const Options& options = default_options()) {
  int64_t bytes = 0;
  longattn_status s = longattn_transient_bytes(&args, path, &options, &bytes);
  if (s != LONGATTN_OK) throw Error(s, longattn_last_error());
  return bytes;
}

inline DeviceInfo device_info(longattn_device device) {
  DeviceInfo info;
  longattn_status s = longattn_device_query(device, &info);
  if (s != LONGATTN_OK) throw Error(s, longattn_last_error());
  return info;
}

// A plan kept for many calls (see longattn_prepare): decided once, run per layer and step.
class Prepared {
 public:
  explicit Prepared(const AttentionArgs& args, const Options& options = default_options()) {
    longattn_plan p;
    longattn_status s = longattn_prepare(&args, &options, &handle_, &p);
    if (s != LONGATTN_OK) throw Error(s, longattn_last_error());
    plan_ = to_plan(p);
  }
  Prepared(const Prepared&) = delete;
  Prepared& operator=(const Prepared&) = delete;
  ~Prepared() { longattn_prepared_free(handle_); }

  // The decision made at construction.
  const Plan& plan() const { return plan_; }
  // Runs args with the kept decision (planned again where args differ in more than pointers);
  // options give the stream, workspace and log of this call (NULL: those of construction).
  void run(const AttentionArgs& args, const Options* options = nullptr) {
    longattn_status s = longattn_run_prepared(handle_, &args, options, nullptr);
    if (s != LONGATTN_OK) throw Error(s, longattn_last_error());
  }

 private:
  longattn_prepared* handle_ = nullptr;
  Plan plan_;
};

// See longattn_merge_states.
inline void merge_states(int64_t n, int64_t rows, int64_t dv, const float* o_parts,
                         const float* lse_parts, float* o, float* lse) {
  longattn_status s = longattn_merge_states(n, rows, dv, o_parts, lse_parts, o, lse);
  if (s != LONGATTN_OK) throw Error(s, longattn_last_error());
}

}  // namespace longattn
