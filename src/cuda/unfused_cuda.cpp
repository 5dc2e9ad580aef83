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

}  // namespace

std::string unfused_unsupported(const longattn_args& a) {
  if (a.block_table)
    return "block_table: paged K/V is not supported by the CUDA unfused path (contiguous or "
           "strided K/V only)";
  const int64_t lds[] = {leading(a.q_strides.token, a.q_len, a.head_dim_qk),
                         leading(a.k_strides.token, a.kv_len, a.head_dim_qk),
                         leading(a.v_strides.token, a.kv_len, a.head_dim_v),
                         leading(a.o_strides.token, a.q_len, a.head_dim_v)};
  const char* names[] = {"q", "k", "v", "o"};
  const int64_t dims[] = {a.head_dim_qk, a.head_dim_qk, a.head_dim_v, a.head_dim_v};
  for (int t = 0; t < 4; ++t) {
    if (lds[t] < dims[t])
      return detail::format(
          "%s_strides.token = %lld is below the head dim %lld: the CUDA unfused "
          "path (cuBLAS) needs rows that do not overlap",
          names[t], (long long)lds[t], (long long)dims[t]);
    if (lds[t] > INT_MAX)
      return detail::format("%s_strides.token = %lld: cuBLAS allows at most 2^31 - 1", names[t],
                            (long long)lds[t]);
  }
  if (a.q_len > INT_MAX || a.kv_len > INT_MAX || a.batch * a.q_heads > INT_MAX)
    return detail::format(
        "q_len = %lld, kv_len = %lld, batch x q_heads = %lld: cuBLAS allows at "
        "most 2^31 - 1 each",
        (long long)a.q_len, (long long)a.kv_len, (long long)(a.batch * a.q_heads));
  return "";
}

UnfusedLayout unfused_layout(const longattn_args& a) {
  UnfusedLayout u;
  const int64_t cells =
      checked_mul(checked_mul(a.batch * a.q_heads, a.q_len, "scores"), a.kv_len, "scores");
  u.scores_bytes = checked_mul(cells, 4, "scores");
  u.probs_bytes = checked_mul(cells, detail::dtype_bytes(a.dtype), "probabilities");
  u.pointer_bytes = checked_mul(6 * a.batch, a.q_heads * int64_t(sizeof(void*)), "pointers");
  u.cublas_bytes = kCublasWorkspace + kCublasAlign;
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

  // Pointer arrays, one entry per (batch, q head): K, Q, S for the first GEMM; V, P, O next.
  const int64_t n = a.batch * a.q_heads, g = a.q_heads / a.kv_heads,
                es = detail::dtype_bytes(a.dtype);
  const int64_t cell = a.q_len * a.kv_len;
  void** ptr = reinterpret_cast<void**>(buf.pointers);
  const struct {
    const void* base;
    int64_t group, batch_stride, head_stride;
  } arrays[6] = {{a.k, g, a.k_strides.batch * es, a.k_strides.head * es},
                 {a.q, 1, a.q_strides.batch * es, a.q_strides.head * es},
                 {buf.scores, 1, a.q_heads * cell * 4, cell * 4},
                 {a.v, g, a.v_strides.batch * es, a.v_strides.head * es},
                 {buf.probs, 1, a.q_heads * cell * es, cell * es},
                 {a.o, 1, a.o_strides.batch * es, a.o_strides.head * es}};
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
                          int(leading(a.k_strides.token, a.kv_len, a.head_dim_qk)),
                          const_cast<const void* const*>(ptr + n), type,
                          int(leading(a.q_strides.token, a.q_len, a.head_dim_qk)), &zero,
                          ptr + 2 * n, CUDA_R_32F, int(a.kv_len), int(n), CUBLAS_COMPUTE_32F,
                          CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) return cublas_error("S = Q K^T (cublasGemmBatchedEx)");

  SoftmaxParams p{};
  p.scores = reinterpret_cast<float*>(buf.scores);
  p.probs = buf.probs;
  p.lse = a.lse;
  p.dtype = a.dtype;
  p.batch = a.batch, p.q_heads = a.q_heads, p.q_len = a.q_len, p.kv_len = a.kv_len;
  set_score_fields(a, &p);
  cudaError_t e = softmax_launch(p, stream);
  if (e != cudaSuccess) return std::string("softmax kernel: ") + cudaGetErrorString(e);

  // Row-major O [Lq, Dv] is column-major O^T = V^T P^T.
  s = cublasGemmBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, int(a.head_dim_v), int(a.q_len),
                          int(a.kv_len), &one, const_cast<const void* const*>(ptr + 3 * n), type,
                          int(leading(a.v_strides.token, a.kv_len, a.head_dim_v)),
                          const_cast<const void* const*>(ptr + 4 * n), type, int(a.kv_len), &zero,
                          ptr + 5 * n, type, int(leading(a.o_strides.token, a.q_len, a.head_dim_v)),
                          int(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) return cublas_error("O = P V (cublasGemmBatchedEx)");
  return "";
}

}  // namespace longattn::cuda
