"""torch.ops.longattn.attention: the array API as a PyTorch operator, so that torch.compile
(fullgraph), CUDA-graph capture and FakeTensor tracing see one opaque, shape-known call.

Defined with torch.library's low-level API (define / register_fake). Its CPU and CUDA kernels are
C++ (python/src/torch_op.cpp), registered through PyTorch's stable C ABI (torch 2.10 or newer): the
dispatcher hands them the arguments without making Python objects of them. Where that cannot be
registered (an older torch, a missing function, LONGATTN_TORCH_OP=python), the Python kernel
below serves, and one log line says why. The op always returns (o, lse); lse is float32
[B, Hq, Lq]. Forward only: inputs that require grad while grad mode is on are refused. The stable
ABI cannot read requires_grad, so while grad mode is on the C++ kernel asks longattn::_requires_grad
(a Python op, about 6 us); under torch.no_grad() or inference_mode it does not.
"""

import logging
import os
import sys

import torch

from . import _C, _errors, api

_SCHEMA = (
    "attention(Tensor q, Tensor k, Tensor v, *, bool causal=False, int window_left=-1, "
    "float softcap=0.0, float? scale=None, Tensor? sinks=None, Tensor? mask=None, "
    "str layout='bhld', str path='auto', int? memory_budget=None, Tensor? block_table=None, "
    "int? page_size=None, int? kv_len=None, int? num_threads=None, int? num_splits=None) "
    "-> (Tensor, Tensor)")

_lib = torch.library.Library("longattn", "DEF")
_lib.define(_SCHEMA)


def _kernel(q, k, v, *, causal=False, window_left=-1, softcap=0.0, scale=None, sinks=None,
            mask=None, layout="bhld", path="auto", memory_budget=None, block_table=None,
            page_size=None, kv_len=None, num_threads=None, num_splits=None):
    for x, name in ((k, "k"), (v, "v")):
        dtype = str(x.dtype)[6:]
        if dtype.startswith("float8"):  # the same words as the C++ kernel (torch_op.cpp)
            raise api.InvalidArgumentError(
                f"{name}.dtype = {dtype}: torch.ops.longattn.attention takes no FP8 cache yet; "
                f"call longattn.attention eagerly for one")
    if sinks is None and mask is None and block_table is None and page_size is None and (
            kv_len is None and num_splits is None):
        opts = (causal, window_left, softcap, scale, layout, path, memory_budget, num_threads)
        r = api._fast_run(q, k, v, opts, True)  # the extension's per-call path
        return api._run_torch_cached(q, k, v, opts, True) if r is None else r
    return api.run(q, k, v, causal, window_left, softcap, scale, sinks, mask, layout, None, True,
                   path, memory_budget, block_table, page_size, kv_len, num_threads,
                   num_splits=num_splits)


def _fake(q, k, v, *, causal=False, window_left=-1, softcap=0.0, scale=None, sinks=None,
          mask=None, layout="bhld", path="auto", memory_budget=None, block_table=None,
          page_size=None, kv_len=None, num_threads=None, num_splits=None):
    if q.dim() != 4 or v.dim() != 4:
        raise api.InvalidArgumentError(
            f"q and v must be 4-d (got {q.dim()} and {v.dim()} dimensions)")
    if layout == "bhld":
        B, Hq, Lq, _ = q.shape
        o_shape = (B, Hq, Lq, v.shape[3])
    else:
        B, Lq, Hq, _ = q.shape
        o_shape = (B, Lq, Hq, v.shape[3])
    return q.new_empty(o_shape), q.new_empty((B, Hq, Lq), dtype=torch.float32)


# The C++ kernel's read of requires_grad (the stable ABI has none), called only while grad mode is
# on: 0, or 1 + the index of the first of q, k, v that requires grad.
_lib.define("_requires_grad(Tensor q, Tensor k, Tensor v) -> int")


def _requires_grad(q, k, v):
    return 1 if q.requires_grad else 2 if k.requires_grad else 3 if v.requires_grad else 0


_lib.impl("_requires_grad", _requires_grad, "CompositeExplicitAutograd")


def _register_native():
    """(CPU kernel is C++, CUDA kernel is C++, why not)."""
    if os.environ.get("LONGATTN_TORCH_OP", "") == "python":
        return False, False, "LONGATTN_TORCH_OP=python"
    if not hasattr(_C, "torch_op_register"):
        return False, False, "this build of longattn._C has no C++ kernel"
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    ext = ".dylib" if sys.platform == "darwin" else ".so"
    cuda_lib = os.path.join(lib_dir, "libtorch_cuda" + ext)
    errors = tuple(_errors._BY_STATUS.get(s, _errors.Error) for s in range(8))
    return _C.torch_op_register(os.path.join(lib_dir, "libtorch_cpu" + ext),
                                cuda_lib if os.path.exists(cuda_lib) else "", errors)


NATIVE_CPU, NATIVE_CUDA, _why = _register_native()
if not NATIVE_CPU:
    _lib.impl("attention", _kernel, "CPU")
if not NATIVE_CUDA:
    _lib.impl("attention", _kernel, "CUDA")
if not NATIVE_CPU or (not NATIVE_CUDA and torch.version.cuda):
    logging.getLogger("longattn").warning(
        "torch.ops.longattn.attention: the Python kernel serves %s (%s)",
        "CUDA" if NATIVE_CPU else "CPU and CUDA", _why)
torch.library.register_fake("longattn::attention", _fake, lib=_lib)


def call_op(q, k, v, causal, window_left, softcap, scale, sinks, mask, layout, out, return_lse,
            path, memory_budget, block_table, page_size, kv_len, num_threads, num_splits=None):
    """longattn.attention's route for torch.compile, tensor subclasses and meta tensors."""
    o, lse = torch.ops.longattn.attention(
        q, k, v, causal=causal, window_left=window_left, softcap=softcap, scale=scale,
        sinks=sinks, mask=mask, layout=layout, path=path, memory_budget=memory_budget,
        block_table=block_table, page_size=page_size, kv_len=kv_len, num_threads=num_threads,
        num_splits=num_splits)
    if out is not None:
        out.copy_(o)
        o = out
    return (o, lse) if return_lse else o
