// Host cost per call of the C API on a tiny decode shape: what a runtime pays per layer per step
// before (plan) and around (attention) the kernel. Google Benchmark; one process, one device.
//
//   longattn_host_cost [--device=cpu|cuda] [benchmark flags, e.g. --benchmark_repetitions=3]
//
// plan: longattn_plan_attention alone (validation, routing, tiles, the reason string).
// attention_auto / attention_fused: a whole call (no plan asked for, so no reason is formatted);
// attention_auto_with_plan: the same with the plan handed back. attention_prepared_*: runs of a
// prepared plan (longattn_run_prepared; see attention_prepared below). On the CPU it includes the
// kernel (a decode tile of 256 keys, one thread); on CUDA the launch is asynchronous, so the time
// per call is host work until the queue fills: the loop synchronizes every 256 calls to keep it
// short.
#include <benchmark/benchmark.h>
#include <longattn/longattn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if LONGATTN_HOST_COST_CUDA
#include <cuda_runtime.h>
#endif

namespace {

int32_t g_device = LONGATTN_DEVICE_CPU;

// A decode step of a small GQA layer (q 1x8x1x128, k/v 1x2x256x128, bf16): the kernel is short.
struct Problem {
  longattn_args args;
  std::vector<void*> owned;
  Problem() {
    longattn_args_init(&args);
    args.dtype = LONGATTN_BFLOAT16;
    args.device = g_device;
    args.batch = 1, args.q_heads = 8, args.kv_heads = 2, args.q_len = 1, args.kv_len = 256;
    args.head_dim_qk = args.head_dim_v = 128;
    args.causal = 1;
    longattn_set_contiguous_strides(&args);
    const size_t q = 8 * 128 * 2, kv = 2 * 256 * 128 * 2;
    args.q = alloc(q), args.k = alloc(kv), args.v = alloc(kv), args.o = alloc(q);
  }
  ~Problem() {
    for (void* p : owned) {
#if LONGATTN_HOST_COST_CUDA
      if (g_device == LONGATTN_DEVICE_CUDA) {
        cudaFree(p);
        continue;
      }
#endif
      std::free(p);
    }
  }
  void* alloc(size_t bytes) {
    void* p = nullptr;
#if LONGATTN_HOST_COST_CUDA
    if (g_device == LONGATTN_DEVICE_CUDA) {
      cudaMalloc(&p, bytes);
      cudaMemset(p, 0, bytes);
      owned.push_back(p);
      return p;
    }
#endif
    p = std::calloc(bytes, 1);
    owned.push_back(p);
    return p;
  }
};

longattn_options options(int32_t path) {
  longattn_options o;
  longattn_options_init(&o);
  o.path = path;
  o.num_threads = 1;
  return o;
}

void sync_device() {
#if LONGATTN_HOST_COST_CUDA
  if (g_device == LONGATTN_DEVICE_CUDA) cudaDeviceSynchronize();
#endif
}

void plan(benchmark::State& state) {
  Problem pr;
  const longattn_options o = options(LONGATTN_PATH_AUTO);
  longattn_plan p;
  for (auto _ : state) {
    if (longattn_plan_attention(&pr.args, &o, &p) != LONGATTN_OK) {
      state.SkipWithError(longattn_last_error());
      break;
    }
    benchmark::DoNotOptimize(p);
  }
}

void attention(benchmark::State& state, int32_t path, bool want_plan = false) {
  Problem pr;
  const longattn_options o = options(path);
  longattn_plan p;
  int64_t n = 0;
  for (auto _ : state) {
    if (longattn_attention(&pr.args, &o, want_plan ? &p : nullptr) != LONGATTN_OK) {
      state.SkipWithError(longattn_last_error());
      break;
    }
    if (++n % 256 == 0) sync_device();
  }
  sync_device();
}

void attention_auto(benchmark::State& state) { attention(state, LONGATTN_PATH_AUTO); }
void attention_fused(benchmark::State& state) { attention(state, LONGATTN_PATH_FUSED); }
// The plan (with its reason) handed back too: what a caller that logs every decision pays.
void attention_auto_with_plan(benchmark::State& state) {
  attention(state, LONGATTN_PATH_AUTO, true);
}

// A prepared plan run on `layers` sets of buffers in turn (one per layer of a model: the decision
// is reused), and with grow_kv_len, one more key every `layers` calls (a decode step: the first
// layer of each step plans again, the others reuse it).
void attention_prepared(benchmark::State& state, int layers, bool grow_kv_len) {
  std::vector<Problem> problems(static_cast<size_t>(layers));
  const longattn_options o = options(LONGATTN_PATH_AUTO);
  longattn_prepared* prepared = nullptr;
  if (longattn_prepare(&problems[0].args, &o, &prepared, nullptr) != LONGATTN_OK) {
    state.SkipWithError(longattn_last_error());
    return;
  }
  int64_t n = 0;
  int64_t kv_len = problems[0].args.kv_len;
  for (auto _ : state) {
    longattn_args& a = problems[size_t(n % layers)].args;
    if (grow_kv_len && n % layers == 0) kv_len = kv_len == 256 ? 128 : kv_len + 1;
    a.kv_len = kv_len;  // the buffers hold 256 keys: the strides stay those of 256
    if (longattn_run_prepared(prepared, &a, nullptr, nullptr) != LONGATTN_OK) {
      state.SkipWithError(longattn_last_error());
      break;
    }
    if (++n % 256 == 0) sync_device();
  }
  sync_device();
  longattn_prepared_free(prepared);
}

void attention_prepared_same(benchmark::State& state) { attention_prepared(state, 1, false); }
void attention_prepared_layers(benchmark::State& state) { attention_prepared(state, 32, false); }
void attention_prepared_decode(benchmark::State& state) { attention_prepared(state, 32, true); }

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--device=", 9) == 0) {
      const std::string d = argv[i] + 9;
      if (d == "cpu") {
        g_device = LONGATTN_DEVICE_CPU;
      } else if (d == "cuda") {
        g_device = LONGATTN_DEVICE_CUDA;
      } else {
        std::fprintf(stderr, "--device=%s: allowed values are cpu, cuda\n", d.c_str());
        return 2;
      }
      continue;
    }
    rest.push_back(argv[i]);
  }
#if !LONGATTN_HOST_COST_CUDA
  if (g_device == LONGATTN_DEVICE_CUDA) {
    std::fprintf(stderr, "--device=cuda: this build has no CUDA backend\n");
    return 2;
  }
#endif
  longattn_device_info info;
  if (longattn_device_query(g_device, &info) != LONGATTN_OK || !info.available) {
    std::fprintf(stderr, "device %s is not available: %s\n",
                 g_device == LONGATTN_DEVICE_CPU ? "cpu" : "cuda", longattn_last_error());
    return 2;
  }
  benchmark::AddCustomContext("longattn_device", info.name);
  benchmark::RegisterBenchmark("plan", plan);
  benchmark::RegisterBenchmark("attention_auto", attention_auto);
  benchmark::RegisterBenchmark("attention_fused", attention_fused);
  benchmark::RegisterBenchmark("attention_auto_with_plan", attention_auto_with_plan);
  benchmark::RegisterBenchmark("attention_prepared_same", attention_prepared_same);
  benchmark::RegisterBenchmark("attention_prepared_32_layers", attention_prepared_layers);
  benchmark::RegisterBenchmark("attention_prepared_32_layers_decode", attention_prepared_decode);
  int n = int(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
