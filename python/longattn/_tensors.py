"""Reading tensors of any kind (torch, numpy, any DLPack exporter) as what the C API needs: a
pointer, a shape, element strides, a dtype name and a device; and making outputs of the same kind.

torch and numpy are read through their own attributes (cheaper than a DLPack round trip); any
other object with `__dlpack__` goes through the extension's DLPack import.
"""

import sys

from . import _C
from ._errors import InvalidArgumentError

CPU, CUDA = 0, 1  # longattn_device

# DLPack's dtype codes as (code, bits) -> name.
_DLPACK_DTYPES = {
    (2, 32): "float32", (2, 16): "float16", (4, 16): "bfloat16", (2, 64): "float64",
    (6, 8): "bool", (1, 8): "uint8", (0, 32): "int32", (0, 64): "int64", (0, 8): "int8",
}
_DLPACK_CPU, _DLPACK_CUDA, _DLPACK_CUDA_HOST, _DLPACK_CUDA_MANAGED = 1, 2, 3, 13


class View:
    """One tensor as the C API sees it. `owner` keeps a DLPack import alive."""

    __slots__ = ("obj", "kind", "ptr", "shape", "strides", "dtype", "device", "index", "owner")

    def __init__(self, obj, kind, ptr, shape, strides, dtype, device, index, owner=None):
        self.obj, self.kind, self.ptr, self.shape, self.strides = obj, kind, ptr, shape, strides
        self.dtype, self.device, self.index, self.owner = dtype, device, index, owner


_torch_module = None
_TORCH_DTYPES = {}  # torch.dtype -> name, filled when torch is first seen


def _torch():
    global _torch_module
    if _torch_module is None:
        _torch_module = sys.modules.get("torch")
        if _torch_module is not None:
            _TORCH_DTYPES.update({getattr(_torch_module, n): n for n in _DTYPE_NAMES
                                  if hasattr(_torch_module, n)})
    return _torch_module


_DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64", "bool", "uint8", "int8", "int32",
                "int64", "float8_e4m3fn", "float8_e5m2")


def is_torch(x):
    t = _torch_module or _torch()
    return t is not None and isinstance(x, t.Tensor)


def describe(x, name):
    """A View of x; raises InvalidArgumentError naming `name` for what is not a tensor."""
    t = _torch_module or _torch()
    if t is not None and isinstance(x, t.Tensor):
        # The cheapest reads torch offers: this runs for every tensor of every call.
        if x.is_cuda:
            device, index = CUDA, x.get_device()
        elif x.is_cpu:
            device, index = CPU, 0
        else:
            raise InvalidArgumentError(
                f"{name} is on device '{x.device}': longattn runs on 'cpu' and 'cuda' tensors")
        return View(x, "torch", x.data_ptr(), x.shape, x.stride(),
                    _TORCH_DTYPES.get(x.dtype) or str(x.dtype)[6:], device, index)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(x, np.ndarray):
        item = x.itemsize
        if any(s % item for s in x.strides):
            raise InvalidArgumentError(
                f"{name} has byte strides {x.strides} that are not multiples of its item size "
                f"{item}: longattn takes element strides")
        return View(x, "numpy", x.__array_interface__["data"][0], x.shape,
                    tuple(s // item for s in x.strides), x.dtype.name, CPU, 0)
    if hasattr(x, "__dlpack__"):
        ptr, shape, strides, code, bits, lanes, dev_type, dev_id, owner = _C.dlpack_info(x)
        dtype = _DLPACK_DTYPES.get((code, bits), f"dlpack dtype (code {code}, {bits} bits)")
        if lanes != 1:
            dtype = f"dlpack vector dtype ({lanes} lanes)"
        if dev_type in (_DLPACK_CPU, _DLPACK_CUDA_HOST):
            device = CPU
        elif dev_type in (_DLPACK_CUDA, _DLPACK_CUDA_MANAGED):
            device = CUDA
        else:
            raise InvalidArgumentError(
                f"{name} is on DLPack device type {dev_type}: longattn runs on the CPU (1) and "
                f"CUDA (2, 13)")
        return View(x, "dlpack", ptr, tuple(shape), tuple(strides), dtype, device, dev_id, owner)
    raise InvalidArgumentError(
        f"{name} is a {type(x).__module__}.{type(x).__qualname__}: longattn takes torch tensors, "
        f"numpy arrays or any object with __dlpack__")


def empty_like_kind(ref, shape, dtype):
    """A new uninitialized tensor of ref's kind and device (numpy for DLPack exporters on the CPU
    whose module cannot allocate, torch or cupy for those on CUDA)."""
    if ref.kind == "torch":
        t = _torch()
        return t.empty(shape, dtype=getattr(t, dtype), device=ref.obj.device)
    if ref.kind == "numpy" or ref.device == CPU:
        import numpy as np
        return np.empty(shape, dtype=_numpy_dtype(np, dtype))
    mod = sys.modules.get(type(ref.obj).__module__.split(".")[0])
    if mod is not None and hasattr(mod, "empty") and hasattr(mod, "cuda"):  # cupy
        if dtype != "bfloat16":  # cupy has no bfloat16
            with mod.cuda.Device(ref.index):
                return mod.empty(shape, dtype=dtype)
    t = _torch()
    if t is not None:
        return t.empty(shape, dtype=getattr(t, dtype), device=f"cuda:{ref.index}")
    raise InvalidArgumentError(
        f"out: cannot allocate a CUDA output for a {type(ref.obj).__module__} tensor; pass out=")


def _numpy_dtype(np, dtype):
    if dtype == "bfloat16":
        import ml_dtypes  # numpy has no bfloat16 of its own
        return ml_dtypes.bfloat16
    return np.dtype(dtype)
