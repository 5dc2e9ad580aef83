// The Python extension `longattn._C`: the C API, one call per entry point, with pointers passed as
// Python ints. Tensors are read on the Python side (numpy, torch and DLPack each have a cheaper
// way than one generic one), so this file only moves numbers into the C structs and back.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <cstdint>
#include <string>

#include "longattn/longattn.h"

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
  if (t.size() != 49) throw std::invalid_argument("internal: argument tuple of the wrong size");
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
}

nb::tuple plan_tuple(longattn_status status, const longattn_plan& p) {
  return nb::make_tuple(int(status), status == LONGATTN_OK ? "" : longattn_last_error(), p.ok,
                        p.path, p.threads, p.block_q, p.block_k, p.splits, p.transient_bytes,
                        p.allocated_bytes, std::string(p.reason));
}

// plan(args) -> (status, message, ok, path, threads, block_q, block_k, splits, transient_bytes,
//               allocated_bytes, reason)
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
    a.q = as_ptr<const void>(q);
    a.k = as_ptr<const void>(k);
    a.v = as_ptr<const void>(v);
    a.o = as_ptr<void>(o);
    a.lse = as_ptr<float>(lse);
    opt.stream = as_ptr<void>(stream);
    return run_with(a, opt, alloc);
  }

  nb::tuple run_with(nb::handle alloc) {
    longattn_args a = args_;
    longattn_options opt = options_;
    return run_with(a, opt, alloc);
  }

 private:
  nb::tuple run_with(longattn_args& a, longattn_options& opt, nb::handle alloc) {
    longattn_plan p{};
    nb::object owner;
    if (!alloc.is_none()) {
      // An empty workspace says "the caller allocates": no free-memory query, no budget but
      // options.memory_budget. It is never read (0 bytes); the plan's bytes come from alloc.
      alignas(64) static char empty_workspace[64];
      if (caller_allocates_) opt.workspace = empty_workspace, opt.workspace_bytes = 0;
      longattn_status s = longattn_plan_attention(&a, &opt, &p);
      if (s != LONGATTN_OK) return plan_tuple(s, p);
      if (p.transient_bytes > 0) {
        nb::tuple got = nb::cast<nb::tuple>(alloc(p.transient_bytes));
        opt.workspace = as_ptr<void>(nb::cast<uintptr_t>(got[0]));
        opt.workspace_bytes = p.transient_bytes;
        owner = got[1];
      }
    }
    longattn_status s;
    {
      nb::gil_scoped_release release;
      s = longattn_attention(&a, &opt, &p);
    }
    return plan_tuple(s, p);
  }

  longattn_args args_;
  longattn_options options_;
  bool caller_allocates_;
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
           nb::arg("lse"), nb::arg("stream"), nb::arg("alloc").none());
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
}
