// The Python extension `longattn._C`: the C API, one call per entry point, with pointers passed as
// Python ints. Tensors are read on the Python side (numpy, torch and DLPack each have a cheaper
// way than one generic one), so this file only moves numbers into the C structs and back.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "longattn/longattn.h"
#include "torch_op.hpp"

namespace nb = nanobind;

namespace {

template <class T>
T* as_ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

// Fills longattn_args from the flat tuple that python/longattn/api.py builds (see _FIELDS there:
// the order is fixed by that list and this function together).
void fill_args(const nb::tuple& t, longattn_args* a, longattn_options* o) {
  longattn_args_init(a);
  longattn_options_init(o);
  size_t i = 0;
  auto next = [&]() -> nb::handle { return t[i++]; };
  auto i64 = [&]() { return nb::cast<int64_t>(next()); };
  auto ptr = [&]() { return nb::cast<uintptr_t>(next()); };
  auto f32 = [&]() { return nb::cast<float>(next()); };
  auto strides = [&](longattn_strides* s) {
    s->batch = i64();
    s->head = i64();
    s->token = i64();
  };
  if (t.size() != 54) throw std::invalid_argument("internal: argument tuple of the wrong size");
  a->dtype = int32_t(i64());
  a->device = int32_t(i64());
  a->batch = i64();
  a->q_heads = i64();
  a->kv_heads = i64();
  a->q_len = i64();
  a->kv_len = i64();
  a->head_dim_qk = i64();
  a->head_dim_v = i64();
  a->q = as_ptr<const void>(ptr());
  strides(&a->q_strides);
  a->k = as_ptr<const void>(ptr());
  strides(&a->k_strides);
  a->v = as_ptr<const void>(ptr());
  strides(&a->v_strides);
  a->o = as_ptr<void>(ptr());
  strides(&a->o_strides);
  a->lse = as_ptr<float>(ptr());
  a->scale = f32();
  a->causal = int32_t(i64());
  a->window_left = i64();
  a->softcap = f32();
  a->sinks = as_ptr<const float>(ptr());
  a->mask.kind = int32_t(i64());
  a->mask.data = as_ptr<const void>(ptr());
  for (int d = 0; d < 4; ++d) a->mask.dims[d] = i64();
  for (int d = 0; d < 4; ++d) a->mask.strides[d] = i64();
  a->block_table = as_ptr<const int32_t>(ptr());
  a->block_table_stride = i64();
  a->page_size = i64();
  a->num_blocks = i64();
  o->path = int32_t(i64());
  o->memory_budget = i64();
  o->num_threads = int32_t(i64());
  o->stream = as_ptr<void>(ptr());
  a->kv_dtype = int32_t(i64());
  a->kv_scale_per_head = int32_t(i64());
  a->k_scale = as_ptr<const float>(ptr());
  a->v_scale = as_ptr<const float>(ptr());
  o->num_splits = int32_t(i64());
}

nb::tuple plan_tuple(longattn_status status, const longattn_plan& p) {
  return nb::make_tuple(int(status), status == LONGATTN_OK ? "" : longattn_last_error(), p.ok,
                        p.path, p.threads, p.block_q, p.block_k, p.splits, p.transient_bytes,
                        p.allocated_bytes, std::string(p.reason), std::string(p.kernel));
}

// plan(args) -> (status, message, ok, path, threads, block_q, block_k, splits, transient_bytes,
//               allocated_bytes, reason, kernel)
nb::tuple plan(const nb::tuple& t) {
  longattn_args a;
  longattn_options o;
  fill_args(t, &a, &o);
  longattn_plan p{};
  longattn_status s = longattn_plan_attention(&a, &o, &p);
  return plan_tuple(s, p);
}

// A call whose arguments are fixed but for its tensors' pointers and the stream: built once per
// signature by the Python layer, so a decode step pays for reading five pointers, not forty fields.
// run() returns the plan tuple of the run. When the run needs transient memory and `alloc` is
// given, alloc(nbytes) returns (pointer, owner): the workspace comes from the caller's allocator
// (torch's caching allocator for CUDA tensors, which is also what graph capture needs). With
// `caller_allocates`, the library's own budget (the device's free memory, a driver query per
// call) does not apply either: options.memory_budget is the only limit.
class Call {
 public:
  Call(const nb::tuple& t, bool caller_allocates) : caller_allocates_(caller_allocates) {
    fill_args(t, &args_, &options_);
  }

  nb::tuple run(uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t o, uintptr_t lse, uintptr_t stream,
                nb::handle alloc) {
    longattn_args a = args_;
    longattn_options opt = options_;
    bind(q, k, v, o, lse, stream, &a, &opt);
    return run_with(a, opt, alloc);
  }

  // run() without the plan tuple: the status alone (0 = ok; the message is last_error()). What a
  // per-call Python path needs, without building a 12-item tuple and a reason string per call.
  int run_status(uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t o, uintptr_t lse,
                 uintptr_t stream, nb::handle alloc) {
    longattn_args a = args_;
    longattn_options opt = options_;
    bind(q, k, v, o, lse, stream, &a, &opt);
    longattn_plan p{};
    return int(run_plan(a, opt, alloc, &p, /*want_plan=*/false));
  }

  // This call's pointers and stream into the checked args and options.
  static void bind(uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t o, uintptr_t lse,
                   uintptr_t stream, longattn_args* a, longattn_options* opt) {
    a->q = as_ptr<const void>(q);
    a->k = as_ptr<const void>(k);
    a->v = as_ptr<const void>(v);
    a->o = as_ptr<void>(o);
    a->lse = as_ptr<float>(lse);
    opt->stream = as_ptr<void>(stream);
  }

  nb::tuple run_with(nb::handle alloc) {
    longattn_args a = args_;
    longattn_options opt = options_;
    return run_with(a, opt, alloc);
  }

 private:
  nb::tuple run_with(longattn_args& a, longattn_options& opt, nb::handle alloc) {
    longattn_plan p{};
    longattn_status s = run_plan(a, opt, alloc, &p);
    return plan_tuple(s, p);
  }

  // want_plan = false: the run does not hand back its plan, so the library skips formatting the
  // reason (p then only holds what the allocation step planned).
  longattn_status run_plan(longattn_args& a, longattn_options& opt, nb::handle alloc,
                           longattn_plan* p, bool want_plan = true) {
    nb::object owner;
    if (!alloc.is_none()) {
      // An empty workspace says "the caller allocates": no free-memory query, no budget but
      // options.memory_budget. It is never read (0 bytes); the plan's bytes come from alloc.
      alignas(64) static char empty_workspace[64];
      if (caller_allocates_) opt.workspace = empty_workspace, opt.workspace_bytes = 0;
      longattn_status s = longattn_plan_attention(&a, &opt, p);
      if (s != LONGATTN_OK) return s;
      if (p->transient_bytes > 0) {
        nb::tuple got = nb::cast<nb::tuple>(alloc(p->transient_bytes));
        opt.workspace = as_ptr<void>(nb::cast<uintptr_t>(got[0]));
        opt.workspace_bytes = p->transient_bytes;
        owner = got[1];
      }
    }
    longattn_status s;
    {
      nb::gil_scoped_release release;
      s = longattn_attention(&a, &opt, want_plan ? p : nullptr);
    }
    return s;
  }

  longattn_args args_;
  longattn_options options_;
  bool caller_allocates_;
};

// The per-call path of torch tensors without sinks, mask, out or paging, in one call: reads q, k
// and v (shape, strides, dtype, device), finds the checked Call of that signature, allocates o
// (and lse) with torch (new_empty, so torch's allocator and device), runs, and returns o or
// (o, lse). It only calls what torch's Python API offers, through the C API (no torch headers at
// build time); what it saves over the same reads in Python is the interpreter's work around them
// and a key tuple hashed and compared per call. A signature seen for the first time is checked by
// `make_entry` (python/longattn/api.py); None asks the caller to take its Python path (inputs
// that require grad, tensors that are not 4-d, a CUDA device other than the current one).
class TorchCalls {
 public:
  TorchCalls(nb::object make_entry, nb::object raise_status, size_t max_entries)
      : make_entry_(std::move(make_entry)),
        raise_status_(std::move(raise_status)),
        max_entries_(max_entries) {}

  nb::object run(nb::handle q, nb::handle k, nb::handle v, nb::handle opts, bool return_lse) {
    static PyObject* const s_requires_grad = PyUnicode_InternFromString("requires_grad");
    static PyObject* const s_shape = PyUnicode_InternFromString("shape");
    static PyObject* const s_stride = PyUnicode_InternFromString("stride");
    static PyObject* const s_dtype = PyUnicode_InternFromString("dtype");
    static PyObject* const s_get_device = PyUnicode_InternFromString("get_device");
    static PyObject* const s_is_cuda = PyUnicode_InternFromString("is_cuda");
    static PyObject* const s_new_empty = PyUnicode_InternFromString("new_empty");
    static PyObject* const s_data_ptr = PyUnicode_InternFromString("data_ptr");
    static PyObject* const s_dtype_kwnames = Py_BuildValue("(s)", "dtype");

    Key key{};
    size_t n = 0;
    const nb::handle ts[3] = {q, k, v};
    for (nb::handle t : ts) {
      nb::object rg = steal(PyObject_GetAttr(t.ptr(), s_requires_grad));
      if (rg.ptr() != Py_False) return nb::none();  // the Python path checks grad mode
      nb::object shape = steal(PyObject_GetAttr(t.ptr(), s_shape));
      nb::object stride = call_method(t, s_stride);
      if (!PyTuple_Check(shape.ptr()) || !PyTuple_Check(stride.ptr()) ||
          PyTuple_Size(shape.ptr()) != 4 || PyTuple_Size(stride.ptr()) != 4)
        return nb::none();  // the Python path says what is wrong
      for (Py_ssize_t d = 0; d < 4; ++d) key[n++] = as_i64(PyTuple_GetItem(shape.ptr(), d));
      for (Py_ssize_t d = 0; d < 4; ++d) key[n++] = as_i64(PyTuple_GetItem(stride.ptr(), d));
      nb::object dtype = steal(PyObject_GetAttr(t.ptr(), s_dtype));
      key[n++] = int64_t(reinterpret_cast<uintptr_t>(dtype.ptr()));  // dtypes are singletons
      key[n++] = as_i64(call_method(t, s_get_device).ptr());
      key[n++] = steal(PyObject_GetAttr(t.ptr(), s_is_cuda)).ptr() == Py_True;
    }
    Py_hash_t opts_hash = PyObject_Hash(opts.ptr());
    if (opts_hash == -1) throw nb::python_error();
    key[n++] = int64_t(opts_hash);
    key[n++] = return_lse;

    auto it = entries_.find(key);
    if (it == entries_.end() || !equal(it->second.opts, opts)) {
      Entry e = new_entry(q, k, v, opts, return_lse);
      if (entries_.size() >= max_entries_) entries_.clear();
      it = entries_.insert_or_assign(key, std::move(e)).first;
    }
    // Copies: any Python call below (torch's, the allocator's) or another thread while the GIL
    // is released may replace the entry.
    const Entry e = it->second;
    const int64_t index = key[9];  // q.get_device()
    uintptr_t stream = 0;
    if (!e.alloc.is_none()) {  // CUDA: on the current device, on torch's current stream
      if (as_i64(e.get_device().ptr()) != index) return nb::none();
      stream = as_ptr_int(e.current_stream(index).ptr());
    }

    nb::object o = new_empty(q, e.o_args, nullptr, s_new_empty);
    nb::object lse;
    if (return_lse) lse = new_empty(q, e.lse_args, s_dtype_kwnames, s_new_empty);
    int status = e.c->run_status(
        as_ptr_int(call_method(q, s_data_ptr).ptr()), as_ptr_int(call_method(k, s_data_ptr).ptr()),
        as_ptr_int(call_method(v, s_data_ptr).ptr()), as_ptr_int(call_method(o, s_data_ptr).ptr()),
        return_lse ? as_ptr_int(call_method(lse, s_data_ptr).ptr()) : 0, stream, e.alloc);
    if (status != LONGATTN_OK) {
      raise_status_(status, std::string(longattn_last_error()));
      throw std::runtime_error("internal: raise_status returned");
    }
    if (return_lse) return nb::make_tuple(o, lse);
    return o;
  }

  size_t size() const { return entries_.size(); }
  void clear() { entries_.clear(); }

  // Garbage-collector support: make_entry and raise_status are functions of the module that
  // holds this object, a cycle only the collector can break (else nanobind reports leaks).
  static int tp_traverse(PyObject* self, visitproc visit, void* arg) {
    Py_VISIT(Py_TYPE(self));
    if (!nb::inst_ready(self)) return 0;
    TorchCalls* c = nb::inst_ptr<TorchCalls>(self);
    Py_VISIT(c->make_entry_.ptr());
    Py_VISIT(c->raise_status_.ptr());
    for (auto& [key, e] : c->entries_) {
      for (const nb::object* x :
           {&e.opts, &e.call, &e.alloc, &e.o_args, &e.lse_args, &e.get_device, &e.current_stream})
        Py_VISIT(x->ptr());
    }
    return 0;
  }
  static int tp_clear(PyObject* self) {
    TorchCalls* c = nb::inst_ptr<TorchCalls>(self);
    std::unordered_map<Key, Entry, KeyHash> entries;
    entries.swap(c->entries_);
    nb::object a = std::move(c->make_entry_), b = std::move(c->raise_status_);
    c->make_entry_ = nb::none();
    c->raise_status_ = nb::none();
    return 0;
  }

 private:
  // Per tensor: 4 sizes, 4 strides, dtype, device index, is_cuda; then the options' hash and
  // return_lse.
  using Key = std::array<int64_t, 3 * 11 + 2>;
  struct KeyHash {
    size_t operator()(const Key& key) const {
      uint64_t h = 1469598103934665603ull;
      for (int64_t x : key) h = (h ^ uint64_t(x)) * 1099511628211ull;
      return size_t(h ^ (h >> 32));
    }
  };
  struct Entry {
    nb::object opts, call, alloc, o_args, lse_args, get_device, current_stream;
    Call* c = nullptr;
  };

  static nb::object steal(PyObject* p) {
    if (!p) throw nb::python_error();
    return nb::steal(p);
  }
  static nb::object call_method(nb::handle self, PyObject* name) {
    PyObject* args[1] = {self.ptr()};
    return steal(
        PyObject_VectorcallMethod(name, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  }
  static int64_t as_i64(PyObject* p) {
    long long x = PyLong_AsLongLong(p);
    if (x == -1 && PyErr_Occurred()) throw nb::python_error();
    return int64_t(x);
  }
  static uintptr_t as_ptr_int(PyObject* p) {
    unsigned long long x = PyLong_AsUnsignedLongLong(p);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) throw nb::python_error();
    return uintptr_t(x);
  }
  static bool equal(const nb::object& a, nb::handle b) {
    int r = PyObject_RichCompareBool(a.ptr(), b.ptr(), Py_EQ);
    if (r < 0) throw nb::python_error();
    return r == 1;
  }
  // self.new_empty(*sizes[, dtype]): `args` is (None, *sizes[, dtype]); slot 0 takes self.
  static nb::object new_empty(nb::handle self, const nb::object& args, PyObject* kwnames,
                              PyObject* name) {
    Py_ssize_t n = PyTuple_Size(args.ptr());
    PyObject* argv[8];
    argv[0] = self.ptr();
    for (Py_ssize_t i = 1; i < n; ++i) argv[i] = PyTuple_GetItem(args.ptr(), i);
    Py_ssize_t nargs = n - (kwnames ? PyTuple_Size(kwnames) : 0);
    return steal(PyObject_VectorcallMethod(name, argv, size_t(nargs), kwnames));
  }

  Entry new_entry(nb::handle q, nb::handle k, nb::handle v, nb::handle opts, bool return_lse) {
    // make_entry -> (Call, o_args, lse_args, alloc or None, get_device, current_stream)
    nb::tuple t = nb::cast<nb::tuple>(make_entry_(q, k, v, opts, return_lse));
    Entry e;
    e.opts = nb::borrow(opts);
    e.call = t[0];
    e.c = nb::cast<Call*>(e.call);
    e.o_args = t[1];
    e.lse_args = t[2];
    e.alloc = t[3];
    e.get_device = t[4];
    e.current_stream = t[5];
    if (PyTuple_Size(e.o_args.ptr()) > 8 || PyTuple_Size(e.lse_args.ptr()) > 8)
      throw std::invalid_argument("internal: new_empty arguments");
    return e;
  }

  nb::object make_entry_, raise_status_;
  size_t max_entries_;
  std::unordered_map<Key, Entry, KeyHash> entries_;
};

// merge_states over host float32 arrays (pointers), shapes given.
nb::tuple merge_states(int64_t n, int64_t rows, int64_t dv, uintptr_t o_parts, uintptr_t lse_parts,
                       uintptr_t o, uintptr_t lse) {
  longattn_status s;
  {
    nb::gil_scoped_release release;
    s = longattn_merge_states(n, rows, dv, as_ptr<const float>(o_parts),
                              as_ptr<const float>(lse_parts), as_ptr<float>(o), as_ptr<float>(lse));
  }
  return nb::make_tuple(int(s), s == LONGATTN_OK ? "" : longattn_last_error());
}

nb::dict device_query(int32_t device) {
  longattn_device_info info{};
  longattn_status s = longattn_device_query(device, &info);
  nb::dict d;
  d["kind"] = device == LONGATTN_DEVICE_CPU ? "cpu" : "cuda";
  d["available"] = s == LONGATTN_OK && info.available != 0;
  d["name"] = std::string(info.name);
  d["features"] = std::string(info.features);
  d["cores"] = info.cores;
  d["memory_total"] = info.memory_total;
  d["memory_free"] = info.memory_free;
  return d;
}

// A DLPack (or buffer-protocol) tensor as (pointer, shape, strides in elements, dtype code,
// bits, lanes, device type, device id). dtype code: DLPack's (0 int, 1 uint, 2 float, 4 bfloat,
// 6 bool). The owner keeps the exporter's capsule alive for as long as the caller holds it.
nb::tuple dlpack_info(nb::ndarray<> arr) {
  nb::list shape, strides;
  for (size_t d = 0; d < arr.ndim(); ++d) {
    shape.append(arr.shape(d));
    strides.append(arr.stride(d));
  }
  nb::dlpack::dtype t = arr.dtype();
  return nb::make_tuple(reinterpret_cast<uintptr_t>(arr.data()), nb::tuple(shape),
                        nb::tuple(strides), int(t.code), int(t.bits), int(t.lanes),
                        arr.device_type(), arr.device_id(), nb::cast(arr));
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "longattn's C API (see the longattn package for the array API)";
  m.def("version", [] { return std::string(longattn_version()); });
  m.def("plan", &plan);
  nb::class_<Call>(m, "Call")
      .def(nb::init<const nb::tuple&, bool>())
      .def("run", &Call::run, nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("o"),
           nb::arg("lse"), nb::arg("stream"), nb::arg("alloc").none())
      .def("run_status", &Call::run_status, nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("o"),
           nb::arg("lse"), nb::arg("stream"), nb::arg("alloc").none());
  m.def("last_error", [] { return std::string(longattn_last_error()); });
  static PyType_Slot torch_calls_slots[] = {
      {Py_tp_traverse, reinterpret_cast<void*>(&TorchCalls::tp_traverse)},
      {Py_tp_clear, reinterpret_cast<void*>(&TorchCalls::tp_clear)},
      {0, nullptr}};
  nb::class_<TorchCalls>(m, "TorchCalls", nb::type_slots(torch_calls_slots))
      .def(nb::init<nb::object, nb::object, size_t>())
      .def("run", &TorchCalls::run, nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("opts"),
           nb::arg("return_lse"))
      .def("__len__", &TorchCalls::size)
      .def("clear", &TorchCalls::clear);
  m.def(
      "attention",
      [](const nb::tuple& t, bool caller_allocates, nb::handle alloc) {
        Call c(t, caller_allocates);
        return c.run_with(alloc);
      },
      nb::arg("args"), nb::arg("caller_allocates"), nb::arg("alloc").none());
  m.def("merge_states", &merge_states);
  m.def("device_query", &device_query);
  m.def("dlpack_info", &dlpack_info);
  bind_torch_op(m);
}
