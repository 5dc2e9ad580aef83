// `longattn info`: version, devices, and which head dims each path supports, as the router says.
#include <cinttypes>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "cli.hpp"
#include "fma_peak.hpp"

namespace longattn::cli {
namespace {

constexpr int kMaxProbeHeadDim = 512;  // the largest head dim the library may accept
constexpr int32_t kProbePaths[] = {LONGATTN_PATH_REFERENCE, LONGATTN_PATH_UNFUSED,
                                   LONGATTN_PATH_FUSED, LONGATTN_PATH_SPLIT_KV};
constexpr int32_t kDtypes[] = {LONGATTN_FLOAT32, LONGATTN_FLOAT16, LONGATTN_BFLOAT16};

using Ranges = std::vector<std::pair<int, int>>;  // inclusive [lo, hi] runs of head dims

// Head dims d (head_dim_qk = head_dim_v = d) the router accepts for `path`. Planning only reads
// shapes and pointers, never the data, so small real buffers sized for the largest d suffice.
Ranges supported_head_dims(int32_t device, int32_t path, int32_t dtype) {
  // One query over split_kv's natural shape (decode: one query row, many keys); no mask, no
  // budget, so only the head dim and dtype can make a path refuse.
  constexpr int64_t kProbeKeys = 4096;
  static std::vector<float> q(kMaxProbeHeadDim), o(kMaxProbeHeadDim),
      k(size_t(kProbeKeys) * kMaxProbeHeadDim), v(k.size());
  Ranges ranges;
  for (int d = 1; d <= kMaxProbeHeadDim; ++d) {
    longattn_args a;
    longattn_args_init(&a);
    a.q = q.data(), a.k = k.data(), a.v = v.data(), a.o = o.data();
    a.dtype = dtype;
    a.device = device;
    a.kv_len = kProbeKeys;
    a.head_dim_qk = a.head_dim_v = d;
    longattn_set_contiguous_strides(&a);
    longattn_options options;
    longattn_options_init(&options);
    options.path = path;
    longattn_plan plan;
    if (longattn_plan_attention(&a, &options, &plan) != LONGATTN_OK || !plan.ok) continue;
    if (!ranges.empty() && ranges.back().second == d - 1)
      ranges.back().second = d;
    else
      ranges.push_back({d, d});
  }
  return ranges;
}

std::string ranges_text(const Ranges& r) {
  if (r.empty()) return "none";
  std::string s;
  for (const auto& [lo, hi] : r) {
    if (!s.empty()) s += ",";
    s += lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi);
  }
  return s;
}

std::string ranges_json(const Ranges& r) {
  std::string s = "[";
  for (const auto& [lo, hi] : r)
    s += (s.size() > 1 ? ",[" : "[") + std::to_string(lo) + "," + std::to_string(hi) + "]";
  return s + "]";
}

struct DeviceReport {
  longattn_device_info info{};
  std::string unavailable;  // why not, when !info.available
  // [path][dtype] supported head dims, only for available devices
  std::vector<std::vector<Ranges>> head_dims;
};

DeviceReport query_device(int32_t device) {
  DeviceReport r;
  if (longattn_device_query(device, &r.info) != LONGATTN_OK) {
    r.unavailable = longattn_last_error();
    return r;
  }
  if (!r.info.available) {
    r.unavailable = r.info.name;
    return r;
  }
  for (int32_t path : kProbePaths) {
    r.head_dims.emplace_back();
    for (int32_t dtype : kDtypes)
      r.head_dims.back().push_back(supported_head_dims(device, path, dtype));
  }
  return r;
}

void print_text(const std::vector<DeviceReport>& devices, const FmaPeak* peak) {
  std::printf("longattn %s\n\ndevices:\n", longattn_version());
  for (const DeviceReport& d : devices) {
    const char* name = device_flag_name(d.info.device);
    if (!d.unavailable.empty()) {
      std::printf("  %-5s not available: %s\n", name, d.unavailable.c_str());
      continue;
    }
    std::printf("  %-5s %s, %d %s", name, d.info.name, d.info.cores,
                d.info.device == LONGATTN_DEVICE_CPU ? "cores" : "SMs");
    if (d.info.memory_total > 0)
      std::printf(", %s memory (%s free)", format_bytes(d.info.memory_total).c_str(),
                  format_bytes(d.info.memory_free).c_str());
    std::printf("\n        features: %s\n", d.info.features[0] ? d.info.features : "(none)");
  }
  for (const DeviceReport& d : devices) {
    if (d.head_dims.empty()) continue;
    std::printf("\nsupported head dims on %s (head_dim_qk = head_dim_v; f32 f16 bf16):\n",
                device_flag_name(d.info.device));
    for (size_t p = 0; p < d.head_dims.size(); ++p) {
      const auto& per_dtype = d.head_dims[p];
      std::printf("  %-10s", longattn_path_name(kProbePaths[p]));
      bool same = per_dtype[1] == per_dtype[0] && per_dtype[2] == per_dtype[0];
      if (same) {
        std::printf(" %s (all dtypes)\n", ranges_text(per_dtype[0]).c_str());
      } else {
        for (size_t t = 0; t < per_dtype.size(); ++t)
          std::printf(" %s: %s%s", dtype_flag_name(kDtypes[t]), ranges_text(per_dtype[t]).c_str(),
                      t + 1 < per_dtype.size() ? ";" : "\n");
      }
    }
  }
  if (peak)
    std::printf(
        "\nmeasured fp32 FMA peak: %.1f GFLOPS (%s, %d thread(s), best of %d trials, median "
        "%.1f); clock not measured\n",
        peak->gflops, peak->isa, peak->threads, peak->trials, peak->median_gflops);
}

void print_json(const std::vector<DeviceReport>& devices, const FmaPeak* peak) {
  std::string s = "{\"version\":" + json_string(longattn_version()) + ",\"devices\":[";
  for (size_t i = 0; i < devices.size(); ++i) {
    const DeviceReport& d = devices[i];
    if (i) s += ",";
    s += "{\"device\":" + json_string(device_flag_name(d.info.device)) + ",\"available\":";
    if (!d.unavailable.empty()) {
      s += "false,\"reason\":" + json_string(d.unavailable) + "}";
      continue;
    }
    s += "true,\"name\":" + json_string(d.info.name) +
         ",\"cores\":" + std::to_string(d.info.cores) +
         ",\"features\":" + json_string(d.info.features) +
         ",\"memory_total\":" + std::to_string(d.info.memory_total) +
         ",\"memory_free\":" + std::to_string(d.info.memory_free) + ",\"head_dims\":{";
    for (size_t p = 0; p < d.head_dims.size(); ++p) {
      s += (p ? ",\"" : "\"") + std::string(longattn_path_name(kProbePaths[p])) + "\":{";
      for (size_t t = 0; t < d.head_dims[p].size(); ++t)
        s += (t ? ",\"" : "\"") + std::string(dtype_flag_name(kDtypes[t])) +
             "\":" + ranges_json(d.head_dims[p][t]);
      s += "}";
    }
    s += "}}";
  }
  s += "]";
  if (peak) {
    char buf[128];
    std::snprintf(buf, sizeof buf,
                  ",\"fma_peak\":{\"gflops\":%.2f,\"median_gflops\":%.2f,\"trials\":%d,"
                  "\"isa\":\"%s\",\"threads\":%d}",
                  peak->gflops, peak->median_gflops, peak->trials, peak->isa, peak->threads);
    s += buf;
  }
  std::printf("%s}\n", s.c_str());
}

}  // namespace

int run_info(int argc, char** argv) {
  bool json = false, measure_peak = false;
  int threads = 0;
  FlagSet flags(
      "info",
      "Prints the version, the devices (CPU always; CUDA: available or why not), and the\n"
      "head dims each path supports, as the router answers for each d in 1..512.");
  flags.add("--json", "", "one JSON object", [&](const std::string&) { json = true; });
  flags.add("--peak", "", "also measure the CPU's fp32 FMA peak (under a second)",
            [&](const std::string&) { measure_peak = true; });
  flags.add("--threads", "N", "threads for --peak (0: all cores, the default)",
            [&](const std::string& v) { threads = int(parse_int("--threads", v, 0, 4096)); });
  if (!flags.parse(argc, argv, 2)) return kExitOk;

  std::vector<DeviceReport> devices = {query_device(LONGATTN_DEVICE_CPU),
                                       query_device(LONGATTN_DEVICE_CUDA)};
  FmaPeak peak;
  if (measure_peak) {
    if (threads == 0) threads = devices[0].info.cores;
    peak = measure_fma_peak(threads, cpu_kernels_isa());
  }
  if (json)
    print_json(devices, measure_peak ? &peak : nullptr);
  else
    print_text(devices, measure_peak ? &peak : nullptr);
  return kExitOk;
}

}  // namespace longattn::cli
