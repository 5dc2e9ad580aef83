// The router: one pure function from (args, device, options) to a plan. Whether a shape is
// supported is exactly whether plan_attention returns ok, so support and choice cannot drift.
#pragma once

#include "longattn/longattn.h"

namespace longattn::detail {

// Decides, for args and options the C API has validated (validate_args, validate_options: once per
// call, there). "Unsupported" and "over budget" come back as a plan with ok = 0, status and reason.
// enforce_budget = false answers "what would each path need" (longattn_transient_bytes).
// describe = false leaves a successful plan's reason empty: formatting it costs more than the rest
// of a plan, and a run whose caller asks for neither the plan nor a log never reads it.
longattn_plan plan_attention(const longattn_args& args, const longattn_options& options,
                             bool enforce_budget = true, bool describe = true);

// Plans, takes the workspace (the caller's or its own), runs, checks the memory model held.
// describe: whether the caller reads the returned plan's reason (options.log always gets one).
longattn_plan run_attention(const longattn_args& args, const longattn_options& options,
                            bool describe = true);

}  // namespace longattn::detail
