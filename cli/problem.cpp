#include "problem.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <new>
#include <string>

#ifdef LONGATTN_CLI_CUDA
#include <cuda_runtime.h>
#endif

namespace longattn::cli {
namespace {

// Bytes behind each output that no path may write (design section 4: nothing outside O and LSE).
constexpr int64_t kGuardBytes = 256;
constexpr uint8_t kGuardByte = 0xa5;
constexpr uint8_t kPoisonByte = 0xff;  // 0xff.. is a NaN in float32, float16 and bfloat16
// Sink logits in [-2, 6): large enough to take a visible share of the softmax even over thousands
// of keys (e^6 ~ 400), so a path that ignores sinks fails the check.
constexpr float kSinkLo = -2.0f, kSinkHi = 6.0f;

#ifdef LONGATTN_CLI_CUDA
void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw RunError(std::string(what) + ": " + cudaGetErrorString(e));
}
#endif

int64_t product(std::initializer_list<int64_t> factors) {
  int64_t r = 1;
  for (int64_t f : factors)
    if (__builtin_mul_overflow(r, f, &r))
      throw RunError("the tensors of this shape have more elements than a 64-bit count holds");
  return r;
}

}  // namespace

DeviceBuffer::DeviceBuffer(int32_t device, int64_t bytes) : device_(device), bytes_(bytes) {
  size_t rounded = static_cast<size_t>(std::max<int64_t>(64, (bytes + 63) / 64 * 64));
  if (device == LONGATTN_DEVICE_CUDA) {
#ifdef LONGATTN_CLI_CUDA
    cuda_check(cudaMalloc(&data_, rounded), "cudaMalloc");
#else
    throw RunError("this longattn CLI was built without the CUDA runtime");
#endif
  } else {
    data_ = std::aligned_alloc(64, rounded);
    if (!data_) throw std::bad_alloc();
  }
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  std::swap(device_, other.device_);
  std::swap(data_, other.data_);
  std::swap(bytes_, other.bytes_);
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (!data_) return;
#ifdef LONGATTN_CLI_CUDA
  if (device_ == LONGATTN_DEVICE_CUDA) {
    cudaFree(data_);
    return;
  }
#endif
  std::free(data_);
}

void DeviceBuffer::upload(const void* host, int64_t offset, int64_t bytes) {
  char* dst = static_cast<char*>(data_) + offset;
#ifdef LONGATTN_CLI_CUDA
  if (device_ == LONGATTN_DEVICE_CUDA)
    return cuda_check(cudaMemcpy(dst, host, size_t(bytes), cudaMemcpyHostToDevice), "cudaMemcpy");
#endif
  std::memcpy(dst, host, size_t(bytes));
}

void DeviceBuffer::download(void* host, int64_t offset, int64_t bytes) const {
  const char* src = static_cast<const char*>(data_) + offset;
#ifdef LONGATTN_CLI_CUDA
  if (device_ == LONGATTN_DEVICE_CUDA)
    return cuda_check(cudaMemcpy(host, src, size_t(bytes), cudaMemcpyDeviceToHost), "cudaMemcpy");
#endif
  std::memcpy(host, src, size_t(bytes));
}

void DeviceBuffer::fill(uint8_t value, int64_t offset, int64_t bytes) {
  char* dst = static_cast<char*>(data_) + offset;
#ifdef LONGATTN_CLI_CUDA
  if (device_ == LONGATTN_DEVICE_CUDA)
    return cuda_check(cudaMemset(dst, value, size_t(bytes)), "cudaMemset");
#endif
  std::memset(dst, value, size_t(bytes));
}

void device_synchronize(int32_t device) {
#ifdef LONGATTN_CLI_CUDA
  if (device == LONGATTN_DEVICE_CUDA) cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
#else
  (void)device;
#endif
}

void require_device(const ProblemOptions& opt) {
  if (opt.device == LONGATTN_DEVICE_CPU) return;
  longattn_device_info info;
  check_status(longattn_device_query(opt.device, &info), "device query");
  if (info.available) {
#ifdef LONGATTN_CLI_CUDA
    return;
#else
    throw RunError(
        "--device cuda: the library has CUDA but this CLI was built without the CUDA "
        "runtime; rebuild with LONGATTN_CUDA=ON");
#endif
  }
  // Ask the router with a one-token problem so the reason is the library's own words.
  std::vector<float> q(size_t(std::clamp<int64_t>(opt.head_dim_qk, 1, 4096))), k(q.size()),
      v(size_t(std::clamp<int64_t>(opt.head_dim_v, 1, 4096))), o(v.size());
  longattn_args a;
  longattn_args_init(&a);
  a.q = q.data(), a.k = k.data(), a.v = v.data(), a.o = o.data();
  a.dtype = opt.dtype;
  a.device = opt.device;
  a.head_dim_qk = opt.head_dim_qk;
  a.head_dim_v = opt.head_dim_v;
  longattn_set_contiguous_strides(&a);
  longattn_options options = make_options(opt, LONGATTN_PATH_AUTO);
  longattn_plan plan;
  check_status(longattn_plan_attention(&a, &options, &plan), "--device cuda");
  throw RunError(std::string("--device cuda: not available: ") + info.name);
}

Problem::Problem(const ProblemOptions& opt, bool keep_reference_inputs) : opt_(opt) {
  const ProblemOptions& o = opt_;
  q_count_ = product({o.batch, o.q_heads, o.q_len, o.head_dim_qk});
  k_count_ = product({o.batch, o.kv_heads, o.kv_len, o.head_dim_qk});
  v_count_ = product({o.batch, o.kv_heads, o.kv_len, o.head_dim_v});
  o_count_ = product({o.batch, o.q_heads, o.q_len, o.head_dim_v});
  lse_count_ = product({o.batch, o.q_heads, o.q_len});
  const int64_t elem = dtype_size(o.dtype);
  const int32_t kv_dtype = longattn::numeric::kv_dtype_or_same(o.dtype, o.kv_dtype);
  const int64_t kv_elem = dtype_size(kv_dtype);

  // Refuse up front what cannot fit rather than being killed by the OOM killer halfway through.
  double tensors = (double(q_count_) + double(o_count_)) * double(elem) +
                   (double(k_count_) + double(v_count_)) * double(kv_elem) +
                   double(lse_count_) * 4.0;
  if (tensors > 0x1p62)  // byte counts must stay far from int64 overflow
    throw RunError("the tensors of this shape need more than 2^62 bytes");
  double host =
      o.device == LONGATTN_DEVICE_CPU ? tensors : double(std::max(k_count_, v_count_)) * elem;
  // check keeps float copies of the inputs, the reference O/LSE, and two copies of O/LSE.
  if (keep_reference_inputs)
    host += (double(q_count_) + double(k_count_) + double(v_count_)) * 4 +
            3.0 * (double(o_count_) + double(lse_count_)) * 4;
  double ram = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE));
  if (ram > 0 && host > 0.9 * ram)
    throw RunError("this shape needs about " + format_bytes(int64_t(host)) +
                   " of host memory for its tensors" +
                   (keep_reference_inputs ? " and the reference's float copies" : "") +
                   "; this machine has " + format_bytes(int64_t(ram)) +
                   ": choose a smaller --batch, --q-heads, --q-len or --kv-len");

  // One seed per tensor, derived from --seed, so changing one shape flag leaves the other tensors'
  // streams as they were.
  Rng seeds(o.seed);
  const uint64_t seed_q = seeds.next(), seed_k = seeds.next(), seed_v = seeds.next(),
                 seed_s = seeds.next();
  auto make_input = [&](int32_t dtype, int64_t count, uint64_t seed, std::vector<float>* copy) {
    const int64_t bytes = count * dtype_size(dtype);
    DeviceBuffer buf(o.device, bytes);
    if (o.device == LONGATTN_DEVICE_CPU) {
      fill_random(dtype, buf.data(), count, seed, copy);
    } else {
      AlignedBuffer staging(bytes);
      fill_random(dtype, staging.data(), count, seed, copy);
      buf.upload(staging.data(), 0, bytes);
    }
    return buf;
  };
  q_ = make_input(o.dtype, q_count_, seed_q, keep_reference_inputs ? &q32_ : nullptr);
  k_ = make_input(kv_dtype, k_count_, seed_k, keep_reference_inputs ? &k32_ : nullptr);
  v_ = make_input(kv_dtype, v_count_, seed_v, keep_reference_inputs ? &v32_ : nullptr);
  if (o.sinks) {
    Rng rng(seed_s);
    sinks32_.resize(size_t(o.q_heads));
    for (float& s : sinks32_) s = rng.uniform(kSinkLo, kSinkHi);
    sinks_ = DeviceBuffer(o.device, o.q_heads * 4);
    sinks_.upload(sinks32_.data(), 0, o.q_heads * 4);
  }
  o_ = DeviceBuffer(o.device, o_count_ * elem + kGuardBytes);
  lse_ = DeviceBuffer(o.device, lse_count_ * 4 + kGuardBytes);
  poison_outputs();
}

longattn_args Problem::args() const {
  const ProblemOptions& o = opt_;
  longattn_args a;
  longattn_args_init(&a);
  a.q = q_.data(), a.k = k_.data(), a.v = v_.data(), a.o = o_.data();
  a.lse = static_cast<float*>(lse_.data());
  a.dtype = o.dtype;
  a.device = o.device;
  a.batch = o.batch, a.q_heads = o.q_heads, a.kv_heads = o.kv_heads;
  a.q_len = o.q_len, a.kv_len = o.kv_len;
  a.head_dim_qk = o.head_dim_qk, a.head_dim_v = o.head_dim_v;
  longattn_set_contiguous_strides(&a);
  a.causal = o.causal ? 1 : 0;
  a.window_left = o.window_left;
  a.softcap = o.softcap;
  a.sinks = o.sinks ? static_cast<const float*>(sinks_.data()) : nullptr;
  a.kv_dtype = o.kv_dtype;
  return a;
}

longattn_args Problem::reference_args(std::vector<float>* out, std::vector<float>* lse) const {
  if (q32_.empty()) throw RunError("internal: reference inputs were not kept");
  longattn_args a = args();
  out->assign(size_t(o_count_), 0.0f);
  lse->assign(size_t(lse_count_), 0.0f);
  a.q = q32_.data(), a.k = k32_.data(), a.v = v32_.data(), a.o = out->data();
  a.lse = lse->data();
  a.dtype = LONGATTN_FLOAT32;
  a.kv_dtype = 0;  // the float copies hold the FP8 values exactly
  a.device = LONGATTN_DEVICE_CPU;
  a.sinks = opt_.sinks ? sinks32_.data() : nullptr;
  return a;
}

void Problem::poison_outputs() {
  const int64_t o_bytes = o_.bytes() - kGuardBytes, lse_bytes = lse_.bytes() - kGuardBytes;
  o_.fill(kPoisonByte, 0, o_bytes);
  o_.fill(kGuardByte, o_bytes, kGuardBytes);
  lse_.fill(kPoisonByte, 0, lse_bytes);
  lse_.fill(kGuardByte, lse_bytes, kGuardBytes);
}

bool Problem::guards_intact() const {
  uint8_t guard[kGuardBytes];
  for (const DeviceBuffer* b : {&o_, &lse_}) {
    b->download(guard, b->bytes() - kGuardBytes, kGuardBytes);
    if (!std::all_of(guard, guard + kGuardBytes, [](uint8_t x) { return x == kGuardByte; }))
      return false;
  }
  return true;
}

std::vector<float> Problem::output() const {
  std::vector<uint8_t> raw(size_t(o_.bytes() - kGuardBytes));
  o_.download(raw.data(), 0, int64_t(raw.size()));
  std::vector<float> out(static_cast<size_t>(o_count_));
  for (int64_t i = 0; i < o_count_; ++i)
    out[size_t(i)] = numeric::load_element(opt_.dtype, raw.data(), i);
  return out;
}

std::vector<float> Problem::lse() const {
  std::vector<float> out(static_cast<size_t>(lse_count_));
  lse_.download(out.data(), 0, lse_count_ * 4);
  return out;
}

std::vector<uint8_t> Problem::output_bytes() const {
  const int64_t o_bytes = o_.bytes() - kGuardBytes;
  std::vector<uint8_t> raw(size_t(o_bytes + lse_count_ * 4));
  o_.download(raw.data(), 0, o_bytes);
  lse_.download(raw.data() + o_bytes, 0, lse_count_ * 4);
  return raw;
}

uint64_t Problem::input_hash() const {
  uint64_t h = numeric::kFnv1a64Offset;
  std::vector<uint8_t> chunk(size_t(1) << 20);
  for (const DeviceBuffer* b : {&q_, &k_, &v_, &sinks_}) {
    for (int64_t at = 0; at < b->bytes(); at += int64_t(chunk.size())) {
      int64_t n = std::min<int64_t>(int64_t(chunk.size()), b->bytes() - at);
      b->download(chunk.data(), at, n);
      h = numeric::fnv1a64(chunk.data(), size_t(n), h);  // FNV-1a
    }
  }
  return h;
}

}  // namespace longattn::cli
