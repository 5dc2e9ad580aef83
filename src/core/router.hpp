// The router: one pure function from (args, device, options) to a plan. Whether a shape is
// supported is exactly whether plan_attention returns ok, so support and choice cannot drift.
#pragma once

#include "core/backend.hpp"
#include "longattn/longattn.h"

namespace longattn::detail {

// Decides, for args and options the C API has validated (validate_args, validate_options: once per
// call, there). "Unsupported" and "over budget" come back as a plan with ok = 0, status and reason.
// enforce_budget = false answers "what would each path need" (longattn_transient_bytes).
// describe = false leaves a successful plan's reason empty: formatting it costs more than the rest
// of a plan, and a run whose caller asks for neither the plan nor a log never reads it.
Decision plan_attention(const longattn_args& args, const longattn_options& options,
                        bool enforce_budget = true, bool describe = true);

// Runs a successful decision for args (the args it was planned for, or a prepared plan's next
// call): takes the workspace (the caller's or its own), runs, checks the memory model held, and
// records the bytes taken in d->plan.allocated_bytes.
void run_decision(const longattn_args& args, const longattn_options& options, Decision* d);

// Plans, takes the workspace (the caller's or its own), runs, checks the memory model held.
// describe: whether the caller reads the returned plan's reason (options.log always gets one).
// Whether a decision made for `planned` holds for `now`: every argument equal except the
// pointers' values (each NULL where the other is, and alike modulo kDecisionAlignment: the checks
// read nothing else of them). A prepared plan reuses its decision exactly then.
bool decides_alike(const longattn_args& planned, const longattn_args& now);

longattn_plan run_attention(const longattn_args& args, const longattn_options& options,
                            bool describe = true);

}  // namespace longattn::detail
