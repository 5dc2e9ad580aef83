// The accuracy grid (accuracy_grid.hpp, the CPU suite's cases) on the GPU: every CUDA path
// (unfused, fused, split_kv, AUTO) through the public API against the same float64 reference and
// criteria, with guard bytes around every output and untouched inputs; then the GPU's own tests
// (paging, alignment, plans, memory, graphs, prepared plans, errors). Skipped (not failed) on
// machines without a CUDA device.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "accuracy_grid.hpp"
#include "cuda/fused_cuda.hpp"
#include "gpu/cuda_test_util.hpp"
#include "longattn/attention.hpp"

namespace longattn_test {
namespace {

constexpr int32_t F32 = LONGATTN_FLOAT32, F16 = LONGATTN_FLOAT16, BF16 = LONGATTN_BFLOAT16;
constexpr int32_t kBool = LONGATTN_MASK_BOOLEAN;
using L = Layout;

#define ASSERT_CUDA(call) ASSERT_EQ((call), cudaSuccess) << #call

// Bytes [ptr - guard, ptr + extent + guard) of a strided host tensor.
int64_t extent_bytes(const longattn_strides& s, int64_t b, int64_t h, int64_t l, int64_t d,
                     int64_t es) {
  return ((b - 1) * s.batch + (h - 1) * s.head + (l - 1) * s.token + d) * es;
}

// Device copies of one buffer with its guards: `dev` points where the host pointer pointed.
struct DeviceBuffer {
  char* base = nullptr;
  char* dev = nullptr;
  int64_t bytes = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const void* host, int64_t body_bytes, int64_t guard) {
    bytes = body_bytes + 2 * guard;
    if (cudaMalloc(reinterpret_cast<void**>(&base), size_t(bytes)) != cudaSuccess) return;
    cudaMemcpy(base, static_cast<const char*>(host) - guard, size_t(bytes), cudaMemcpyHostToDevice);
    dev = base + guard;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(base); }
  std::vector<uint8_t> download() const {
    std::vector<uint8_t> out(static_cast<size_t>(bytes));
    cudaMemcpy(out.data(), base, size_t(bytes), cudaMemcpyDeviceToHost);
    return out;
  }
};

// A fixture's inputs on the device, and runs of the library on them.
class DeviceProblem {
 public:
  explicit DeviceProblem(const Fixture& fx) : fx_(fx) {
    const longattn_args& a = fx.args();
    const Case& c = fx.kase();
    const int64_t es = dtype_size(c.dtype), kv_es = c.kv_dtype ? 1 : es;
    q_ = std::make_unique<DeviceBuffer>(
        a.q, extent_bytes(a.q_strides, c.batch, c.q_heads, c.q_len, c.dqk, es), kGuardBytes);
    k_ = std::make_unique<DeviceBuffer>(
        a.k, extent_bytes(a.k_strides, c.batch, c.kv_heads, c.kv_len, c.dqk, kv_es), kGuardBytes);
    if (!c.k_eq_v)
      v_ = std::make_unique<DeviceBuffer>(
          a.v, extent_bytes(a.v_strides, c.batch, c.kv_heads, c.kv_len, c.dv, kv_es), kGuardBytes);
    if (a.sinks) sinks_ = std::make_unique<DeviceBuffer>(a.sinks, c.q_heads * 4, 0);
    const int64_t scales = a.kv_scale_per_head ? c.kv_heads : 1;
    if (a.k_scale) k_scale_ = std::make_unique<DeviceBuffer>(a.k_scale, scales * 4, 0);
    if (a.v_scale) v_scale_ = std::make_unique<DeviceBuffer>(a.v_scale, scales * 4, 0);
    if (a.mask.kind != LONGATTN_MASK_NONE) {
      int64_t last = 0;
      for (int d = 0; d < 4; ++d)
        if (a.mask.dims[d] != 1) last += (a.mask.dims[d] - 1) * a.mask.strides[d];
      mask_ = std::make_unique<DeviceBuffer>(a.mask.data,
                                             (last + 1) * (a.mask.kind == kBool ? 1 : 4), 0);
    }
    args_ = a;
    args_.device = LONGATTN_DEVICE_CUDA;
    args_.q = q_->dev;
    args_.k = k_->dev;
    args_.v = c.k_eq_v ? k_->dev : v_->dev;
    args_.sinks = sinks_ ? reinterpret_cast<const float*>(sinks_->dev) : nullptr;
    args_.k_scale = k_scale_ ? reinterpret_cast<const float*>(k_scale_->dev) : nullptr;
    args_.v_scale = v_scale_ ? reinterpret_cast<const float*>(v_scale_->dev) : nullptr;
    if (mask_) args_.mask.data = mask_->dev;
  }

  const longattn_args& args() const { return args_; }

  // Runs `path` on fresh sentinel-filled device outputs and brings them back.
  // With `prepared`, through longattn_run_prepared (options then give only stream and workspace).
  RunOutput run(int32_t path, longattn_options options, const longattn_args* inputs = nullptr,
                longattn_prepared* prepared = nullptr) const {
    const Case& c = fx_.kase();
    RunOutput out;
    out.o = fx_.new_output();
    out.lse = fx_.new_lse();
    const int64_t es = dtype_size(c.dtype);
    const longattn_strides os = make_strides(c.out_layout, c.q_heads, c.q_len, c.dv);
    DeviceBuffer o(out.o.data(), extent_bytes(os, c.batch, c.q_heads, c.q_len, c.dv, es),
                   kGuardBytes);
    DeviceBuffer lse(out.lse.data(), c.batch * c.q_heads * c.q_len * 4, kGuardBytes);
    longattn_args args = inputs ? *inputs : args_;
    args.o = o.dev;
    args.lse = c.lse ? reinterpret_cast<float*>(lse.dev) : nullptr;
    options.path = path;
    out.status = prepared ? longattn_run_prepared(prepared, &args, &options, &out.plan)
                          : longattn_attention(&args, &options, &out.plan);
    out.message = longattn_last_error();
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
      out.status = LONGATTN_DEVICE_ERROR;
      out.message = std::string("after the run: ") + cudaGetErrorString(e);
    }
    download(o, lse, &out);
    return out;
  }

  // Captures one run of `path` on `inputs` into a CUDA graph (global mode, as torch.cuda.graph
  // captures) and replays it once per entry of `tables`, each first copied to `table_dev` (the
  // block table the inputs point at): the outputs of each replay, on sentinel-filled buffers.
  std::vector<RunOutput> replay(int32_t path, longattn_options options, const longattn_args& inputs,
                                void* table_dev,
                                const std::vector<std::vector<int32_t>>& tables) const {
    const Case& c = fx_.kase();
    RunOutput blank;
    blank.o = fx_.new_output();
    blank.lse = fx_.new_lse();
    const longattn_strides os = make_strides(c.out_layout, c.q_heads, c.q_len, c.dv);
    DeviceBuffer o(blank.o.data(),
                   extent_bytes(os, c.batch, c.q_heads, c.q_len, c.dv, dtype_size(c.dtype)),
                   kGuardBytes);
    DeviceBuffer lse(blank.lse.data(), c.batch * c.q_heads * c.q_len * 4, kGuardBytes);
    longattn_args args = inputs;
    args.o = o.dev;
    args.lse = c.lse ? reinterpret_cast<float*>(lse.dev) : nullptr;
    options.path = path;
    std::vector<RunOutput> outs;
    int64_t bytes = 0;
    void* ws = nullptr;
    if (longattn_transient_bytes(&args, path, &options, &bytes) != LONGATTN_OK ||
        (bytes > 0 && cudaMalloc(&ws, size_t(bytes)) != cudaSuccess))
      return outs;
    options.workspace = ws, options.workspace_bytes = bytes;
    cudaStream_t st = nullptr;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    options.stream = st;
    cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal);
    longattn_plan plan{};
    const longattn_status status = longattn_attention(&args, &options, &plan);
    const std::string message = longattn_last_error();
    const bool captured = cudaStreamEndCapture(st, &graph) == cudaSuccess &&
                          cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
    for (const std::vector<int32_t>& table : tables) {
      RunOutput out;
      out.status = status, out.message = message, out.plan = plan;
      out.o = fx_.new_output();
      out.lse = fx_.new_lse();
      cudaMemcpy(o.base, static_cast<const char*>(out.o.data()) - kGuardBytes, size_t(o.bytes),
                 cudaMemcpyHostToDevice);
      cudaMemcpy(lse.base, static_cast<const char*>(out.lse.data()) - kGuardBytes,
                 size_t(lse.bytes), cudaMemcpyHostToDevice);
      cudaMemcpy(table_dev, table.data(), table.size() * 4, cudaMemcpyHostToDevice);
      cudaError_t e = captured ? cudaGraphLaunch(exec, st) : cudaErrorStreamCaptureInvalidated;
      if (e == cudaSuccess) e = cudaStreamSynchronize(st);
      if (status == LONGATTN_OK && e != cudaSuccess) {
        out.status = LONGATTN_DEVICE_ERROR;
        out.message = std::string("graph replay: ") + cudaGetErrorString(e);
      }
      download(o, lse, &out);
      outs.push_back(std::move(out));
    }
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    cudaStreamDestroy(st);
    cudaFree(ws);
    return outs;
  }

  // Brings a run's device outputs (guards included) back into `out` and checks the guards.
  void download(const DeviceBuffer& o, const DeviceBuffer& lse, RunOutput* out_ptr) const {
    const Case& c = fx_.kase();
    RunOutput& out = *out_ptr;
    std::vector<uint8_t> ob = o.download(), lb = lse.download();
    std::memcpy(static_cast<uint8_t*>(out.o.data()) - kGuardBytes, ob.data(), ob.size());
    std::memcpy(static_cast<uint8_t*>(out.lse.data()) - kGuardBytes, lb.data(), lb.size());
    out.guard_problem = out.o.untouched_outside(kOutputSentinel);
    if (out.guard_problem.empty()) out.guard_problem = out.lse.untouched_outside(kOutputSentinel);
    if (!c.lse && out.guard_problem.empty())
      for (uint8_t byte : out.lse.bytes())
        if (byte != kOutputSentinel) out.guard_problem = "LSE written although args.lse was NULL";
    out.o_dense = out.o.dense();
    out.lse_dense = out.lse.dense();
  }

  // "" when the device inputs (guards included) still hold what was uploaded.
  std::string inputs_changed() const {
    const longattn_args& h = fx_.args();
    const struct {
      const char* name;
      const DeviceBuffer* d;
      const void* host;
      int64_t guard;
    } bufs[] = {{"q", q_.get(), h.q, kGuardBytes},        {"k", k_.get(), h.k, kGuardBytes},
                {"v", v_.get(), h.v, kGuardBytes},        {"sinks", sinks_.get(), h.sinks, 0},
                {"mask", mask_.get(), h.mask.data, 0},    {"k_scale", k_scale_.get(), h.k_scale, 0},
                {"v_scale", v_scale_.get(), h.v_scale, 0}};
    for (const auto& b : bufs) {
      if (!b.d) continue;
      std::vector<uint8_t> now = b.d->download();
      if (std::memcmp(now.data(), static_cast<const char*>(b.host) - b.guard, now.size()) != 0)
        return std::string("device input ") + b.name + " was modified";
    }
    return "";
  }

 private:
  const Fixture& fx_;
  std::unique_ptr<DeviceBuffer> q_, k_, v_, sinks_, mask_, k_scale_, v_scale_;
  longattn_args args_{};
};

// The portable fused kernel runs every head dim pair up to 512/512 (padded to a compiled pair)
// in any layout whose elements are aligned; its FP8-cache instantiations have fewer pairs.
bool fused_compiled_dims(const Case& c) {
  const int64_t dims[][2] = {{32, 32},   {64, 64},   {80, 80},   {96, 96},   {128, 128},
                             {192, 128}, {192, 192}, {256, 256}, {512, 512}, {576, 512}};
  const int64_t fp8_dims[][2] = {{64, 64}, {128, 128}, {256, 256}, {512, 512}, {576, 512}};
  if (c.kv_dtype) {  // the FP8-cache kernels: fewer pairs
    for (const auto& d : fp8_dims)
      if (c.dqk == d[0] && c.dv == d[1]) return true;
    return false;
  }
  for (const auto& d : dims)
    if (c.dqk == d[0] && c.dv == d[1]) return true;
  return false;
}

class AccuracyCuda : public ::testing::TestWithParam<Case> {};

TEST_P(AccuracyCuda, EveryPathMatchesFloat64Reference) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Fixture fx(GetParam());
  const Case& c = fx.kase();
  const Problem& p = fx.problem();
  SCOPED_TRACE(c.describe());
  const DeviceProblem dev(fx);
  const int32_t paths[] = {LONGATTN_PATH_UNFUSED, LONGATTN_PATH_FUSED, LONGATTN_PATH_SPLIT_KV,
                           LONGATTN_PATH_AUTO};
  const RefResult ref = reference_attention<double>(p);
  // The fused CUDA kernels multiply float32 inputs as bf16: their yardstick rounds Q, K, V to it.
  const Errors lowp = low_precision_errors(p, ref, c.dtype == F32 ? BF16 : c.dtype);
  for (int32_t path : paths) {
    SCOPED_TRACE(std::string("path ") + path_label(path));
    const RunOutput out = dev.run(path, case_options(c, path));
    // An FP8 cache: the fused kernels only, on Hopper (elsewhere every path refuses it).
    if (c.kv_dtype && (path == LONGATTN_PATH_UNFUSED || !hopper())) {
      EXPECT_EQ(out.status, LONGATTN_UNSUPPORTED);
      EXPECT_NE(out.message.find("kv_dtype"), std::string::npos) << out.message;
      EXPECT_EQ(out.guard_problem, "");
      continue;
    }
    // A head dim without a compiled kernel runs on the next compiled pair, and the plan says so.
    const bool fused_family = path == LONGATTN_PATH_FUSED || path == LONGATTN_PATH_SPLIT_KV;
    if (fused_family && !fused_compiled_dims(c)) {
      EXPECT_NE(std::string(out.plan.reason).find("padded to"), std::string::npos)
          << out.plan.reason;
    }
    EXPECT_EQ(out.plan.device, LONGATTN_DEVICE_CUDA);
    // cuBLAS float32 GEMMs and a float32 softmax: float32 accuracy.
    const bool exact = c.dtype == F32 && out.plan.path == LONGATTN_PATH_UNFUSED;
    expect_accurate(c, p, ref, out, path, exact, lowp);
    if (fused_family) {
      EXPECT_GT(out.plan.block_k, 0);
    }
  }
  EXPECT_EQ(dev.inputs_changed(), "");
}

INSTANTIATE_TEST_SUITE_P(Grid, AccuracyCuda, ::testing::ValuesIn(accuracy_grid()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

// Same inputs, same bits: every CUDA path is deterministic.
TEST(DeterminismCuda, SameBitsTwice) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Fixture fx(
      Case("det").shape(1, 8, 2, 300, 2000).dims(128).type(BF16).is_causal().sinks(1.f));
  const DeviceProblem dev(fx);
  for (int32_t path : {LONGATTN_PATH_UNFUSED, LONGATTN_PATH_FUSED, LONGATTN_PATH_SPLIT_KV}) {
    const RunOutput a = dev.run(path, default_options()), b = dev.run(path, default_options());
    ASSERT_EQ(a.status, LONGATTN_OK) << a.message;
    EXPECT_TRUE(a.o.bytes() == b.o.bytes()) << path_label(path);
    EXPECT_TRUE(a.lse.bytes() == b.lse.bytes()) << path_label(path);
  }
}

// Two runs of the same problem: bit for bit where the same kernel ran both, else within rounding
// (a layout or page size one kernel cannot take runs on another).
void expect_same_result(const RunOutput& got, const RunOutput& want) {
  if (std::string(got.plan.kernel) == want.plan.kernel) {
    EXPECT_TRUE(got.o.bytes() == want.o.bytes()) << got.plan.kernel;
    EXPECT_TRUE(got.lse.bytes() == want.lse.bytes()) << got.plan.kernel;
    return;
  }
  float peak = 0.f, diff = 0.f, lse_diff = 0.f;
  for (size_t i = 0; i < got.o_dense.size(); ++i) {
    peak = std::max(peak, std::fabs(want.o_dense[i]));
    diff = std::max(diff, std::fabs(got.o_dense[i] - want.o_dense[i]));
  }
  for (size_t i = 0; i < got.lse_dense.size(); ++i)
    lse_diff = std::max(lse_diff, std::fabs(got.lse_dense[i] - want.lse_dense[i]));
  EXPECT_LE(diff, 2e-2f * peak) << got.plan.kernel << " vs " << want.plan.kernel;
  EXPECT_LE(lse_diff, 1e-3f) << got.plan.kernel << " vs " << want.plan.kernel;
}

// The strided and FP8 portable kernels read V from K's tile when k == v without checking that
// their compiled dims are equal (fused_kernel_sm80.cuh): equal real dims must pad to an equal pair
// in their lists. (The row-lookup kernels check, and pad 257-512 to 576/512.) No GPU needed.
TEST(FusedDispatch, EqualHeadDimsPadToEqualPairs) {
  using longattn::cuda::KvRead;
  for (KvRead kv : {KvRead::kTiles, KvRead::kFp8, KvRead::kPagedRows})
    for (int64_t d = 1; d <= 512; ++d) {
      int qk = 0, v = 0;
      ASSERT_TRUE(longattn::cuda::fused_padded_head_dims(d, d, &qk, &v, kv)) << "head dim " << d;
      if (kv != KvRead::kPagedRows) EXPECT_EQ(qk, v) << "head dim " << d;
    }
}

// Paged K/V read through a device block table gives the contiguous result bit for bit when the
// same kernel runs both, else agrees to rounding. Every page size runs: on Hopper the sm90a kernel
// (token-level tables, pages that split its key tile: boxes of gcd(page, tile) rows), elsewhere
// the portable kernel, whose rows are looked up one by one where pages split its key tile. A
// block id outside the pool is an error.
TEST(PagedCuda, MatchesContiguousBitForBit) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  // 160 work items (2 batches x 40 KV heads x 2 query tiles): more than an H100 holds at once,
  // so the sm90 kernel's persistent blocks carry the ring and the paged tail across items. Head
  // dim 72 runs padded to 128 there.
  // The decode shape (one query row per head, 8 batches) stays on the portable kernel's decode
  // tiles where they tile the pages and runs on the sm90a kernel on Hopper where they do not.
  // float32 inputs run on the portable kernel everywhere.
  // k == v at head dim 300 (rows off 16 bytes): the portable row-lookup kernels pad it to 576/512,
  // whose V is not K's tile.
  struct Shape {
    int32_t dtype;
    int64_t dim, batch, q_len;
    bool same_kv = false;
  };
  for (const Shape& sh :
       {Shape{BF16, 128, 2, 100}, Shape{F16, 128, 2, 100}, Shape{BF16, 72, 2, 100},
        Shape{BF16, 256, 2, 100}, Shape{BF16, 300, 1, 100, true}, Shape{BF16, 128, 8, 1},
        Shape{F32, 64, 2, 100}}) {
    SCOPED_TRACE("head dim " + std::to_string(sh.dim) + ", q_len " + std::to_string(sh.q_len) +
                 (sh.same_kv ? ", k == v" : ""));
    const bool decode = sh.q_len == 1;
    Case c = Case("paged")
                 .shape(sh.batch, decode ? 32 : 80, decode ? 8 : 40, sh.q_len, 700)
                 .dims(sh.dim)
                 .type(sh.dtype)
                 .is_causal();
    if (sh.same_kv) c.same_kv();
    const Fixture fx(c);
    const DeviceProblem dev(fx);
    for (int64_t page : {1, 3, 16, 48, 64, 128, 256}) {
      const PagedCopy host = make_paged(fx.args(), page, sh.same_kv, uint32_t(page));
      DeviceBuffer k(host.k_pool.data(), int64_t(host.k_pool.size()), 0);
      DeviceBuffer v(host.v_pool.data(), int64_t(host.v_pool.size()), 0);
      DeviceBuffer table(host.table.data(), int64_t(host.table.size() * 4), 0);
      longattn_args a = dev.args();
      a.k = k.dev, a.v = sh.same_kv ? k.dev : v.dev, a.k_strides = host.args.k_strides,
      a.v_strides = host.args.v_strides;
      a.block_table = reinterpret_cast<const int32_t*>(table.dev);
      a.block_table_stride = host.args.block_table_stride;
      a.page_size = page, a.num_blocks = host.args.num_blocks;
      for (int32_t path : {LONGATTN_PATH_FUSED, LONGATTN_PATH_SPLIT_KV}) {
        SCOPED_TRACE(std::string(path_label(path)) + " page " + std::to_string(page));
        const RunOutput contiguous = dev.run(path, default_options());
        const RunOutput paged = dev.run(path, default_options(), &a);
        // (16-bit rows of 300 elements are off 16 bytes: the portable kernel.)
        const bool sm90a = sm90a_expected() && sh.dtype != F32 && sh.dim % 8 == 0;
        ASSERT_EQ(paged.status, LONGATTN_OK) << paged.message;
        const std::string kernel = paged.plan.kernel;
        if (sm90a && (!decode || page % 64 != 0)) {
          EXPECT_NE(kernel.find("sm90a"), std::string::npos) << kernel;
        } else if (page % 32 != 0) {  // the portable kernel's key tiles are 32, 64 or 128
          EXPECT_NE(kernel.find("paged rows"), std::string::npos) << kernel;
        }
        EXPECT_EQ(paged.guard_problem, "");
        expect_same_result(paged, contiguous);
      }
      if (page == 64) {
        std::vector<int32_t> bad = host.table;
        bad.back() = int32_t(host.args.num_blocks);
        DeviceBuffer bad_table(bad.data(), int64_t(bad.size() * 4), 0);
        longattn_args wrong = a;
        wrong.block_table = reinterpret_cast<const int32_t*>(bad_table.dev);
        const RunOutput out = dev.run(LONGATTN_PATH_FUSED, default_options(), &wrong);
        EXPECT_EQ(out.status, LONGATTN_INVALID_ARGUMENT);
        EXPECT_NE(out.message.find("block_table"), std::string::npos) << out.message;
      }
    }
  }
}

// Q, K and V bases one element (2 bytes; float32 4) past 16-byte alignment: fused and split_kv
// run them through the portable kernel's narrow loads and give the bits of the aligned bases where
// the aligned run took the same kernel (the same values reach shared memory), else agree to
// rounding (on Hopper the aligned 16-bit ones run on the sm90a kernel). Head dims 72 and 40 pad
// to 80 and 64, 120 to 128.
TEST(UnalignedCuda, OffsetBasesMatchAlignedBitForBit) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  struct Shifted {  // a device copy of `bytes` from src at `shift` bytes past cudaMalloc's 256
    char* alloc = nullptr;
    char* base = nullptr;
    Shifted(const void* src, int64_t bytes, int64_t shift) {
      if (cudaMalloc(reinterpret_cast<void**>(&alloc), size_t(bytes + shift)) != cudaSuccess)
        return;
      base = alloc + shift;
      cudaMemcpy(base, src, size_t(bytes), cudaMemcpyDeviceToDevice);
    }
    Shifted(const Shifted&) = delete;
    Shifted& operator=(const Shifted&) = delete;
    ~Shifted() { cudaFree(alloc); }
  };
  const Case cases[] = {
      Case("off_d72_bf16_causal").shape(1, 4, 2, 113, 300).dims(72).type(BF16).is_causal(),
      Case("off_d120_bf16").shape(2, 4, 2, 113, 300).dims(120).type(BF16),
      Case("off_d40_f16_decode").shape(1, 8, 2, 1, 2048).dims(40).type(F16),
      Case("off_d40_f32").shape(1, 2, 1, 50, 200).dims(40),
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.describe());
    const Fixture fx(c);
    const DeviceProblem dev(fx);
    const longattn_args& a = dev.args();
    const int64_t es = dtype_size(c.dtype);
    Shifted q(a.q, extent_bytes(a.q_strides, c.batch, c.q_heads, c.q_len, c.dqk, es), es);
    Shifted k(a.k, extent_bytes(a.k_strides, c.batch, c.kv_heads, c.kv_len, c.dqk, es), es);
    Shifted v(a.v, extent_bytes(a.v_strides, c.batch, c.kv_heads, c.kv_len, c.dv, es), es);
    longattn_args shifted = a;
    shifted.q = q.base, shifted.k = k.base, shifted.v = v.base;
    for (int32_t path : {LONGATTN_PATH_FUSED, LONGATTN_PATH_SPLIT_KV}) {
      SCOPED_TRACE(path_label(path));
      const RunOutput aligned = dev.run(path, default_options());
      const RunOutput off = dev.run(path, default_options(), &shifted);
      ASSERT_EQ(aligned.status, LONGATTN_OK) << aligned.message;
      ASSERT_EQ(off.status, LONGATTN_OK) << off.message;
      EXPECT_EQ(off.guard_problem, "");
      EXPECT_NE(std::string(off.plan.reason).find("padded to"), std::string::npos)
          << off.plan.reason;
      expect_same_result(off, aligned);
    }
  }
}

// bf16 CUDA args for planning only: planning reads no data, so the tensors get distinct, aligned,
// never dereferenced addresses.
longattn_args planning_args(int64_t hq, int64_t hkv, int64_t lq, int64_t lk, int64_t d) {
  longattn_args a = longattn::make_args(1, hq, hkv, lq, lk, d);
  a.device = LONGATTN_DEVICE_CUDA;
  a.dtype = BF16;
  a.q = reinterpret_cast<void*>(uintptr_t(1) << 40);
  a.k = reinterpret_cast<void*>(uintptr_t(2) << 40);
  a.v = reinterpret_cast<void*>(uintptr_t(3) << 40);
  a.o = reinterpret_cast<void*>(uintptr_t(4) << 40);
  return a;
}

// AUTO's reason says why it split or not: a long decode row splits to keep the SMs busy, a short
// one is not split, and options.num_splits overrides both.
TEST(PlanCuda, AutoSaysWhyItSplitsOrNot) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  struct Want {
    longattn_args a;
    int32_t num_splits, path;
    const char* says;
  } wants[] = {
      {planning_args(8, 1, 1, 65536, 128), 0, LONGATTN_PATH_SPLIT_KV,
       "splitting the keys keeps every SM busy"},
      {planning_args(8, 1, 1, 1000, 128), 0, LONGATTN_PATH_FUSED,
       "rows under 1024 keys are not split"},
      {planning_args(8, 1, 1, 65536, 128), 1, LONGATTN_PATH_FUSED, "options.num_splits = 1"},
      {planning_args(8, 1, 1, 1000, 128), 3, LONGATTN_PATH_SPLIT_KV, "options.num_splits = 3"}};
  for (const Want& w : wants) {
    longattn_options o = default_options();
    o.num_splits = w.num_splits;
    longattn_plan plan;
    ASSERT_EQ(longattn_plan_attention(&w.a, &o, &plan), LONGATTN_OK) << longattn_last_error();
    EXPECT_EQ(plan.path, w.path) << plan.reason;
    EXPECT_NE(std::string(plan.reason).find(w.says), std::string::npos) << plan.reason;
    if (w.num_splits > 1) {
      EXPECT_EQ(plan.splits, w.num_splits);
    }
  }
}

// Every head dim pair up to 576/512 plans fused: on Hopper on the sm90a kernel wherever rows start
// on 16 bytes and Dqk <= 512 (padded to a compiled pair past the real dims), else on the portable
// kernel (MLA's 576/512 and the pairs it covers).
TEST(PlanCuda, EveryHeadDimPlansFused) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const bool on_hopper = sm90a_expected();
  longattn_options o = default_options();
  o.path = LONGATTN_PATH_FUSED;
  for (int64_t dqk = 1; dqk <= 576; ++dqk)
    for (int64_t dv : {dqk > 512 ? 512 : dqk, 1 + (dqk * 7) % 512}) {
      longattn_args a = planning_args(16, 8, 512, 4096, dqk);
      a.head_dim_v = dv;
      SCOPED_TRACE(std::to_string(dqk) + "/" + std::to_string(dv));
      for (const Layout layout : {Layout::kRows16, Layout::kContiguous}) {
        a.q_strides = make_strides(layout, a.q_heads, a.q_len, dqk);
        a.k_strides = make_strides(layout, a.kv_heads, a.kv_len, dqk);
        a.v_strides = make_strides(layout, a.kv_heads, a.kv_len, dv);
        a.o_strides = make_strides(layout, a.q_heads, a.q_len, dv);
        longattn_plan plan;
        ASSERT_EQ(longattn_plan_attention(&a, &o, &plan), LONGATTN_OK) << longattn_last_error();
        ASSERT_TRUE(plan.ok) << plan.reason;
        const std::string kernel = plan.kernel;
        const bool rows16 = layout == Layout::kRows16 || (dqk % 8 == 0 && dv % 8 == 0);
        const char* want = on_hopper && rows16 && dqk <= 512 ? "sm90a" : "sm80";
        EXPECT_EQ(kernel.rfind(want, 0), 0u) << layout_label(layout) << ": " << plan.reason;
      }
    }
}

// The memory model on the GPU: fused needs nothing, independent of kv_len; split_kv needs its
// partials (splits x Hq x Lq x (Dv + 1) floats); the budget is honoured.
TEST(MemoryCuda, FusedIsIndependentOfKvLenAndBudgetHolds) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  longattn_args a = planning_args(16, 8, 512, 4096, 256);
  a.causal = 1;
  longattn_options o = default_options();
  int64_t fused_small = -1, fused_large = -1;
  ASSERT_EQ(longattn_transient_bytes(&a, LONGATTN_PATH_FUSED, &o, &fused_small), LONGATTN_OK)
      << longattn_last_error();
  a.kv_len = 131072;
  ASSERT_EQ(longattn_transient_bytes(&a, LONGATTN_PATH_FUSED, &o, &fused_large), LONGATTN_OK);
  EXPECT_EQ(fused_small, 0);
  EXPECT_EQ(fused_large, 0);
  longattn_plan plan;
  o.path = LONGATTN_PATH_SPLIT_KV;
  ASSERT_EQ(longattn_plan_attention(&a, &o, &plan), LONGATTN_OK) << longattn_last_error();
  if (plan.splits > 1) {
    const int64_t floats = plan.splits * a.q_heads * a.q_len * a.head_dim_v;
    const int64_t lse = plan.splits * a.q_heads * a.q_len;
    EXPECT_EQ(plan.transient_bytes, (floats * 4 + 63) / 64 * 64 + (lse * 4 + 63) / 64 * 64);
  }
  // The unfused path needs Hq x Lq x Lk x (4 + 2) bytes; with a small budget AUTO must not take it.
  o.path = LONGATTN_PATH_AUTO;
  o.memory_budget = 1 << 20;
  ASSERT_EQ(longattn_plan_attention(&a, &o, &plan), LONGATTN_OK) << longattn_last_error();
  EXPECT_TRUE(plan.ok) << plan.reason;
  EXPECT_LE(plan.transient_bytes, o.memory_budget);
  EXPECT_NE(plan.path, LONGATTN_PATH_UNFUSED);
  o.path = LONGATTN_PATH_UNFUSED;
  EXPECT_EQ(longattn_plan_attention(&a, &o, &plan), LONGATTN_OVER_BUDGET);
  EXPECT_FALSE(plan.ok);
  EXPECT_EQ(plan.status, LONGATTN_OVER_BUDGET) << plan.reason;
}

// A decode run captured into a CUDA graph (global capture mode, as torch.cuda.graph uses) replays
// to the eager run's bits; without a workspace the capture is refused with a reason, and the
// capture itself stays valid.
TEST(GraphCuda, CapturedDecodeMatchesEagerBitForBit) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Fixture fx(Case("graph").shape(1, 16, 2, 1, 8192).dims(128).type(BF16).is_causal());
  const DeviceProblem dev(fx);
  longattn_args a = dev.args();
  const int64_t o_bytes = a.q_heads * a.head_dim_v * 2;
  void *o = nullptr, *lse = nullptr, *ws = nullptr;
  ASSERT_CUDA(cudaMalloc(&o, size_t(o_bytes)));
  ASSERT_CUDA(cudaMalloc(&lse, size_t(a.q_heads * 4)));
  a.o = o, a.lse = static_cast<float*>(lse),
  a.o_strides = {o_bytes / 2, a.head_dim_v, a.head_dim_v};
  cudaStream_t st;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  longattn_options opt = default_options();
  opt.path = LONGATTN_PATH_SPLIT_KV;
  opt.stream = st;
  int64_t bytes = 0;
  ASSERT_EQ(longattn_transient_bytes(&a, opt.path, &opt, &bytes), LONGATTN_OK)
      << longattn_last_error();
  ASSERT_GT(bytes, 0);
  ASSERT_CUDA(cudaMalloc(&ws, size_t(bytes)));
  opt.workspace = ws, opt.workspace_bytes = bytes;
  longattn_plan plan;
  ASSERT_EQ(longattn_attention(&a, &opt, &plan), LONGATTN_OK) << longattn_last_error();
  EXPECT_GT(plan.splits, 1) << plan.reason;
  ASSERT_CUDA(cudaStreamSynchronize(st));
  std::vector<uint8_t> eager_o(static_cast<size_t>(o_bytes)),
      eager_lse(static_cast<size_t>(a.q_heads * 4));
  ASSERT_CUDA(cudaMemcpy(eager_o.data(), o, eager_o.size(), cudaMemcpyDeviceToHost));
  ASSERT_CUDA(cudaMemcpy(eager_lse.data(), lse, eager_lse.size(), cudaMemcpyDeviceToHost));
  ASSERT_CUDA(cudaMemset(o, 0xff, size_t(o_bytes)));
  ASSERT_CUDA(cudaMemset(lse, 0xff, size_t(a.q_heads * 4)));

  cudaGraph_t graph;
  ASSERT_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  const longattn_status status = longattn_attention(&a, &opt, nullptr);
  const std::string message = longattn_last_error();
  ASSERT_CUDA(cudaStreamEndCapture(st, &graph));
  ASSERT_EQ(status, LONGATTN_OK) << message;
  cudaGraphExec_t exec;
  ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 2; ++i) ASSERT_CUDA(cudaGraphLaunch(exec, st));
  ASSERT_CUDA(cudaStreamSynchronize(st));
  std::vector<uint8_t> graph_o(eager_o.size()), graph_lse(eager_lse.size());
  ASSERT_CUDA(cudaMemcpy(graph_o.data(), o, graph_o.size(), cudaMemcpyDeviceToHost));
  ASSERT_CUDA(cudaMemcpy(graph_lse.data(), lse, graph_lse.size(), cudaMemcpyDeviceToHost));
  EXPECT_TRUE(graph_o == eager_o);
  EXPECT_TRUE(graph_lse == eager_lse);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);

  // No workspace: the run would have to allocate, which capture forbids; refused, capture intact.
  opt.workspace = nullptr, opt.workspace_bytes = 0;
  ASSERT_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  const longattn_status refused = longattn_attention(&a, &opt, nullptr);
  const std::string why = longattn_last_error();
  ASSERT_CUDA(cudaStreamEndCapture(st, &graph));
  EXPECT_EQ(refused, LONGATTN_INVALID_ARGUMENT);
  EXPECT_NE(why.find("options.workspace"), std::string::npos) << why;
  cudaGraphDestroy(graph);
  cudaStreamDestroy(st);
  cudaFree(o), cudaFree(lse), cudaFree(ws);
}

// A paged run captured into a CUDA graph reads the block table when the graph runs: a replay after
// the table changed gives the eager result of the new table. An id outside the pool there (the
// host cannot check it) reads nothing outside the pool and turns all of its batch entry's O and
// LSE into NaN; the other entries keep their results and nothing outside the outputs is written.
// (Outside a capture such an id is refused: PagedCuda.) Pages of 64 run on the portable kernel
// (decode tiles included), pages of 16 on the sm90a kernel's boxes on Hopper (elsewhere on the
// portable kernel's row lookups), and every page size on the unfused path's gather.
TEST(GraphCuda, CapturedPagedRunReadsTheTableWhenReplayed) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  struct Shape {
    int64_t q_len, page;
  };
  for (const Shape& sh : {Shape{1, 64}, Shape{1, 16}, Shape{37, 64}, Shape{37, 16}}) {
    SCOPED_TRACE("q_len " + std::to_string(sh.q_len) + ", page " + std::to_string(sh.page));
    const int64_t batch = 3, kv_len = 700, pages = (kv_len + sh.page - 1) / sh.page;
    const Fixture fx(
        Case("graph_paged").shape(batch, 16, 2, sh.q_len, kv_len).dims(128).type(BF16).is_causal());
    const DeviceProblem dev(fx);
    const PagedCopy host = make_paged(fx.args(), sh.page, false, uint32_t(sh.page));
    // A second valid table (the entries' rows rotated), then two with one id out of the pool.
    std::vector<int32_t> rotated(host.table.size());
    for (int64_t b = 0; b < batch; ++b)
      std::copy_n(host.table.begin() + ((b + 1) % batch) * pages, pages,
                  rotated.begin() + b * pages);
    std::vector<int32_t> past_end = rotated, negative = rotated;
    past_end[size_t(2 * pages - 1)] = int32_t(host.args.num_blocks);  // entry 1, its last page
    negative[size_t(2 * pages)] = -1;                                 // entry 2, its first page
    DeviceBuffer k(host.k_pool.data(), int64_t(host.k_pool.size()), 0);
    DeviceBuffer v(host.v_pool.data(), int64_t(host.v_pool.size()), 0);
    DeviceBuffer table(host.table.data(), int64_t(host.table.size() * 4), 0);
    DeviceBuffer rotated_table(rotated.data(), int64_t(rotated.size() * 4), 0);
    longattn_args a = dev.args();
    a.k = k.dev, a.v = v.dev, a.k_strides = host.args.k_strides, a.v_strides = host.args.v_strides;
    a.block_table = reinterpret_cast<const int32_t*>(table.dev);
    a.block_table_stride = host.args.block_table_stride;
    a.page_size = sh.page, a.num_blocks = host.args.num_blocks;
    longattn_args a_rotated = a;
    a_rotated.block_table = reinterpret_cast<const int32_t*>(rotated_table.dev);
    const int64_t entry_o = 16 * sh.q_len * 128, entry_lse = 16 * sh.q_len;
    for (int32_t path : {LONGATTN_PATH_FUSED, LONGATTN_PATH_SPLIT_KV, LONGATTN_PATH_UNFUSED}) {
      SCOPED_TRACE(path_label(path));
      // The last path's replays left an invalid table in `table`, which an eager run refuses.
      ASSERT_CUDA(
          cudaMemcpy(table.dev, host.table.data(), host.table.size() * 4, cudaMemcpyHostToDevice));
      const RunOutput first = dev.run(path, default_options(), &a);
      const RunOutput second = dev.run(path, default_options(), &a_rotated);
      const std::vector<RunOutput> replays = dev.replay(path, default_options(), a, table.dev,
                                                        {host.table, rotated, past_end, negative});
      ASSERT_EQ(replays.size(), 4u);
      ASSERT_EQ(first.status, LONGATTN_OK) << first.message;
      for (const RunOutput& r : replays) {
        ASSERT_EQ(r.status, LONGATTN_OK) << r.message;
        EXPECT_EQ(r.guard_problem, "");
      }
      expect_same_result(replays[0], first);
      expect_same_result(replays[1], second);
      const struct {
        const RunOutput& out;
        int64_t bad_entry;
      } poisoned[] = {{replays[2], 1}, {replays[3], 2}};
      for (const auto& x : poisoned) {
        for (int64_t b = 0; b < batch; ++b) {
          SCOPED_TRACE("batch entry " + std::to_string(b));
          int64_t nan_o = 0, nan_lse = 0, same_o = 0, same_lse = 0;
          for (int64_t i = b * entry_o; i < (b + 1) * entry_o; ++i) {
            nan_o += std::isnan(x.out.o_dense[size_t(i)]);
            same_o += x.out.o_dense[size_t(i)] == second.o_dense[size_t(i)];
          }
          for (int64_t i = b * entry_lse; i < (b + 1) * entry_lse; ++i) {
            nan_lse += std::isnan(x.out.lse_dense[size_t(i)]);
            same_lse += x.out.lse_dense[size_t(i)] == second.lse_dense[size_t(i)];
          }
          if (b == x.bad_entry) {
            EXPECT_EQ(nan_o, entry_o);
            EXPECT_EQ(nan_lse, entry_lse);
          } else {  // the same kernel on the same keys: the same bits
            EXPECT_EQ(same_o, entry_o);
            EXPECT_EQ(same_lse, entry_lse);
          }
        }
      }
    }
  }
}

// A prepared plan gives longattn_attention's bits on the GPU too: reused for other buffers of the
// same shape, planned again for another kv_len (and back), on every path and on both kernels; its
// runs check their pointers like any call (host memory is refused, not read).
TEST(PreparedCuda, SameBitsAsAttentionReusedOrPlannedAgain) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Case cases[] = {
      Case("prep_decode").shape(2, 8, 2, 1, 700).dims(128).type(BF16).is_causal(),
      Case("prep_prefill").shape(1, 4, 2, 200, 900).dims(256).type(F16).is_causal().sinks(1.f),
      Case("prep_mla").shape(1, 16, 1, 2, 600).dims(576, 512).type(BF16).same_kv(),
  };
  for (const Case& base : cases) {
    Case other = base, longer = base;
    other.name += "_other";
    longer.name += "_longer";
    longer.kv_len += 333;
    const Fixture fa(base), fb(other), fc(longer);
    const DeviceProblem a(fa), b(fb), c(fc);
    for (int32_t path :
         {LONGATTN_PATH_AUTO, LONGATTN_PATH_FUSED, LONGATTN_PATH_SPLIT_KV, LONGATTN_PATH_UNFUSED}) {
      SCOPED_TRACE(base.describe() + " " + path_label(path));
      longattn_options options = default_options();
      options.path = path;
      longattn_prepared* prepared = nullptr;
      ASSERT_EQ(longattn_prepare(&a.args(), &options, &prepared, nullptr), LONGATTN_OK)
          << longattn_last_error();
      for (const DeviceProblem* dev : {&a, &b, &c, &a, &c}) {
        const RunOutput got = dev->run(path, default_options(), nullptr, prepared);
        const RunOutput want = dev->run(path, options);
        ASSERT_EQ(got.status, LONGATTN_OK) << got.message;
        EXPECT_EQ(got.guard_problem, "");
        EXPECT_EQ(got.plan.path, want.plan.path);
        EXPECT_STREQ(got.plan.kernel, want.plan.kernel);
        EXPECT_TRUE(got.o.bytes() == want.o.bytes());
        EXPECT_TRUE(got.lse.bytes() == want.lse.bytes());
      }
      longattn_args host = a.args();
      std::vector<uint8_t> host_q(size_t(base.q_heads * base.q_len * base.dqk * 2 * 2 + 64));
      host.q = host_q.data() + (reinterpret_cast<uintptr_t>(a.args().q) % 16 -
                                reinterpret_cast<uintptr_t>(host_q.data()) % 16 + 16) %
                                   16;
      EXPECT_EQ(longattn_run_prepared(prepared, &host, nullptr, nullptr),
                LONGATTN_INVALID_ARGUMENT);
      EXPECT_NE(std::string(longattn_last_error()).find("host memory"), std::string::npos)
          << longattn_last_error();
      longattn_prepared_free(prepared);
    }
  }
}

// Host memory passed as device memory is an invalid argument with a message that says so.
TEST(ErrorsCuda, HostPointerIsRejected) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  std::vector<uint16_t> host(1 << 16);
  longattn_args a = longattn::make_args(1, 2, 2, 16, 16, 64);
  a.device = LONGATTN_DEVICE_CUDA;
  a.dtype = BF16;
  a.q = a.k = a.v = host.data();
  a.o = host.data() + (1 << 15);
  longattn_options o = default_options();
  o.path = LONGATTN_PATH_FUSED;
  longattn_plan plan;
  EXPECT_EQ(longattn_attention(&a, &o, &plan), LONGATTN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(longattn_last_error()).find("host memory"), std::string::npos)
      << longattn_last_error();
}

// The kernels number a KV head's packed query rows (q_len x GQA group) in 32 bits: beyond 2^30 the
// CUDA paths refuse with a reason that names the arguments (planning only: no memory is touched).
TEST(ErrorsCuda, TooManyPackedRowsIsRefused) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  longattn_args a = planning_args(8, 1, int64_t(1) << 28, 16, 64);
  longattn_options o = default_options();
  o.path = LONGATTN_PATH_FUSED;
  longattn_plan plan;
  EXPECT_EQ(longattn_plan_attention(&a, &o, &plan), LONGATTN_UNSUPPORTED) << longattn_last_error();
  EXPECT_FALSE(plan.ok);
  EXPECT_NE(std::string(plan.reason).find("q_len * (q_heads / kv_heads) = 2147483648"),
            std::string::npos)
      << plan.reason;
  a.q_len = (int64_t(1) << 27) - 1;  // 2^30 - 8 packed rows: accepted
  EXPECT_EQ(longattn_plan_attention(&a, &o, &plan), LONGATTN_OK) << longattn_last_error();
  EXPECT_TRUE(plan.ok) << plan.reason;
}

// An FP8 cache runs on the portable fused kernel (AUTO, fused, split_kv); the unfused path
// refuses it, naming kv_dtype and the paths that take it (planning only).
TEST(PlanCuda, Fp8CacheTakesThePortableKernel) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  longattn_args a = planning_args(8, 2, 1, 4096, 128);
  a.kv_dtype = LONGATTN_FLOAT8_E4M3;
  for (int32_t path : {LONGATTN_PATH_AUTO, LONGATTN_PATH_FUSED, LONGATTN_PATH_SPLIT_KV}) {
    longattn_options o = default_options();
    o.path = path;
    longattn_plan plan;
    if (!hopper()) {  // the FP8-cache kernels are sm_90a code
      EXPECT_EQ(longattn_plan_attention(&a, &o, &plan), LONGATTN_UNSUPPORTED) << path_label(path);
      EXPECT_NE(std::string(plan.reason).find("kv_dtype"), std::string::npos) << plan.reason;
      continue;
    }
    EXPECT_EQ(longattn_plan_attention(&a, &o, &plan), LONGATTN_OK) << path_label(path);
    EXPECT_TRUE(plan.ok) << plan.reason;
    EXPECT_EQ(std::string(plan.kernel).rfind("sm80 mma.sync (decode tiles), FP8 K/V", 0), 0u)
        << plan.kernel;
  }
  longattn_options o = default_options();
  o.path = LONGATTN_PATH_UNFUSED;
  longattn_plan plan;
  EXPECT_EQ(longattn_plan_attention(&a, &o, &plan), LONGATTN_UNSUPPORTED);
  EXPECT_NE(std::string(plan.reason).find("kv_dtype = float8_e4m3"), std::string::npos)
      << plan.reason;
  EXPECT_NE(std::string(plan.reason).find("_FUSED"), std::string::npos) << plan.reason;
}

}  // namespace
}  // namespace longattn_test
