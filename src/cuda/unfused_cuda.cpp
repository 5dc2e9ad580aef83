#include "cuda/unfused_cuda.hpp"

#include <cublas_v2.h>

#include <algorithm>
#include <climits>
#include <cmath>

#include "core/detail.hpp"
#include "cuda/score_fields_cuda.hpp"

namespace longattn::cuda {
namespace {

using detail::checked_mul;

constexpr int kMaxDevices = 64;
// cuBLAS's own recommendation for Hopper; plus room to align it to 256 bytes.
constexpr int64_t kCublasWorkspace = 32 << 20;
constexpr int64_t kCublasAlign = 256;

// One cuBLAS handle per thread and device (creating one costs milliseconds). They are never
// destroyed: at process exit the CUDA context may already be gone.
cublasStatus_t handle_for_current_device(cublasHandle_t* out) {
  thread_local cublasHandle_t handles[kMaxDevices] = {};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices)
    return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!handles[device]) {
    cublasStatus_t s = cublasCreate(&handles[device]);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
  }
  *out = handles[device];
  return CUBLAS_STATUS_SUCCESS;
}

cudaDataType_t cuda_type(int32_t dtype) {
  return dtype == LONGATTN_FLOAT32   ? CUDA_R_32F
         : dtype == LONGATTN_FLOAT16 ? CUDA_R_16F
                                     : CUDA_R_16BF;
}

// cuBLAS needs a leading dimension of at least the row length even when there is one row.
int64_t leading(int64_t token_stride, int64_t len, int64_t head_dim) {
  return len == 1 ? std::max(token_stride, head_dim) : token_stride;
}

// Every matrix the GEMMs see starts on this many bytes (cuBLAS's batched-GEMM alignment).
constexpr int64_t kMatrixAlign = 16;

// One of Q, K, V, O as a [outer, heads, len, dim] tensor of args.
struct TensorView {
  const void* base;
  longattn_strides s;
  int64_t outer, heads, len, dim;
  bool paged;
};

TensorView view(const longattn_args& a, int t) {
  const bool paged = a.block_table != nullptr;
  switch (t) {
    case kQ:
      return {a.q, a.q_strides, a.batch, a.q_heads, a.q_len, a.head_dim_qk, false};
    case kK:
      return {a.k, a.k_strides, a.batch, a.kv_heads, a.kv_len, a.head_dim_qk, paged};
    case kV:
      return {a.v, a.v_strides, a.batch, a.kv_heads, a.kv_len, a.head_dim_v, paged};
    default:
      return {a.o, a.o_strides, a.batch, a.q_heads, a.q_len, a.head_dim_v, false};
  }
}

// Whether the GEMMs can use the tensor in place: every (batch, head) matrix on 16 bytes, rows
// that do not overlap, a leading dimension cuBLAS takes. Paged K/V is always gathered.
bool in_place(const TensorView& t, int64_t es) {
  if (t.paged || reinterpret_cast<uintptr_t>(t.base) % kMatrixAlign != 0) return false;
  if (t.outer > 1 && t.s.batch * es % kMatrixAlign != 0) return false;
  if (t.heads > 1 && t.s.head * es % kMatrixAlign != 0) return false;
  const int64_t ld = leading(t.s.token, t.len, t.dim);
  return ld >= t.dim && ld <= INT_MAX;
}

}  // namespace

std::string unfused_unsupported(const longattn_args& a) {
  if (a.q_len > INT_MAX || a.kv_len > INT_MAX || a.batch * a.q_heads > INT_MAX ||
      a.batch * a.q_heads * a.q_len > INT_MAX)
    return detail::format(
        "q_len = %lld, kv_len = %lld, batch x q_heads = %lld, batch x q_heads x q_len = %lld: "
        "the CUDA unfused path (cuBLAS, one softmax block per row) allows at most 2^31 - 1 each",
        (long long)a.q_len, (long long)a.kv_len, (long long)(a.batch * a.q_heads),
        (long long)(a.batch * a.q_heads * a.q_len));
  return "";
}

UnfusedLayout unfused_layout(const longattn_args& a) {
  UnfusedLayout u;
  const int64_t es = detail::dtype_bytes(a.dtype), n = a.batch * a.q_heads;
  const int64_t cells = checked_mul(a.q_len, a.kv_len, "scores");
  u.scores_matrix = detail::round_up(cells, kMatrixAlign / 4);
  u.probs_matrix = detail::round_up(cells, kMatrixAlign / es);
  u.scores_bytes = checked_mul(checked_mul(n, u.scores_matrix, "scores"), 4, "scores");
  u.probs_bytes = checked_mul(checked_mul(n, u.probs_matrix, "probabilities"), es, "probabilities");
  u.pointer_bytes = checked_mul(6 * a.batch, a.q_heads * int64_t(sizeof(void*)), "pointers");
  u.cublas_bytes = kCublasWorkspace + kCublasAlign;
  for (int t = 0; t < 4; ++t) {
    const TensorView v = view(a, t);
    if (in_place(v, es)) continue;
    u.staged_ld[t] = detail::round_up(v.dim, kMatrixAlign / es);
    u.staged_bytes[t] =
        checked_mul(checked_mul(checked_mul(v.outer * v.heads, v.len, "staged copy"),
                                u.staged_ld[t], "staged copy"),
                    es, "staged copy");
  }
  return u;
}

std::string unfused_run(const longattn_args& a, const UnfusedBuffers& buf, cudaStream_t stream) {
  cublasHandle_t h = nullptr;
  cublasStatus_t s = handle_for_current_device(&h);
  auto cublas_error = [&](const char* what) {
    return std::string(what) + ": " + cublasGetStatusString(s);
  };
  if (s != CUBLAS_STATUS_SUCCESS) return cublas_error("cublasCreate");
  char* ws = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(buf.cublas) + kCublasAlign - 1) /
                                     kCublasAlign * kCublasAlign);
  if ((s = cublasSetStream(h, stream)) != CUBLAS_STATUS_SUCCESS) return cublas_error("stream");
  if ((s = cublasSetWorkspace(h, ws, kCublasWorkspace)) != CUBLAS_STATUS_SUCCESS)
    return cublas_error("workspace");

  const UnfusedLayout u = unfused_layout(a);
  const int64_t n = a.batch * a.q_heads, g = a.q_heads / a.kv_heads,
                es = detail::dtype_bytes(a.dtype);

  // Each operand as the GEMMs read it: in place, or its packed copy.
  struct Operand {
    char* base;
    int64_t batch, head, ld;  // bytes, bytes, elements
  } op[4];
  for (int t = 0; t < 4; ++t) {
    const TensorView v = view(a, t);
    if (!u.staged_bytes[t]) {
      op[t] = {static_cast<char*>(const_cast<void*>(v.base)), v.s.batch * es, v.s.head * es,
               leading(v.s.token, v.len, v.dim)};
      continue;
    }
    const int64_t ld = u.staged_ld[t];
    op[t] = {buf.staged[t], v.heads * v.len * ld * es, v.len * ld * es, ld};
    if (t == kO) continue;
    CopyParams c{};
    c.strided = static_cast<char*>(const_cast<void*>(v.base));
    c.packed = buf.staged[t];
    c.stride[0] = v.s.batch * es, c.stride[1] = v.s.head * es, c.stride[2] = v.s.token * es;
    c.outer = v.outer, c.heads = v.heads, c.len = v.len, c.dim = v.dim, c.ld = ld;
    c.elem_bytes = int32_t(es);
    if (v.paged)
      c.block_table = a.block_table, c.table_stride = a.block_table_stride,
      c.page_size = a.page_size, c.num_blocks = a.num_blocks;
    c.gather = true;
    cudaError_t e = copy_launch(c, stream);
    if (e != cudaSuccess) return std::string("gather copy: ") + cudaGetErrorString(e);
  }

  // Pointer arrays, one entry per (batch, q head): K, Q, S for the first GEMM; V, P, O next.
  void** ptr = reinterpret_cast<void**>(buf.pointers);
  const struct {
    const void* base;
    int64_t group, batch_stride, head_stride;
  } arrays[6] = {{op[kK].base, g, op[kK].batch, op[kK].head},
                 {op[kQ].base, 1, op[kQ].batch, op[kQ].head},
                 {buf.scores, 1, a.q_heads * u.scores_matrix * 4, u.scores_matrix * 4},
                 {op[kV].base, g, op[kV].batch, op[kV].head},
                 {buf.probs, 1, a.q_heads * u.probs_matrix * es, u.probs_matrix * es},
                 {op[kO].base, 1, op[kO].batch, op[kO].head}};
  for (int t = 0; t < 6; ++t) {
    cudaError_t e = pointers_launch(ptr + t * n, n, arrays[t].base, a.q_heads, arrays[t].group,
                                    arrays[t].batch_stride, arrays[t].head_stride, stream);
    if (e != cudaSuccess) return std::string("pointer kernel: ") + cudaGetErrorString(e);
  }

  // Row-major S [Lq, Lk] is column-major S^T = K Q^T: op(K^T stored as Dqk x Lk) = T.
  const cudaDataType_t type = cuda_type(a.dtype);
  const float one = 1.f, zero = 0.f;
  s = cublasGemmBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(a.kv_len), int(a.q_len),
                          int(a.head_dim_qk), &one, const_cast<const void* const*>(ptr), type,
                          int(op[kK].ld), const_cast<const void* const*>(ptr + n), type,
                          int(op[kQ].ld), &zero, ptr + 2 * n, CUDA_R_32F, int(a.kv_len), int(n),
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) return cublas_error("S = Q K^T (cublasGemmBatchedEx)");

  SoftmaxParams p{};
  p.scores = reinterpret_cast<float*>(buf.scores);
  p.probs = buf.probs;
  p.scores_matrix = u.scores_matrix, p.probs_matrix = u.probs_matrix;
  p.lse = a.lse;
  p.dtype = a.dtype;
  p.batch = a.batch, p.q_heads = a.q_heads, p.q_len = a.q_len, p.kv_len = a.kv_len;
  set_score_fields(a, &p);
  cudaError_t e = softmax_launch(p, stream);
  if (e != cudaSuccess) return std::string("softmax kernel: ") + cudaGetErrorString(e);

  // Row-major O [Lq, Dv] is column-major O^T = V^T P^T.
  s = cublasGemmBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, int(a.head_dim_v), int(a.q_len),
                          int(a.kv_len), &one, const_cast<const void* const*>(ptr + 3 * n), type,
                          int(op[kV].ld), const_cast<const void* const*>(ptr + 4 * n), type,
                          int(a.kv_len), &zero, ptr + 5 * n, type, int(op[kO].ld), int(n),
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) return cublas_error("O = P V (cublasGemmBatchedEx)");

  if (u.staged_bytes[kO]) {
    const TensorView v = view(a, kO);
    CopyParams c{};
    c.strided = static_cast<char*>(a.o);
    c.packed = buf.staged[kO];
    c.stride[0] = v.s.batch * es, c.stride[1] = v.s.head * es, c.stride[2] = v.s.token * es;
    c.outer = v.outer, c.heads = v.heads, c.len = v.len, c.dim = v.dim, c.ld = u.staged_ld[kO];
    c.elem_bytes = int32_t(es);
    c.gather = false;
    if ((e = copy_launch(c, stream)) != cudaSuccess)
      return std::string("output copy: ") + cudaGetErrorString(e);
  }
  return "";
}

}  // namespace longattn::cuda
