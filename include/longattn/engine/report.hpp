// The prefill report as JSON: what `longattn prefill --json` prints and scripts/plot_prefill.py
// reads. Part of the engine (engine.hpp).
#pragma once

#include <string>

#include "longattn/engine/prefill.hpp"

namespace longattn::engine {

LONGATTN_API std::string report_to_json(const PrefillReport& report);

}  // namespace longattn::engine
