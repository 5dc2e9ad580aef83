/* longattn — fused attention for long-context prefill. Stable C API.
 *
 * Every function returns a longattn_status; on failure longattn_last_error() gives a message that
 * names the offending argument and what is allowed. No C++ exception ever crosses this API.
 * Structs only ever gain fields at their end; always fill them with the *_init functions first.
 *
 * The operation (see README.md, "Semantics"):
 *   O[b,h,i,:] = sum_j softmax_j(s(b,h,i,j)) * V[b,h/g,j,:],  g = q_heads / kv_heads
 *   s(b,h,i,j) = mask(softcap(scale * Q[b,h,i,:] . K[b,h/g,j,:]))
 * Shapes: Q [B,Hq,Lq,Dqk], K [B,Hkv,Lk,Dqk], V [B,Hkv,Lk,Dv], O [B,Hq,Lq,Dv], LSE [B,Hq,Lq] float32
 * contiguous. Causal is bottom-right aligned: query i sees key j iff j <= i + (Lk - Lq).
 */
#ifndef LONGATTN_LONGATTN_H
#define LONGATTN_LONGATTN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define LONGATTN_API __declspec(dllexport)
#else
#define LONGATTN_API __attribute__((visibility("default")))
#endif

typedef enum longattn_status {
  LONGATTN_OK = 0,
  LONGATTN_INVALID_ARGUMENT = 1, /* a bad shape, stride, pointer, dtype, mask, option */
  LONGATTN_UNSUPPORTED = 2,      /* valid, but no path of this build/device runs it */
  LONGATTN_OVER_BUDGET = 3,      /* every path that could run it needs more than the budget */
  LONGATTN_OUT_OF_MEMORY = 4,    /* an allocation failed */
  LONGATTN_DEVICE_ERROR = 5,     /* the device (CUDA) reported an error */
  LONGATTN_INTERNAL_ERROR = 6
} longattn_status;

typedef enum longattn_dtype {
  LONGATTN_FLOAT32 = 0,
  LONGATTN_FLOAT16 = 1,
  LONGATTN_BFLOAT16 = 2,
  LONGATTN_FLOAT8_E4M3 = 3, /* OCP FP8 e4m3 ("fn": no infinities, 0x7f/0xff are NaN); kv_dtype */
  LONGATTN_FLOAT8_E5M2 = 4  /* OCP FP8 e5m2 (IEEE-like); kv_dtype */
} longattn_dtype;

typedef enum longattn_device {
  LONGATTN_DEVICE_CPU = 0, /* pointers are host memory */
  LONGATTN_DEVICE_CUDA = 1 /* pointers are device memory of the current CUDA device */
} longattn_device;

typedef enum longattn_path {
  LONGATTN_PATH_AUTO = 0,      /* let the router choose */
  LONGATTN_PATH_REFERENCE = 1, /* float64, naive; for tests */
  LONGATTN_PATH_UNFUSED = 2,   /* scores materialized, as runtimes without a fused kernel do */
  LONGATTN_PATH_FUSED = 3,     /* tiled online softmax, memory independent of kv_len */
  LONGATTN_PATH_SPLIT_KV = 4   /* fused over K/V slices in parallel, merged by LSE (decode) */
} longattn_path;

typedef enum longattn_mask_kind {
  LONGATTN_MASK_NONE = 0,
  LONGATTN_MASK_BOOLEAN = 1, /* uint8: nonzero = the key is visible */
  LONGATTN_MASK_ADDITIVE = 2 /* float32 added to the (softcapped) score; -INFINITY hides a key */
} longattn_mask_kind;

/* Element strides (not bytes) of a [B, H, L, D] tensor; the D axis is always contiguous. */
typedef struct longattn_strides {
  int64_t batch;
  int64_t head;
  int64_t token;
} longattn_strides;

/* An optional mask broadcastable to [B, Hq, Lq, Lk]: each dims[i] is that size or 1. */
typedef struct longattn_mask {
  int32_t kind;       /* longattn_mask_kind */
  const void* data;   /* uint8 for BOOLEAN, float32 for ADDITIVE */
  int64_t dims[4];    /* B, Hq, Lq, Lk (or 1 to broadcast) */
  int64_t strides[4]; /* in elements; ignored where dims[i] == 1 */
} longattn_mask;

/* The one arguments struct that crosses every layer of the library. */
typedef struct longattn_args {
  const void* q;  /* [B, Hq, Lq, Dqk] */
  const void* k;  /* [B, Hkv, Lk, Dqk] */
  const void* v;  /* [B, Hkv, Lk, Dv]; may equal k (k == v layers) */
  void* o;        /* [B, Hq, Lq, Dv], written */
  float* lse;     /* optional [B, Hq, Lq] contiguous float32, natural log; NULL to skip */
  int32_t dtype;  /* longattn_dtype of q, k, v, o */
  int32_t device; /* longattn_device where the pointers live */
  int64_t batch, q_heads, kv_heads, q_len, kv_len, head_dim_qk, head_dim_v;
  longattn_strides q_strides, k_strides, v_strides, o_strides;
  float scale;         /* 0 means 1/sqrt(head_dim_qk) */
  int32_t causal;      /* bottom-right aligned */
  int64_t window_left; /* -1: none; W >= 0: query i also needs j >= i + (Lk-Lq) - W */
  float softcap;       /* 0: none; > 0: s = softcap * tanh(s / softcap) */
  const float* sinks;  /* optional [Hq] float32 logits that join the softmax denominator */
  longattn_mask mask;
  /* Optional paged K/V (a KV cache of fixed-size blocks). When block_table is not NULL, token j of
   * batch b lives in block block_table[b * block_table_stride + j / page_size], at slot
   * j % page_size; k and v point at the block pools, whose strides are {batch: one block,
   * head, token: one slot}. Blocks are num_blocks; entries must be in [0, num_blocks): a run
   * refuses others (on CUDA it reads the table on options.stream and waits for it), except a CUDA
   * run captured into a graph, which reads the table only when the graph runs: there an id out of
   * the pool reads nothing outside it and makes all O and LSE values of its batch entry NaN. */
  const int32_t* block_table;
  int64_t block_table_stride;
  int64_t page_size;
  int64_t num_blocks;
  /* An FP8 KV cache. kv_dtype 0 (the default) or equal to dtype: K and V are `dtype`, and the
   * scales below must be NULL. LONGATTN_FLOAT8_E4M3 / _E5M2: K and V hold FP8 elements (strides
   * still in elements) whose values are k * k_scale and v * v_scale; q, o stay `dtype`. A scale is
   * NULL (1.0), one float32 (kv_scale_per_head = 0) or kv_heads of them, one per KV head
   * (kv_scale_per_head = 1), in the memory of `device`. */
  int32_t kv_dtype;
  int32_t kv_scale_per_head;
  const float* k_scale;
  const float* v_scale;
} longattn_args;

typedef void (*longattn_log_fn)(void* user, const char* message);

typedef struct longattn_options {
  int32_t path;          /* longattn_path; AUTO lets the router choose */
  int64_t memory_budget; /* bytes of transient memory allowed; -1: what the device has available
                            (no limit with a workspace or during CUDA graph capture: nothing is
                            allocated then) */
  int32_t num_threads;   /* CPU threads; 0: all cores */
  void* workspace;       /* optional caller memory for transient data (same device as args);
                            required for a CUDA run captured into a graph that needs any */
  int64_t workspace_bytes;
  longattn_log_fn log; /* optional: receives the router's decision and reason */
  void* log_user;
  void* stream;       /* CUDA: cudaStream_t (NULL = default stream) */
  int32_t num_splits; /* split_kv's K/V slices per row: 0 lets the backend choose; 1 to 1024 fixes
                         it (slices past a row's last key tile are empty), and AUTO then takes
                         split_kv (2 and up) or never splits (1). Other paths need 0 or 1. */
} longattn_options;

/* What the router decided, before anything runs. */
typedef struct longattn_plan {
  int32_t ok;     /* 1 if `path` can run these args within the budget */
  int32_t status; /* longattn_status when !ok */
  int32_t path;
  int32_t device;
  int32_t threads;         /* CPU worker threads */
  int32_t block_q;         /* query rows per tile */
  int32_t block_k;         /* keys per tile */
  int32_t splits;          /* split_kv: K/V slices per row */
  int64_t transient_bytes; /* exactly what the run allocates (or takes from the workspace) */
  int64_t allocated_bytes; /* after longattn_attention: what the run took (== transient_bytes) */
  char reason[512];
  char kernel[64]; /* the kernel the path runs, e.g. "sm90a wgmma+TMA", "cpu amx-bf16 tiles";
                      filled with reason */
} longattn_plan;

typedef struct longattn_device_info {
  int32_t device;                    /* longattn_device */
  int32_t available;                 /* 1 if this build and machine can run on it */
  char name[128];                    /* CPU model or GPU name */
  char features[128];                /* CPU: the kernels it runs, then its flags, e.g.
                                        "kernels=avx2 avx2 fma f16c"; CUDA: "sm_90" */
  int32_t cores;                     /* CPU cores or CUDA SMs */
  int64_t memory_total, memory_free; /* bytes; 0 if unknown */
} longattn_device_info;

LONGATTN_API const char* longattn_version(void);
LONGATTN_API const char* longattn_last_error(void); /* this thread's last message, or "" */
LONGATTN_API const char* longattn_status_string(longattn_status status);
LONGATTN_API const char* longattn_path_name(int32_t path);
LONGATTN_API const char* longattn_dtype_name(int32_t dtype);

/* Contiguous strides and library defaults (no mask, no window, scale 0, AUTO path). */
LONGATTN_API void longattn_args_init(longattn_args* args);
LONGATTN_API void longattn_set_contiguous_strides(longattn_args* args);
LONGATTN_API void longattn_options_init(longattn_options* options);

LONGATTN_API longattn_status longattn_device_query(int32_t device, longattn_device_info* info);

/* Validates args and decides the path; runs nothing. *plan is filled even when the answer is no. */
LONGATTN_API longattn_status longattn_plan_attention(const longattn_args* args,
                                                     const longattn_options* options,
                                                     longattn_plan* plan);

/* Exact transient bytes of one path (AUTO: the router's choice) for these args and options. */
LONGATTN_API longattn_status longattn_transient_bytes(const longattn_args* args, int32_t path,
                                                      const longattn_options* options,
                                                      int64_t* bytes);

/* Plans and runs. plan may be NULL; if given it receives the decision. */
LONGATTN_API longattn_status longattn_attention(const longattn_args* args,
                                                const longattn_options* options,
                                                longattn_plan* plan);

/* A plan kept for many calls, for runtimes that call attention once per layer per step: the
 * router's decision (path, kernel, tiles) is made once and reused, so a call costs its checks and
 * its launch. Any args may be run with it: a call whose args differ from the decision's only in
 * their pointers (q, k, v, o, lse, sinks, mask.data, block_table; aligned alike, and NULL where
 * they were NULL) reuses it; one that differs in anything else (kv_len of the next decode step,
 * strides, another CUDA device, a workspace where the decision had none or the reverse) is
 * planned again, with the prepared options, and that decision is kept for the next call.
 * options.path, memory_budget, num_threads and num_splits are the prepared ones; a run's own
 * options give stream, workspace, workspace_bytes and log (NULL: those of prepare).
 * A reused decision does not read free memory again: a run that needs transient bytes then
 * allocates them and fails with LONGATTN_OUT_OF_MEMORY if it cannot. Safe to share between
 * threads; runs that use prepare's workspace (options NULL) take turns, as they share its bytes.
 * plan (optional) receives the decision of the call. */
typedef struct longattn_prepared longattn_prepared;

LONGATTN_API longattn_status longattn_prepare(const longattn_args* args,
                                              const longattn_options* options,
                                              longattn_prepared** prepared, longattn_plan* plan);
LONGATTN_API longattn_status longattn_run_prepared(longattn_prepared* prepared,
                                                   const longattn_args* args,
                                                   const longattn_options* options,
                                                   longattn_plan* plan);
LONGATTN_API void longattn_prepared_free(longattn_prepared* prepared); /* NULL is a no-op */

/* Combines n partial results over disjoint key sets through their LSEs (host memory, float32):
 *   o_parts [n, rows, dv], lse_parts [n, rows]  ->  o [rows, dv], lse [rows] (lse may be NULL).
 * A part with LSE = -inf contributes nothing; if all are -inf the row is O = 0, LSE = -inf. */
LONGATTN_API longattn_status longattn_merge_states(int64_t n, int64_t rows, int64_t dv,
                                                   const float* o_parts, const float* lse_parts,
                                                   float* o, float* lse);

#ifdef __cplusplus
}
#endif
#endif /* LONGATTN_LONGATTN_H */
