// torch.ops.longattn.attention's CPU and CUDA kernels in C++, registered through PyTorch's stable C
// ABI (torch/csrc/stable: a boxed kernel over StableIValues). No torch header or library is needed
// at build time: the few C functions are declared here and looked up at registration in the
// libtorch that Python already loaded. A Python kernel costs the dispatcher a conversion of the
// 16 arguments to Python objects per call; this one reads them as 64-bit words.
//
// The conversion from torch tensors to longattn_args is the one python/longattn/api.py (_Call)
// does, check for check and message for message (tests/test_torch_op.py compares the two).
#include "torch_op.hpp"

#include <dlfcn.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "longattn/longattn.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "StableIValue words are decoded as little-endian");

// torch/csrc/Exceptions.h: an exception of this class reaching Python becomes
// `python_type()(what())` (torch's CATCH_CORE_ERRORS catches it by type name). Declared as torch
// declares it, so that a longattn error keeps its longattn exception class across the dispatcher;
// where a torch does not catch it by that name it is still a std::exception (a RuntimeError with
// the library's message).
namespace torch {
struct PyTorchError : public std::exception {
  PyTorchError() = default;
  explicit PyTorchError(std::string msg_) : msg(std::move(msg_)) {}
  virtual PyObject* python_type() = 0;
  const char* what() const noexcept override { return msg.c_str(); }
  std::string msg;
};
}  // namespace torch

namespace longattn_torch {

namespace nb = nanobind;

// The stable ABI's types (torch/csrc/inductor/aoti_torch/c/shim.h, torch/csrc/stable/c/shim.h).
using StableIValue = uint64_t;
using AOTITorchError = int32_t;
using AtenTensorHandle = struct AtenTensorOpaque*;
using TorchLibraryHandle = struct TorchLibraryOpaque*;
using StringHandle = struct StringOpaque*;
using CUDAGuardHandle = struct CUDAGuardOpaque*;
using BoxedKernel = void (*)(StableIValue*, uint64_t, uint64_t);

// The stable ABI version this file is written against (torch_library_impl's
// extension_build_version): 2.10, the first with versioned registration and str arguments. Every
// encoding used here (Tensor, T?, bool, int, float, str) is that of 2.10 onwards.
constexpr uint64_t kTargetVersion = (2ull << 56) | (10ull << 48);

// The C functions of libtorch this file calls, resolved once by register_op.
struct Torch {
  uint64_t (*abi_version)();
  int32_t (*device_type_cpu)();
  int32_t (*device_type_cuda)();
  int32_t (*dtype_float32)();
  int32_t (*dtype_float16)();
  int32_t (*dtype_bfloat16)();
  int32_t (*dtype_bool)();
  int32_t (*dtype_uint8)();
  int32_t (*dtype_int32)();
  bool (*grad_mode_is_enabled)();
  AOTITorchError (*delete_tensor_object)(AtenTensorHandle);
  AOTITorchError (*new_tensor_handle)(AtenTensorHandle, AtenTensorHandle*);
  AOTITorchError (*get_data_ptr)(AtenTensorHandle, void**);
  AOTITorchError (*get_dim)(AtenTensorHandle, int64_t*);
  AOTITorchError (*get_sizes)(AtenTensorHandle, int64_t**);
  AOTITorchError (*get_strides)(AtenTensorHandle, int64_t**);
  AOTITorchError (*get_dtype)(AtenTensorHandle, int32_t*);
  AOTITorchError (*get_device_type)(AtenTensorHandle, int32_t*);
  AOTITorchError (*get_device_index)(AtenTensorHandle, int32_t*);
  AOTITorchError (*empty_strided)(int64_t, const int64_t*, const int64_t*, int32_t, int32_t,
                                  int32_t, AtenTensorHandle*);
  AOTITorchError (*library_init_impl)(const char*, const char*, const char*, uint32_t,
                                      TorchLibraryHandle*);
  AOTITorchError (*library_impl)(TorchLibraryHandle, const char*, BoxedKernel, uint64_t);
  AOTITorchError (*call_dispatcher)(const char*, const char*, StableIValue*, uint64_t);
  AOTITorchError (*string_length)(StringHandle, size_t*);
  AOTITorchError (*string_c_str)(StringHandle, const char**);
  AOTITorchError (*delete_string)(StringHandle);
  AOTITorchError (*delete_stable_ivalue)(StableIValue*);  // 2.13+; `delete` before
  // libtorch_cuda; null where torch has no CUDA (the CUDA key then keeps the Python kernel).
  AOTITorchError (*get_current_cuda_stream)(int32_t, void**);
  AOTITorchError (*create_cuda_guard)(int32_t, CUDAGuardHandle*);
  AOTITorchError (*delete_cuda_guard)(CUDAGuardHandle);
  // Codes read once: dtypes, device types.
  int32_t cpu, cuda, f32, f16, bf16, b8, u8, i32;
  std::pair<int32_t, std::string> dtype_names[20], device_names[4];
  int num_dtype_names, num_device_names;
};

Torch g_torch{};
// The longattn exception classes by longattn_status (strong references, kept for the process).
PyObject* g_error_types[8] = {};

// --- errors -------------------------------------------------------------------------------------

// A longattn error crossing torch's dispatcher: Python sees the class of its status.
struct Error : public torch::PyTorchError {
  Error(int status, std::string message) : PyTorchError(std::move(message)), status_(status) {}
  PyObject* python_type() override {
    PyObject* t = status_ >= 0 && status_ < 8 ? g_error_types[status_] : nullptr;
    if (!t) t = g_error_types[LONGATTN_INTERNAL_ERROR];
    return t ? t : PyExc_RuntimeError;
  }
  int status_;
};

[[noreturn]] void invalid(std::string message) {
  throw Error(LONGATTN_INVALID_ARGUMENT, std::move(message));
}

void check(AOTITorchError err, const char* what) {
  if (err != 0) throw std::runtime_error(std::string("longattn: torch's ") + what + " failed");
}

// --- owned handles ------------------------------------------------------------------------------

// A tensor handle this kernel owns: released exactly once, by the destructor or by release().
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(AtenTensorHandle h) : h_(h) {}
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  Tensor(Tensor&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  Tensor& operator=(Tensor&& o) noexcept {
    reset(o.release());
    return *this;
  }
  ~Tensor() {
    if (h_) g_torch.delete_tensor_object(h_);
  }
  void reset(AtenTensorHandle h) {
    if (h_) g_torch.delete_tensor_object(h_);
    h_ = h;
  }
  AtenTensorHandle get() const { return h_; }
  AtenTensorHandle release() { return std::exchange(h_, nullptr); }
  explicit operator bool() const { return h_ != nullptr; }

 private:
  AtenTensorHandle h_ = nullptr;
};

template <class T>
T word_as(StableIValue w) {
  static_assert(sizeof(T) <= sizeof(StableIValue));
  T x;
  std::memcpy(&x, &w, sizeof(T));
  return x;
}

template <class T>
StableIValue to_word(T x) {
  static_assert(sizeof(T) <= sizeof(StableIValue));
  StableIValue w = 0;
  std::memcpy(&w, &x, sizeof(T));
  return w;
}

void free_optional_box(StableIValue* box) {
  if (g_torch.delete_stable_ivalue)
    g_torch.delete_stable_ivalue(box);
  else
    delete box;  // before 2.13 libtorch boxes optionals with `new StableIValue`
}

// T? arrives as 0 (None) or as a pointer to a heap StableIValue that the kernel frees.
std::optional<StableIValue> take_optional(StableIValue w) {
  auto* box = word_as<StableIValue*>(w);
  if (!box) return std::nullopt;
  StableIValue inner = *box;
  free_optional_box(box);
  return inner;
}

std::string take_string(StringHandle s) {
  if (!s) return {};
  size_t n = 0;
  const char* data = nullptr;
  AOTITorchError e1 = g_torch.string_length(s, &n);
  AOTITorchError e2 = g_torch.string_c_str(s, &data);
  std::string out = e1 == 0 && e2 == 0 ? std::string(data, n) : std::string();
  g_torch.delete_string(s);
  check(e1 | e2, "string accessors");
  return out;
}

// The 16 arguments of the schema, owned. Decoding takes every handle into an owner before anything
// can throw, so each one is released exactly once whatever happens next.
struct Inputs {
  Tensor q, k, v, sinks, mask, block_table;
  bool causal = false;
  int64_t window_left = -1;
  double softcap = 0.0;
  std::optional<double> scale;
  std::string layout, path;
  std::optional<int64_t> memory_budget, page_size, kv_len, num_threads, num_splits;
};
constexpr uint64_t kNumArgs = 17, kNumOutputs = 2;

void decode(const StableIValue* s, Inputs* in) {
  in->q.reset(word_as<AtenTensorHandle>(s[0]));
  in->k.reset(word_as<AtenTensorHandle>(s[1]));
  in->v.reset(word_as<AtenTensorHandle>(s[2]));
  auto opt_tensor = [](StableIValue w, Tensor* t) {
    if (auto x = take_optional(w)) t->reset(word_as<AtenTensorHandle>(*x));
  };
  auto opt_int = [](StableIValue w) -> std::optional<int64_t> {
    if (auto x = take_optional(w)) return word_as<int64_t>(*x);
    return std::nullopt;
  };
  opt_tensor(s[7], &in->sinks);
  opt_tensor(s[8], &in->mask);
  opt_tensor(s[12], &in->block_table);
  if (auto x = take_optional(s[6])) in->scale = word_as<double>(*x);
  in->memory_budget = opt_int(s[11]);
  in->page_size = opt_int(s[13]);
  in->kv_len = opt_int(s[14]);
  in->num_threads = opt_int(s[15]);
  in->num_splits = opt_int(s[16]);
  in->causal = word_as<uint8_t>(s[3]) != 0;
  in->window_left = word_as<int64_t>(s[4]);
  in->softcap = word_as<double>(s[5]);
  // Both string handles are owned here: the second is taken even if the first throws.
  StringHandle layout = word_as<StringHandle>(s[9]), path = word_as<StringHandle>(s[10]);
  try {
    in->layout = take_string(layout);
  } catch (...) {
    take_string(path);
    throw;
  }
  in->path = take_string(path);
}

// --- formatting as Python prints it -------------------------------------------------------------

std::string py_tuple(const int64_t* v, int64_t n) {
  std::string s = "(";
  for (int64_t i = 0; i < n; ++i) {
    if (i) s += ", ";
    s += std::to_string(v[i]);
  }
  return s + (n == 1 ? ",)" : ")");
}

std::string py_list(std::initializer_list<int64_t> v) {
  std::string s = "[";
  bool first = true;
  for (int64_t x : v) {
    if (!first) s += ", ";
    s += std::to_string(x);
    first = false;
  }
  return s + "]";
}

// repr() of a str: quotes and escapes as Python 3 chooses them (non-ASCII bytes pass through).
std::string py_repr(const std::string& x) {
  char q = x.find('\'') != std::string::npos && x.find('"') == std::string::npos ? '"' : '\'';
  std::string s(1, q);
  for (unsigned char c : x) {
    if (c == '\\' || c == static_cast<unsigned char>(q)) {
      s += '\\';
      s += char(c);
    } else if (c == '\n') {
      s += "\\n";
    } else if (c == '\r') {
      s += "\\r";
    } else if (c == '\t') {
      s += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      static const char* hex = "0123456789abcdef";
      s += "\\x";
      s += hex[c >> 4];
      s += hex[c & 15];
    } else {
      s += char(c);
    }
  }
  return s + q;
}

// --- reading tensors (python/longattn/_tensors.py describe) -------------------------------------

struct View {
  AtenTensorHandle h = nullptr;
  void* ptr = nullptr;
  int64_t dim = 0;
  const int64_t* sizes = nullptr;
  const int64_t* strides = nullptr;
  int32_t dtype = 0;
  int32_t device = LONGATTN_DEVICE_CPU;  // longattn_device
  int32_t index = 0;                     // CUDA device index (0 on the CPU, as describe says)

  std::string shape() const { return py_tuple(sizes, dim); }
};

std::string dtype_name(int32_t code) {
  for (int i = 0; i < g_torch.num_dtype_names; ++i)
    if (g_torch.dtype_names[i].first == code) return g_torch.dtype_names[i].second;
  return "dtype " + std::to_string(code);
}

View describe(const Tensor& t, const char* name) {
  View v;
  v.h = t.get();
  int32_t type = 0;
  check(g_torch.get_device_type(v.h, &type), "aoti_torch_get_device_type");
  if (type == g_torch.cuda) {
    v.device = LONGATTN_DEVICE_CUDA;
    check(g_torch.get_device_index(v.h, &v.index), "aoti_torch_get_device_index");
  } else if (type != g_torch.cpu) {
    int32_t index = -1;
    g_torch.get_device_index(v.h, &index);
    std::string device = "device type " + std::to_string(type);
    for (int i = 0; i < g_torch.num_device_names; ++i)
      if (g_torch.device_names[i].first == type) device = g_torch.device_names[i].second;
    if (index >= 0) device += ":" + std::to_string(index);
    invalid(std::string(name) + " is on device '" + device +
            "': longattn runs on 'cpu' and 'cuda' tensors");
  }
  check(g_torch.get_data_ptr(v.h, &v.ptr), "aoti_torch_get_data_ptr");
  check(g_torch.get_dim(v.h, &v.dim), "aoti_torch_get_dim");
  int64_t *sizes = nullptr, *strides = nullptr;
  check(g_torch.get_sizes(v.h, &sizes), "aoti_torch_get_sizes");
  check(g_torch.get_strides(v.h, &strides), "aoti_torch_get_strides");
  v.sizes = sizes;
  v.strides = strides;
  check(g_torch.get_dtype(v.h, &v.dtype), "aoti_torch_get_dtype");
  return v;
}

std::string where(const View& v) {
  return v.device == LONGATTN_DEVICE_CPU ? "cpu" : "cuda:" + std::to_string(v.index);
}

void same_place(const View& view, const char* name, const View& ref) {
  if (view.device != ref.device || (view.device == LONGATTN_DEVICE_CUDA && view.index != ref.index))
    invalid(std::string(name) + " is on " + where(view) + " and q on " + where(ref) +
            ": every tensor of a call must be on q's device");
}

// (batch, head, length, dim) sizes and (batch, head, token) element strides of a 4-d tensor.
void layout_strides(const View& v, bool bhld, const std::string& layout, const char* name,
                    int64_t dims[4], longattn_strides* s) {
  if (v.dim != 4)
    invalid(std::string(name) + " has " + std::to_string(v.dim) + " dimensions, shape " +
            v.shape() + ": it must be 4-d, " + (bhld ? "[B, H, L, D]" : "[B, L, H, D]") +
            " for layout='" + layout + "'");
  if (v.sizes[3] > 1 && v.strides[3] != 1)
    invalid(std::string(name) + ".stride(-1) = " + std::to_string(v.strides[3]) +
            ": the head-dim axis must be contiguous (stride 1); other axes may have any strides");
  int h = bhld ? 1 : 2, l = bhld ? 2 : 1;
  dims[0] = v.sizes[0];
  dims[1] = v.sizes[h];
  dims[2] = v.sizes[l];
  dims[3] = v.sizes[3];
  s->batch = v.strides[0];
  s->head = v.strides[h];
  s->token = v.strides[l];
}

// --- the call -----------------------------------------------------------------------------------

// What api._Call computes for a torch call without `out` and with return_lse: the C API's
// arguments (o and lse pointers left to bind) and the outputs' shapes.
struct Converted {
  longattn_args a;
  longattn_options o;
  int32_t torch_dtype = 0;
  int32_t index = 0;
  int64_t o_sizes[4], o_strides[4], lse_sizes[3], lse_strides[3];
};

constexpr const char* kPathNames[] = {"auto", "reference", "unfused", "fused", "split_kv"};

void convert(const Inputs& in, Converted* c) {
  longattn_args& a = c->a;
  longattn_options& opt = c->o;
  longattn_args_init(&a);
  longattn_options_init(&opt);
  const bool bhld = in.layout == "bhld";
  if (!bhld && in.layout != "blhd")
    invalid("layout = " + py_repr(in.layout) +
            ": allowed values are 'bhld' ([B, H, L, D]) and 'blhd' ([B, L, H, D])");
  int32_t path = -1;
  for (int32_t i = 0; i < 5; ++i)
    if (in.path == kPathNames[i]) path = i;
  if (path < 0)
    invalid("path = " + py_repr(in.path) +
            ": allowed values are 'auto', 'reference', 'unfused', 'fused', 'split_kv'");
  const View qv = describe(in.q, "q"), kv = describe(in.k, "k"), vv = describe(in.v, "v");
  same_place(kv, "k", qv);
  same_place(vv, "v", qv);
  const Torch& T = g_torch;
  int32_t dtype = -1;
  if (qv.dtype == T.f32)
    dtype = LONGATTN_FLOAT32;
  else if (qv.dtype == T.f16)
    dtype = LONGATTN_FLOAT16;
  else if (qv.dtype == T.bf16)
    dtype = LONGATTN_BFLOAT16;
  else
    invalid("q.dtype = " + dtype_name(qv.dtype) +
            ": allowed dtypes are float32, float16 and bfloat16");
  const View* kv_views[2] = {&kv, &vv};
  for (int i = 0; i < 2; ++i) {
    const std::string name = dtype_name(kv_views[i]->dtype);
    if (name.rfind("float8", 0) == 0)  // the same words as torch_ops._kernel
      invalid(std::string(i == 0 ? "k" : "v") + ".dtype = " + name +
              ": torch.ops.longattn.attention takes no FP8 cache yet; call longattn.attention "
              "eagerly for one");
    if (kv_views[i]->dtype != qv.dtype)
      invalid(std::string(i == 0 ? "k" : "v") + ".dtype = " + name +
              " differs from q.dtype = " + dtype_name(qv.dtype) +
              ": k and v are q's dtype, or both float8_e4m3fn / float8_e5m2 (an FP8 cache)");
  }
  int64_t qd[4], kd[4], vd[4];
  layout_strides(qv, bhld, in.layout, "q", qd, &a.q_strides);
  layout_strides(kv, bhld, in.layout, "k", kd, &a.k_strides);
  layout_strides(vv, bhld, in.layout, "v", vd, &a.v_strides);
  const int64_t B = qd[0], Hq = qd[1], Lq = qd[2], Dqk = qd[3];
  int64_t Bk = kd[0], Hkv = kd[1], Lk = kd[2], Dk = kd[3];
  int64_t Bv = vd[0], Hv = vd[1], Lv = vd[2], Dv = vd[3];
  const bool paged = bool(in.block_table);
  int64_t Lk_eff = Lk;
  if (paged) {
    const View btv = describe(in.block_table, "block_table");
    same_place(btv, "block_table", qv);
    if (btv.dtype != T.i32 || btv.dim != 2 || btv.sizes[0] != B ||
        (btv.sizes[1] > 1 && btv.strides[1] != 1))
      invalid("block_table: dtype " + dtype_name(btv.dtype) + ", shape " + btv.shape() +
              ": it must be an int32 [B = " + std::to_string(B) +
              ", blocks per sequence] table with contiguous rows");
    const int64_t psize = Lk;
    if (in.page_size && *in.page_size != psize)
      invalid("page_size = " + std::to_string(*in.page_size) +
              " differs from the block pools' token axis (" + std::to_string(psize) +
              "): k and v are [num_blocks, Hkv, page_size, D] ('bhld') or [num_blocks, "
              "page_size, Hkv, D] ('blhd')");
    const int64_t capacity = btv.sizes[1] * psize;
    const int64_t kv_len = in.kv_len ? *in.kv_len : capacity;
    if (!(0 <= kv_len && kv_len <= capacity))
      invalid("kv_len = " + std::to_string(kv_len) + ": a block table of " +
              std::to_string(btv.sizes[1]) + " blocks of " + std::to_string(psize) +
              " tokens holds 0 to " + std::to_string(capacity) + " keys");
    a.block_table = static_cast<const int32_t*>(btv.ptr);
    a.block_table_stride = btv.strides[0];
    a.page_size = psize;
    a.num_blocks = Bk;
    Lk_eff = kv_len;
    Bk = Bv = B;
  } else {
    if (in.page_size)
      invalid("page_size is given without block_table: pass both for paged K/V, or neither");
    if (in.kv_len && *in.kv_len != Lk)
      invalid("kv_len = " + std::to_string(*in.kv_len) + " differs from k's length " +
              std::to_string(Lk) + "; kv_len is for paged K/V");
  }
  if (!(B == Bk && Bk == Bv) || Hkv != Hv || Lk != Lv || Dk != Dqk ||
      (paged && kv.sizes[0] != vv.sizes[0]))
    invalid("shapes do not match: q " + qv.shape() + ", k " + kv.shape() + ", v " + vv.shape() +
            " (layout '" + in.layout +
            "'): q and k need the same batch and head dim, k and v the same batch, heads and "
            "length");
  // o as torch.empty makes it (contiguous), in the caller's layout; lse [B, Hq, Lq] float32.
  const int64_t o_sizes[4] = {B, bhld ? Hq : Lq, bhld ? Lq : Hq, Dv};
  for (int d = 0; d < 4; ++d) c->o_sizes[d] = o_sizes[d];
  // torch's contiguous strides: a size-0 dim counts as 1.
  auto at_least_1 = [](int64_t n) { return n > 1 ? n : int64_t(1); };
  c->o_strides[3] = 1;
  for (int d = 2; d >= 0; --d)
    c->o_strides[d] = c->o_strides[d + 1] * at_least_1(c->o_sizes[d + 1]);
  a.o_strides.batch = c->o_strides[0];
  a.o_strides.head = c->o_strides[bhld ? 1 : 2];
  a.o_strides.token = c->o_strides[bhld ? 2 : 1];
  c->lse_sizes[0] = B, c->lse_sizes[1] = Hq, c->lse_sizes[2] = Lq;
  c->lse_strides[2] = 1;
  c->lse_strides[1] = at_least_1(Lq);
  c->lse_strides[0] = at_least_1(Hq) * at_least_1(Lq);

  if (in.sinks) {
    const View sv = describe(in.sinks, "sinks");
    same_place(sv, "sinks", qv);
    if (sv.dtype != T.f32 || sv.dim != 1 || sv.sizes[0] != Hq || (Hq > 1 && sv.strides[0] != 1))
      invalid("sinks: dtype " + dtype_name(sv.dtype) + ", shape " + sv.shape() +
              ": it must be a contiguous float32 [Hq = " + std::to_string(Hq) +
              "] tensor (one logit per query head)");
    a.sinks = static_cast<const float*>(sv.ptr);
  }
  if (in.mask) {
    const View mv = describe(in.mask, "mask");
    same_place(mv, "mask", qv);
    if (mv.dtype == T.b8 || mv.dtype == T.u8)
      a.mask.kind = LONGATTN_MASK_BOOLEAN;
    else if (mv.dtype == T.f32)
      a.mask.kind = LONGATTN_MASK_ADDITIVE;
    else
      invalid("mask.dtype = " + dtype_name(mv.dtype) +
              ": allowed are bool or uint8 (nonzero = visible) and float32 (added to the "
              "scores)");
    if (mv.dim > 4)
      invalid("mask has shape " + mv.shape() +
              ": at most 4 dimensions, broadcastable to [B, Hq, Lq, Lk] = " +
              py_list({B, Hq, Lq, Lk_eff}));
    const int64_t pad = 4 - mv.dim;
    const int64_t want[4] = {B, Hq, Lq, Lk_eff};
    for (int d = 0; d < 4; ++d) {
      const int64_t m = d < pad ? 1 : mv.sizes[d - pad];
      if (m != 1 && m != want[d])
        invalid("mask has shape " + mv.shape() + ": it must broadcast to [B, Hq, Lq, Lk] = " +
                py_list({B, Hq, Lq, Lk_eff}) + " (each dim that size or 1)");
    }
    for (int d = 0; d < 4; ++d) {
      const int64_t m = d < pad ? 1 : mv.sizes[d - pad];
      a.mask.dims[d] = m;
      a.mask.strides[d] = m > 1 ? mv.strides[d - pad] : 0;
    }
    a.mask.data = mv.ptr;
  }

  a.dtype = dtype;
  a.device = qv.device;
  a.batch = B;
  a.q_heads = Hq;
  a.kv_heads = Hkv;
  a.q_len = Lq;
  a.kv_len = Lk_eff;
  a.head_dim_qk = Dqk;
  a.head_dim_v = Dv;
  a.q = qv.ptr;
  a.k = kv.ptr;
  a.v = vv.ptr;
  a.scale = in.scale ? float(*in.scale) : 0.0f;
  a.causal = in.causal ? 1 : 0;
  a.window_left = in.window_left;
  a.softcap = float(in.softcap);
  opt.path = path;
  opt.memory_budget = in.memory_budget ? *in.memory_budget : -1;
  opt.num_threads = in.num_threads ? int32_t(*in.num_threads) : 0;
  if (in.num_splits && (*in.num_splits < INT32_MIN || *in.num_splits > INT32_MAX))
    throw Error(LONGATTN_INVALID_ARGUMENT,
                "num_splits = " + std::to_string(*in.num_splits) +
                    ": must be None (the library chooses) or an int from 1 to 1024");
  opt.num_splits = in.num_splits ? int32_t(*in.num_splits) : 0;
  c->torch_dtype = qv.dtype;
  c->index = qv.index;
}

// api._check_grad: inputs that require grad while grad mode is on are refused. The stable ABI
// reads grad mode but not requires_grad, so that read (only while grad mode is on) is a call of
// longattn::_requires_grad (torch_ops.py), which returns 0, or 1 + the index of the first of q, k,
// v that requires grad.
void check_grad(const Inputs& in) {
  if (!g_torch.grad_mode_is_enabled()) return;
  StableIValue stack[3];
  const Tensor* ts[3] = {&in.q, &in.k, &in.v};
  for (int i = 0; i < 3; ++i) {  // the call takes (and frees) new handles
    AtenTensorHandle h = nullptr;
    if (g_torch.new_tensor_handle(ts[i]->get(), &h) != 0) {
      for (int j = 0; j < i; ++j) g_torch.delete_tensor_object(word_as<AtenTensorHandle>(stack[j]));
      check(1, "aoti_torch_new_tensor_handle");
    }
    stack[i] = to_word(h);
  }
  check(g_torch.call_dispatcher("longattn::_requires_grad", "", stack, kTargetVersion),
        "call of longattn::_requires_grad");
  const int64_t which = word_as<int64_t>(stack[0]);
  if (which >= 1 && which <= 3)
    invalid(std::string(1, "qkv"[which - 1]) +
            " requires grad: longattn.attention is forward-only (no backward); call it under "
            "torch.no_grad() or pass detached tensors");
}

Tensor empty(int64_t ndim, const int64_t* sizes, const int64_t* strides, int32_t dtype,
             int32_t device_type, int32_t index) {
  AtenTensorHandle h = nullptr;
  check(g_torch.empty_strided(ndim, sizes, strides, dtype, device_type, index, &h),
        "aoti_torch_empty_strided");
  return Tensor(h);
}

void* data_ptr(const Tensor& t) {
  void* p = nullptr;
  check(g_torch.get_data_ptr(t.get(), &p), "aoti_torch_get_data_ptr");
  return p;
}

class CudaGuard {
 public:
  explicit CudaGuard(int32_t index) {
    check(g_torch.create_cuda_guard(index, &h_), "aoti_torch_create_cuda_guard");
  }
  CudaGuard(const CudaGuard&) = delete;
  CudaGuard& operator=(const CudaGuard&) = delete;
  ~CudaGuard() { g_torch.delete_cuda_guard(h_); }

 private:
  CUDAGuardHandle h_ = nullptr;
};

[[noreturn]] void raise_status(longattn_status s) { throw Error(int(s), longattn_last_error()); }

// The kernel: outputs allocated by torch (its caching allocator on CUDA, graph pools included),
// the library run on the tensors' device and torch's current stream; on CUDA the workspace, when
// the plan needs one, is a torch tensor too (so the library allocates nothing, which is what
// capture needs).
void attention(StableIValue* stack, uint64_t num_args, uint64_t num_outputs) {
  if (num_args != kNumArgs || num_outputs != kNumOutputs)
    throw std::runtime_error("longattn: torch.ops.longattn.attention's schema changed");
  Inputs in;
  decode(stack, &in);
  const bool fast =
      !in.sinks && !in.mask && !in.block_table && !in.page_size && !in.kv_len && !in.num_splits;
  if (fast) check_grad(in);  // api's per-call path checks grad before the arguments
  Converted c;
  convert(in, &c);
  if (!fast) check_grad(in);
  const bool cuda = c.a.device == LONGATTN_DEVICE_CUDA;
  const int32_t device_type = cuda ? g_torch.cuda : g_torch.cpu;
  const int32_t index = cuda ? c.index : -1;
  if (cuda && !g_torch.get_current_cuda_stream)
    throw Error(LONGATTN_UNSUPPORTED, "longattn: this torch has no CUDA stream query");
  std::optional<CudaGuard> guard;
  if (cuda) guard.emplace(c.index);
  Tensor o = empty(4, c.o_sizes, c.o_strides, c.torch_dtype, device_type, index);
  Tensor lse = empty(3, c.lse_sizes, c.lse_strides, g_torch.f32, device_type, index);
  c.a.o = data_ptr(o);
  c.a.lse = static_cast<float*>(data_ptr(lse));
  Tensor workspace;
  if (cuda) {
    check(g_torch.get_current_cuda_stream(c.index, &c.o.stream),
          "aoti_torch_get_current_cuda_stream");
    // An empty workspace says "the caller allocates": no free-memory query, no budget but
    // memory_budget; the plan's bytes then come from torch.
    alignas(64) static char empty_workspace[64];
    c.o.workspace = empty_workspace;
    c.o.workspace_bytes = 0;
    longattn_plan p{};
    longattn_status s = longattn_plan_attention(&c.a, &c.o, &p);
    if (s != LONGATTN_OK) raise_status(s);
    if (p.transient_bytes > 0) {
      const int64_t n = p.transient_bytes, one = 1;
      workspace = empty(1, &n, &one, g_torch.u8, device_type, index);
      c.o.workspace = data_ptr(workspace);
      c.o.workspace_bytes = p.transient_bytes;
    }
  }
  longattn_status s = longattn_attention(&c.a, &c.o, nullptr);
  if (s != LONGATTN_OK) raise_status(s);
  stack[0] = to_word(o.release());  // torch owns them from here
  stack[1] = to_word(lse.release());
}

// --- registration -------------------------------------------------------------------------------

template <class F>
bool find(void* lib, const char* name, F* fn, std::string* missing) {
  *fn = lib ? reinterpret_cast<F>(dlsym(lib, name)) : nullptr;
  if (!*fn && missing) *missing += (missing->empty() ? "" : ", ") + std::string(name);
  return *fn != nullptr;
}

// The library at `path` if the process loaded it, else one loaded under its file name (a torch
// whose libraries live outside torch/lib); never loads anything.
void* loaded(const std::string& path) {
  if (void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD)) return h;
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return nullptr;
  return dlopen(path.substr(slash + 1).c_str(), RTLD_NOW | RTLD_NOLOAD);
}

// Resolves the functions, then registers the kernel for the CPU key and, where libtorch_cuda has
// its functions, the CUDA key. Returns (cpu registered, cuda registered, why not): what is not
// registered keeps the Python kernel.
nb::tuple register_op(const std::string& cpu_lib, const std::string& cuda_lib, nb::tuple errors) {
  static bool done = false;
  if (done) return nb::make_tuple(false, false, "already registered");
  void* lib = loaded(cpu_lib);
  if (!lib) return nb::make_tuple(false, false, "libtorch_cpu is not loaded at " + cpu_lib);
  Torch T{};
  std::string missing;
  find(lib, "aoti_torch_abi_version", &T.abi_version, &missing);
  find(lib, "aoti_torch_device_type_cpu", &T.device_type_cpu, &missing);
  find(lib, "aoti_torch_device_type_cuda", &T.device_type_cuda, &missing);
  find(lib, "aoti_torch_dtype_float32", &T.dtype_float32, &missing);
  find(lib, "aoti_torch_dtype_float16", &T.dtype_float16, &missing);
  find(lib, "aoti_torch_dtype_bfloat16", &T.dtype_bfloat16, &missing);
  find(lib, "aoti_torch_dtype_bool", &T.dtype_bool, &missing);
  find(lib, "aoti_torch_dtype_uint8", &T.dtype_uint8, &missing);
  find(lib, "aoti_torch_dtype_int32", &T.dtype_int32, &missing);
  find(lib, "aoti_torch_grad_mode_is_enabled", &T.grad_mode_is_enabled, &missing);
  find(lib, "aoti_torch_delete_tensor_object", &T.delete_tensor_object, &missing);
  find(lib, "aoti_torch_new_tensor_handle", &T.new_tensor_handle, &missing);
  find(lib, "aoti_torch_get_data_ptr", &T.get_data_ptr, &missing);
  find(lib, "aoti_torch_get_dim", &T.get_dim, &missing);
  find(lib, "aoti_torch_get_sizes", &T.get_sizes, &missing);
  find(lib, "aoti_torch_get_strides", &T.get_strides, &missing);
  find(lib, "aoti_torch_get_dtype", &T.get_dtype, &missing);
  find(lib, "aoti_torch_get_device_type", &T.get_device_type, &missing);
  find(lib, "aoti_torch_get_device_index", &T.get_device_index, &missing);
  find(lib, "aoti_torch_empty_strided", &T.empty_strided, &missing);
  find(lib, "aoti_torch_library_init_impl", &T.library_init_impl, &missing);
  find(lib, "torch_library_impl", &T.library_impl, &missing);
  find(lib, "torch_call_dispatcher", &T.call_dispatcher, &missing);
  find(lib, "torch_string_length", &T.string_length, &missing);
  find(lib, "torch_string_c_str", &T.string_c_str, &missing);
  find(lib, "torch_delete_string", &T.delete_string, &missing);
  find(lib, "torch_delete_stable_ivalue", &T.delete_stable_ivalue, nullptr);
  if (!missing.empty())
    return nb::make_tuple(false, false, "libtorch lacks stable ABI functions: " + missing);
  const uint64_t abi = T.abi_version();
  if (abi < kTargetVersion)
    return nb::make_tuple(false, false,
                          "torch's stable ABI is " + std::to_string(abi >> 56) + "." +
                              std::to_string((abi >> 48) & 0xff) + ", older than 2.10");
  std::string cuda_missing;
  void* cuda = cuda_lib.empty() ? nullptr : loaded(cuda_lib);
  if (cuda) {
    find(cuda, "aoti_torch_get_current_cuda_stream", &T.get_current_cuda_stream, &cuda_missing);
    find(cuda, "aoti_torch_create_cuda_guard", &T.create_cuda_guard, &cuda_missing);
    find(cuda, "aoti_torch_delete_cuda_guard", &T.delete_cuda_guard, &cuda_missing);
  } else {
    cuda_missing = "libtorch_cuda is not loaded";
  }
  const bool with_cuda = cuda_missing.empty();
  if (!with_cuda) T.get_current_cuda_stream = nullptr;

  T.cpu = T.device_type_cpu();
  T.cuda = T.device_type_cuda();
  T.f32 = T.dtype_float32();
  T.f16 = T.dtype_float16();
  T.bf16 = T.dtype_bfloat16();
  T.b8 = T.dtype_bool();
  T.u8 = T.dtype_uint8();
  T.i32 = T.dtype_int32();
  // dtype names as torch prints them (str(dtype)[6:]), for the messages.
  static const char* const kNames[] = {
      "float32",   "float16",       "bfloat16",    "float64",         "bool",
      "uint8",     "int8",          "int16",       "int32",           "int64",
      "complex64", "complex128",    "uint16",      "uint32",          "uint64",
      "complex32", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"};
  for (const char* name : kNames) {
    int32_t (*getter)() = nullptr;
    if (find(lib, ("aoti_torch_dtype_" + std::string(name)).c_str(), &getter, nullptr) &&
        T.num_dtype_names < 20)
      T.dtype_names[T.num_dtype_names++] = {getter(), name};
  }
  for (const char* name : {"meta", "xpu", "mps", "hip"}) {
    int32_t (*getter)() = nullptr;
    if (find(lib, ("aoti_torch_device_type_" + std::string(name)).c_str(), &getter, nullptr))
      T.device_names[T.num_device_names++] = {getter(), name};
  }
  for (size_t i = 0; i < 8 && i < errors.size(); ++i) {
    PyObject* t = errors[i].ptr();  // only exception classes (python_type() must return one)
    if (!PyType_Check(t) || !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(t),
                                              reinterpret_cast<PyTypeObject*>(PyExc_Exception)))
      continue;
    Py_INCREF(t);
    g_error_types[i] = t;
  }
  g_torch = T;

  // The libraries stay alive for the process: deleting one would remove its kernel.
  TorchLibraryHandle cpu_handle = nullptr, cuda_handle = nullptr;
  if (T.library_init_impl("longattn", "CPU", __FILE__, __LINE__, &cpu_handle) != 0 ||
      T.library_impl(cpu_handle, "attention", &attention, kTargetVersion) != 0)
    return nb::make_tuple(false, false, "torch_library_impl failed for the CPU key");
  done = true;
  if (!with_cuda) return nb::make_tuple(true, false, cuda_missing);
  if (T.library_init_impl("longattn", "CUDA", __FILE__, __LINE__, &cuda_handle) != 0 ||
      T.library_impl(cuda_handle, "attention", &attention, kTargetVersion) != 0)
    return nb::make_tuple(true, false, "torch_library_impl failed for the CUDA key");
  return nb::make_tuple(true, true, "");
}

}  // namespace longattn_torch

void bind_torch_op(nanobind::module_& m) {
  m.def("torch_op_register", &longattn_torch::register_op, nanobind::arg("libtorch_cpu"),
        nanobind::arg("libtorch_cuda"), nanobind::arg("errors"),
        "Registers torch.ops.longattn.attention's CPU and CUDA kernels (C++, through torch's "
        "stable ABI). Returns (cpu registered, cuda registered, why not).");
}
