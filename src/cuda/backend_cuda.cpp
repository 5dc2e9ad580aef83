// The CUDA backend as the router sees it (core/backend.hpp): device queries, transient memory,
// and the fused, split_kv and unfused paths, each answering "supported?", its tiles, its exact
// transient bytes, and run. Every CUDA error becomes a Failure with the CUDA message.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "core/backend.hpp"
#include "core/detail.hpp"
#include "cuda/block_table_cuda.hpp"
#include "cuda/launch_cuda.hpp"
#include "cuda/unfused_cuda.hpp"

namespace longattn::detail {
namespace {

constexpr int kMaxDevices = 64;

// The current device's properties and what the router reads of them (cudaGetDeviceProperties and
// formatting the name cost more than a whole plan): found once per device and kept.
struct Gpu {
  cudaDeviceProp prop{};
  longattn_device_info info{};  // memory_free and memory_total stay 0
};

// The current device's facts, or nullptr with *error set when there is no usable device.
const Gpu* current_gpu(std::string* error) {
  static std::mutex mu;
  static Gpu gpus[kMaxDevices];
  static bool known[kMaxDevices] = {};
  int id = -1;
  cudaError_t e = cudaGetDevice(&id);
  if (e == cudaSuccess && (id < 0 || id >= kMaxDevices)) e = cudaErrorInvalidDevice;
  if (e == cudaSuccess) {
    std::lock_guard<std::mutex> lock(mu);
    if (known[id]) return &gpus[id];
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, id);
    if (e == cudaSuccess) {
      Gpu& g = gpus[id];
      g.prop = prop;
      g.info.device = LONGATTN_DEVICE_CUDA;
      g.info.available = 1;
      std::snprintf(g.info.name, sizeof g.info.name, "%.127s", prop.name);
      std::snprintf(g.info.features, sizeof g.info.features, "sm_%d%d, %d KB shared/block",
                    prop.major, prop.minor, int(prop.sharedMemPerBlockOptin / 1024));
      g.info.cores = prop.multiProcessorCount;
      known[id] = true;
      return &g;
    }
  }
  *error = cudaGetErrorString(e);
  cudaGetLastError();  // a failed query must not surface as a later launch's error
  return nullptr;
}

cudaStream_t stream_of(const longattn_options& o) { return static_cast<cudaStream_t>(o.stream); }

// The queries a run makes (pointer attributes, kernel attributes, occupancy, the shared-memory
// opt-in) are not stream work, but a global-mode graph capture (what torch.cuda.graph uses) may
// reject "potentially unsafe" calls, and a rejected call invalidates the capture. They are safe
// here, so this thread relaxes its capture mode while the backend runs, and restores it.
class RelaxedCapture {
 public:
  RelaxedCapture() { ok_ = cudaThreadExchangeStreamCaptureMode(&mode_) == cudaSuccess; }
  ~RelaxedCapture() {
    if (ok_) cudaThreadExchangeStreamCaptureMode(&mode_);
  }
  RelaxedCapture(const RelaxedCapture&) = delete;
  RelaxedCapture& operator=(const RelaxedCapture&) = delete;

 private:
  cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
  bool ok_ = false;
};

void check_cuda(cudaError_t e, const char* what, const longattn_args& a) {
  if (e == cudaSuccess) return;
  cudaGetLastError();
  fail(LONGATTN_DEVICE_ERROR, "CUDA %s (head_dim %lld/%lld, %s) failed: %s", what,
       (long long)a.head_dim_qk, (long long)a.head_dim_v, longattn_dtype_name(a.dtype),
       cudaGetErrorString(e));
}

// A block id out of the pool is refused, as validate.cpp does for CPU runs: the table (B x pages
// int32) is read on the caller's stream, so the host sees what the kernel will, in groups of
// entries of at most 1M ids (4 MB) with one wait each. A captured run cannot wait for it (and a
// graph's replays read other ids): then the kernels map such ids into the pool and
// poison_bad_blocks_launch marks the batch entries that hold one. Returns whether the host checked.
bool check_block_table(const longattn_args& a, const longattn_options& o) {
  if (cuda_stream_capturing(o.stream)) return false;
  const int64_t pages = ceil_div(a.kv_len, a.page_size);
  const int64_t group = std::max<int64_t>(1, (int64_t(1) << 20) / std::max<int64_t>(pages, 1));
  std::vector<int32_t> table(static_cast<size_t>(pages * std::min(group, a.batch)));
  for (int64_t b0 = 0; b0 < a.batch; b0 += group) {
    const int64_t n = std::min(group, a.batch - b0);
    cudaError_t e = cudaSuccess;
    for (int64_t b = 0; b < n && e == cudaSuccess; ++b)
      e = cudaMemcpyAsync(table.data() + b * pages, a.block_table + (b0 + b) * a.block_table_stride,
                          size_t(pages) * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_of(o));
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream_of(o));
    if (e != cudaSuccess)
      fail(LONGATTN_DEVICE_ERROR, "reading block_table: %s", cudaGetErrorString(e));
    for (int64_t b = 0; b < n; ++b)
      for (int64_t p = 0; p < pages; ++p)
        if (const int32_t id = table[size_t(b * pages + p)]; id < 0 || id >= a.num_blocks)
          fail(LONGATTN_INVALID_ARGUMENT,
               "block_table[%lld][%lld] = %d: block ids must be in [0, num_blocks = %lld)",
               (long long)(b0 + b), (long long)p, id, (long long)a.num_blocks);
  }
  return true;
}

// The pointers must be memory the current device can read: device or managed memory. Returns
// whether the block table is left to the device (see check_block_table).
bool check_device_pointers(const longattn_args& a, const longattn_options& o) {
  const struct {
    const char* name;
    const void* p;
  } ptrs[] = {{"q", a.q},
              {"k", a.k},
              {"v", a.v},
              {"o", a.o},
              {"lse", a.lse},
              {"sinks", a.sinks},
              {"mask.data", a.mask.data},
              {"block_table", a.block_table},
              {"k_scale", a.k_scale},
              {"v_scale", a.v_scale}};
  int device = 0;
  cudaGetDevice(&device);
  for (const auto& x : ptrs) {
    if (!x.p) continue;
    cudaPointerAttributes attr{};
    cudaError_t e = cudaPointerGetAttributes(&attr, x.p);
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail(LONGATTN_INVALID_ARGUMENT,
           "%s = %p: not CUDA memory (%s); device = LONGATTN_DEVICE_CUDA "
           "needs device or managed memory",
           x.name, x.p, cudaGetErrorString(e));
    }
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
      fail(LONGATTN_INVALID_ARGUMENT,
           "%s = %p is host memory; device = LONGATTN_DEVICE_CUDA needs device or managed memory",
           x.name, x.p);
    if (attr.type == cudaMemoryTypeDevice && attr.device != device)
      fail(LONGATTN_INVALID_ARGUMENT,
           "%s = %p lives on CUDA device %d, but the current device is %d", x.name, x.p,
           attr.device, device);
  }
  return a.block_table && !check_block_table(a, o);
}

// The typed arrays every CUDA kernel reads or writes with their natural alignment: a float32 or
// int32 array must start on 4 bytes. "" when they do.
std::string typed_pointers_unsupported(const longattn_args& a) {
  const struct {
    const char* name;
    const void* p;
  } typed[] = {{"lse", a.lse},
               {"sinks", a.sinks},
               {"block_table", a.block_table},
               {"k_scale", a.k_scale},
               {"v_scale", a.v_scale}};
  for (const auto& x : typed)
    if (reinterpret_cast<uintptr_t>(x.p) % 4 != 0)
      return format("%s = %p is not 4-byte aligned: the CUDA kernels access it as 32-bit elements",
                    x.name, x.p);
  return "";
}

// ---- fused and split_kv (one kernel; split_kv adds K/V slices and the merge)

// This backend's BackendChoice for the fused and split_kv paths: the compiled kernel the check
// found, and the device's multiprocessors.
struct FusedChoice {
  cuda::FusedKernelInfo kernel;
  int sm_count = 0;
};
static_assert(sizeof(FusedChoice) <= sizeof(BackendChoice::bytes), "grow BackendChoice");
static_assert(std::is_trivially_copyable_v<FusedChoice>, "a Decision is copied as bytes");

void store_choice(const FusedChoice& c, BackendChoice* out) {
  std::memcpy(out->bytes, &c, sizeof c);
}
FusedChoice choice_of(const Decision& d) {
  FusedChoice c;
  std::memcpy(&c, d.choice.bytes, sizeof c);
  return c;
}

std::string fused_check(const longattn_args& a, const DeviceContext& ctx, BackendChoice* choice) {
  RelaxedCapture relaxed;
  std::string error;
  const Gpu* gpu = current_gpu(&error);
  if (!gpu) return "no usable CUDA device: " + error;
  const cudaDeviceProp& prop = gpu->prop;
  if (prop.major < 8)
    return format(
        "the CUDA fused kernel needs compute capability 8.0 (sm_80, mma.sync bf16) or "
        "newer; %s is sm_%d%d",
        prop.name, prop.major, prop.minor);
  if (std::string why = typed_pointers_unsupported(a); !why.empty()) return why;
  int pad_qk = 0, pad_v = 0;
  if (!cuda::fused_padded_head_dims(a.head_dim_qk, a.head_dim_v, &pad_qk, &pad_v,
                                    is_fp8(a.kv_dtype) ? cuda::KvRead::kFp8 : cuda::KvRead::kTiles))
    return format(
        "head_dim_qk = %lld, head_dim_v = %lld: the CUDA fused kernel runs head dims up to "
        "those of its widest compiled pair (compiled: %s; others are padded to one of them)",
        (long long)a.head_dim_qk, (long long)a.head_dim_v, cuda::fused_head_dims_list());
  // Rows of any stride are read and written element by element where they are not on 16 bytes,
  // so only the elements themselves must be aligned (strides count whole elements).
  const struct {
    const char* name;
    const void* p;
    int32_t dtype;
  } t[] = {{"q", a.q, a.dtype},
           {"k", a.k, kv_dtype_of(a)},
           {"v", a.v, kv_dtype_of(a)},
           {"o", a.o, a.dtype}};
  for (const auto& x : t)
    if (reinterpret_cast<uintptr_t>(x.p) % uint64_t(dtype_bytes(x.dtype)) != 0)
      return format("%s = %p is not %lld-byte aligned: the CUDA fused kernel accesses %s elements",
                    x.name, x.p, (long long)dtype_bytes(x.dtype), longattn_dtype_name(x.dtype));
  if (a.q_len > INT32_MAX || a.kv_len > INT32_MAX || a.q_heads > INT32_MAX)
    return format(
        "q_len = %lld, kv_len = %lld, q_heads = %lld: the CUDA kernels allow at most "
        "2^31 - 1 each",
        (long long)a.q_len, (long long)a.kv_len, (long long)a.q_heads);
  // The kernels number packed rows (a KV head's query rows, GQA packing) in 32 bits.
  if (a.q_len * (a.q_heads / a.kv_heads) > (int64_t(1) << 30))
    return format(
        "q_len * (q_heads / kv_heads) = %lld packed query rows per KV head: the CUDA kernels "
        "allow at most 2^30",
        (long long)(a.q_len * (a.q_heads / a.kv_heads)));
  if (a.batch > 65535 || a.kv_heads > 65535)
    return format("batch = %lld, kv_heads = %lld: the CUDA fused grid allows at most 65535 each",
                  (long long)a.batch, (long long)a.kv_heads);
  FusedChoice chosen;
  cuda::FusedKernelInfo& ki = chosen.kernel;
  cudaError_t e = cuda::kernel_for(a, &ki);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return format(
        "this build has no CUDA fused kernel for %s (sm_%d%d): %s; rebuild with "
        "CMAKE_CUDA_ARCHITECTURES including %d%d",
        prop.name, prop.major, prop.minor, cudaGetErrorString(e), prop.major, prop.minor);
  }
  // The FP8-cache kernels hold sm_90 code only (fused_kernel_sm80.cuh, fp8_kernels_compiled).
  if (is_fp8(a.kv_dtype) && ki.arch < 90)
    return format(
        "kv_dtype = %s: the CUDA kernels read FP8 caches with sm_90a code, on compute "
        "capability 9.0 (Hopper) in a build for 90a; %s is sm_%d%d and runs code for sm_%d",
        longattn_dtype_name(a.kv_dtype), prop.name, prop.major, prop.minor, ki.arch);
  if (ki.blocks_per_sm == 0)
    return format(
        "head_dim %lld/%lld: the CUDA fused kernel needs %lld bytes of shared memory per "
        "block; %s allows %zu",
        (long long)a.head_dim_qk, (long long)a.head_dim_v, (long long)ki.smem_bytes, prop.name,
        prop.sharedMemPerBlockOptin);
  // The kernels number their (query tile, split, kv head, batch) blocks in 31 bits.
  const int32_t fixed_splits = ctx.options ? std::max(1, ctx.options->num_splits) : 1;
  const int64_t tiles = ceil_div(a.q_len * (a.q_heads / a.kv_heads), int64_t(ki.block_q));
  int64_t blocks = 0;
  if (__builtin_mul_overflow(a.batch * a.kv_heads, tiles, &blocks) ||
      __builtin_mul_overflow(blocks, int64_t(fixed_splits), &blocks) || blocks > INT32_MAX)
    return format(
        "batch x kv_heads x query tiles of %d packed rows x options.num_splits (= %d) thread "
        "blocks: the CUDA fused kernels allow at most 2^31 - 1",
        ki.block_q, fixed_splits);
  chosen.sm_count = prop.multiProcessorCount;
  store_choice(chosen, choice);
  return "";
}

void fused_configure(const longattn_args&, const DeviceContext&, Decision* d) {
  const cuda::FusedKernelInfo ki = choice_of(*d).kernel;
  longattn_plan* p = &d->plan;
  p->block_q = ki.block_q;  // packed rows: query rows x GQA group
  p->block_k = ki.block_k;
  // plan.threads counts CPU workers; a GPU run has one. (The router lowers threads to fit a
  // budget, so it must not grow back here.)
  p->threads = 1;
  p->splits = 1;
}

int64_t fused_workspace(const longattn_args&, const Decision&) { return 0; }

std::string fused_kernel_name(const longattn_args& a, const Decision& d) {
  const cuda::FusedKernelInfo ki = choice_of(d).kernel;
  std::string name = ki.family == 90 ? "sm90a wgmma+TMA"
                     : ki.decode     ? "sm80 mma.sync (decode tiles)"
                                     : "sm80 mma.sync";
  if (is_fp8(a.kv_dtype)) name += ", FP8 K/V";
  if (ki.family == 80 && ki.kv_read == cuda::KvRead::kPagedRows) name += ", paged rows";
  if (ki.head_dim_qk != a.head_dim_qk || ki.head_dim_v != a.head_dim_v)
    name += format(", padded to %d/%d", ki.head_dim_qk, ki.head_dim_v);  // fits plan.kernel
  return name;
}

// Thread blocks: block_q counts packed rows (query positions x the g heads of a KV head).
int64_t fused_blocks(const longattn_args& a, const Decision& d) {
  const longattn_plan& p = d.plan;
  const int64_t g = a.q_heads / a.kv_heads;
  return a.batch * a.kv_heads * ceil_div(a.q_len * g, std::max(1, p.block_q)) * p.splits;
}

// After a run's kernels: the rows of any batch entry whose table the host did not check and that
// holds a block id out of the pool become NaN.
void poison_unchecked_table(const longattn_args& a, const longattn_options& o, bool unchecked) {
  if (unchecked)
    check_cuda(cuda::poison_bad_blocks_launch(a, stream_of(o)), "block_table check launch", a);
}

void fused_run(const longattn_args& a, const Decision& d, Arena&, const longattn_options& o) {
  RelaxedCapture relaxed;
  const bool unchecked = check_device_pointers(a, o);
  check_cuda(cuda::launch_fused(a, choice_of(d).kernel, 1, nullptr, nullptr, stream_of(o)),
             "fused kernel launch", a);
  poison_unchecked_table(a, o, unchecked);
}

void split_configure(const longattn_args& a, const DeviceContext& ctx, Decision* d) {
  fused_configure(a, ctx, d);
  const FusedChoice c = choice_of(*d);
  d->plan.splits = ctx.options && ctx.options->num_splits > 0
                       ? ctx.options->num_splits
                       : cuda::choose_splits(a, c.kernel, c.sm_count);
}

WorkspaceLayout split_layout(const longattn_args& a, const longattn_plan& p, int64_t* o_off,
                             int64_t* lse_off) {
  WorkspaceLayout l;
  if (p.splits > 1) {
    *o_off = l.add(cuda::split_o_floats(a, p.splits), sizeof(float));
    *lse_off = l.add(cuda::split_lse_floats(a, p.splits), sizeof(float));
  }
  return l;
}

int64_t split_workspace(const longattn_args& a, const Decision& d) {
  int64_t o_off = 0, lse_off = 0;
  return split_layout(a, d.plan, &o_off, &lse_off).total;
}

void split_run(const longattn_args& a, const Decision& d, Arena& arena, const longattn_options& o) {
  const longattn_plan& p = d.plan;
  RelaxedCapture relaxed;
  const bool unchecked = check_device_pointers(a, o);
  float *o_part = nullptr, *lse_part = nullptr;
  if (p.splits > 1) {
    o_part = arena.take<float>(cuda::split_o_floats(a, p.splits));
    lse_part = arena.take<float>(cuda::split_lse_floats(a, p.splits));
  }
  check_cuda(cuda::launch_fused(a, choice_of(d).kernel, p.splits, o_part, lse_part, stream_of(o)),
             "split_kv launch", a);
  poison_unchecked_table(a, o, unchecked);
}

// ---- unfused (cuBLAS)

std::string unfused_check(const longattn_args& a, const DeviceContext&, BackendChoice*) {
  RelaxedCapture relaxed;
  std::string error;
  if (!current_gpu(&error)) return "no usable CUDA device: " + error;
  if (is_fp8(a.kv_dtype))
    return format(
        "kv_dtype = %s: the CUDA unfused path reads K and V in dtype; an FP8 cache runs on the "
        "fused and split_kv paths (options.path = LONGATTN_PATH_AUTO, _FUSED or _SPLIT_KV)",
        longattn_dtype_name(a.kv_dtype));
  if (std::string why = typed_pointers_unsupported(a); !why.empty()) return why;
  return cuda::unfused_unsupported(a);
}

void unfused_configure(const longattn_args& a, const DeviceContext&, Decision* d) {
  longattn_plan* p = &d->plan;
  p->block_q = int32_t(std::min<int64_t>(a.q_len, INT32_MAX));  // one GEMM per (batch, head)
  p->block_k = int32_t(std::min<int64_t>(a.kv_len, INT32_MAX));
  p->threads = 1;
  p->splits = 1;
}

int64_t unfused_workspace(const longattn_args& a, const Decision&) {
  const cuda::UnfusedLayout u = cuda::unfused_layout(a);
  WorkspaceLayout l;
  l.add(u.scores_bytes, 1);
  l.add(u.probs_bytes, 1);
  l.add(u.pointer_bytes, 1);
  l.add(u.cublas_bytes, 1);
  for (int64_t bytes : u.staged_bytes) l.add(bytes, 1);
  return l.total;
}

std::string unfused_kernel_name(const longattn_args&, const Decision&) {
  return "cuBLAS GEMMs + softmax";
}

void unfused_run(const longattn_args& a, const Decision&, Arena& arena, const longattn_options& o) {
  RelaxedCapture relaxed;
  const bool unchecked = check_device_pointers(a, o);
  const cuda::UnfusedLayout u = cuda::unfused_layout(a);
  cuda::UnfusedBuffers buf;
  buf.scores = arena.take<char>(u.scores_bytes);
  buf.probs = arena.take<char>(u.probs_bytes);
  buf.pointers = arena.take<char>(u.pointer_bytes);
  buf.cublas = arena.take<char>(u.cublas_bytes);
  for (int t = 0; t < 4; ++t) buf.staged[t] = arena.take<char>(u.staged_bytes[t]);
  std::string error = cuda::unfused_run(a, buf, stream_of(o));
  if (!error.empty()) fail(LONGATTN_DEVICE_ERROR, "CUDA unfused path: %s", error.c_str());
  poison_unchecked_table(a, o, unchecked);
}

bool split_pays(const longattn_args& a, const DeviceContext&, const Decision& fused,
                std::string* why) {
  const FusedChoice c = choice_of(fused);
  return cuda::split_pays(a, c.kernel, c.sm_count, fused_blocks(a, fused), why);
}

const PathImpl kCudaPaths[] = {
    {LONGATTN_DEVICE_CUDA, LONGATTN_PATH_FUSED, fused_check, fused_configure, fused_workspace,
     fused_run, fused_kernel_name},
    {LONGATTN_DEVICE_CUDA, LONGATTN_PATH_SPLIT_KV, fused_check, split_configure, split_workspace,
     split_run, fused_kernel_name},
    {LONGATTN_DEVICE_CUDA, LONGATTN_PATH_UNFUSED, unfused_check, unfused_configure,
     unfused_workspace, unfused_run, unfused_kernel_name},
};

}  // namespace

PathList cuda_paths() {
  return {kCudaPaths, int(sizeof kCudaPaths / sizeof kCudaPaths[0]), split_pays};
}

bool cuda_stream_capturing(void* stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  cudaError_t e = cudaStreamIsCapturing(static_cast<cudaStream_t>(stream), &status);
  if (e != cudaSuccess) {
    // The legacy default stream while another stream captures (cudaErrorStreamCaptureImplicit):
    // nothing synchronous may run now either.
    cudaGetLastError();
    return true;
  }
  return status != cudaStreamCaptureStatusNone;
}

int cuda_current_device() {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return device;
}

void cuda_device_info(longattn_device_info* info, bool free_memory) {
  RelaxedCapture relaxed;
  std::memset(info, 0, sizeof *info);
  info->device = LONGATTN_DEVICE_CUDA;
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();
    std::snprintf(info->name, sizeof info->name, "no CUDA device (%s)",
                  e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    return;
  }
  std::string error;
  const Gpu* gpu = current_gpu(&error);
  if (!gpu) {
    std::snprintf(info->name, sizeof info->name, "no usable CUDA device (%s)", error.c_str());
    return;
  }
  *info = gpu->info;
  size_t free_bytes = 0, total_bytes = 0;
  if (!free_memory) return;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
    info->memory_free = int64_t(free_bytes);
    info->memory_total = int64_t(total_bytes);
  } else {
    cudaGetLastError();
  }
}

void* cuda_alloc(int64_t bytes) {
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, size_t(bytes));
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail(LONGATTN_OUT_OF_MEMORY, "could not allocate %lld transient bytes on the GPU: %s",
         (long long)bytes, cudaGetErrorString(e));
  }
  return p;
}

// cudaFree waits for the device to finish, so a run's kernels are done before its workspace goes.
void cuda_free(void* p) { cudaFree(p); }

}  // namespace longattn::detail
