"""The array API: attention, plan, merge_states, devices over torch, numpy and DLPack tensors."""

import math
import numbers
import sys
from typing import NamedTuple, Optional

from . import _C, _tensors
from ._errors import InvalidArgumentError, from_status
from ._tensors import CPU, CUDA, describe, empty_like_kind, is_torch, _torch

_PATHS = {"auto": 0, "reference": 1, "unfused": 2, "fused": 3, "split_kv": 4}
_PATH_NAMES = {v: k for k, v in _PATHS.items()}
_DTYPES = {"float32": 0, "float16": 1, "bfloat16": 2}
_KV_FP8 = {"float8_e4m3fn": 3, "float8_e5m2": 4}  # an FP8 cache: k and v of one of these
_MASK_BOOLEAN, _MASK_ADDITIVE = 1, 2


class Plan(NamedTuple):
    """What the router decided for a call, before (or after) it runs."""

    ok: bool
    path: str  # "fused", "split_kv", "unfused", "reference"
    kernel: str  # the kernel the path runs (e.g. "sm90a wgmma+TMA", "cpu amx-bf16 tiles")
    reason: str  # why, in the library's words
    transient_bytes: int  # exactly what the run takes from the allocator
    threads: int
    block_q: int
    block_k: int
    splits: int
    status: int  # the C API's longattn_status (0 when ok)


def _layout_strides(view, layout, name):
    """(batch, head, length, dim) sizes and (batch, head, token) element strides of a 4-d tensor."""
    if len(view.shape) != 4:
        raise InvalidArgumentError(
            f"{name} has {len(view.shape)} dimensions, shape {tuple(view.shape)}: it must be 4-d, "
            f"{'[B, H, L, D]' if layout == 'bhld' else '[B, L, H, D]'} for layout='{layout}'")
    s = view.strides
    if view.shape[3] > 1 and s[3] != 1:
        raise InvalidArgumentError(
            f"{name}.stride(-1) = {s[3]}: the head-dim axis must be contiguous (stride 1); other "
            f"axes may have any strides")
    if layout == "bhld":
        b, h, l, d = view.shape
        return (b, h, l, d), (s[0], s[1], s[2])
    b, l, h, d = view.shape
    return (b, h, l, d), (s[0], s[2], s[1])


def _split_count(num_splits):
    """options.num_splits: 0 for None; an int as it is (the library checks its range)."""
    if num_splits is None:
        return 0
    if (isinstance(num_splits, bool) or not isinstance(num_splits, numbers.Integral)
            or not -2 ** 31 <= num_splits < 2 ** 31):
        raise InvalidArgumentError(
            f"num_splits = {num_splits!r}: must be None (the library chooses) or an int from 1 "
            f"to 1024")
    return int(num_splits)


class _Call:
    """The arguments of one call, checked and flattened into the tuple the extension reads."""

    __slots__ = ("views", "kind", "device", "index", "o_shape", "lse_shape", "fields", "keep")

    def __init__(self, q, k, v, causal, window_left, softcap, scale, sinks, mask, layout, out,
                 return_lse, path, memory_budget, block_table, page_size, kv_len, num_threads,
                 k_scale=None, v_scale=None, num_splits=None):
        if layout not in ("bhld", "blhd"):
            raise InvalidArgumentError(
                f"layout = {layout!r}: allowed values are 'bhld' ([B, H, L, D]) and 'blhd' "
                f"([B, L, H, D])")
        if path not in _PATHS:
            raise InvalidArgumentError(
                f"path = {path!r}: allowed values are {', '.join(map(repr, _PATHS))}")
        qv, kv, vv = describe(q, "q"), describe(k, "k"), describe(v, "v")
        self.keep = [qv, kv, vv]  # DLPack owners stay alive until the call returns
        self.kind, self.device, self.index = qv.kind, qv.device, qv.index
        for view, name in ((kv, "k"), (vv, "v")):
            self._same_place(view, name, qv)
        if qv.dtype not in _DTYPES:
            raise InvalidArgumentError(
                f"q.dtype = {qv.dtype}: allowed dtypes are float32, float16 and bfloat16")
        kv_dtype = _KV_FP8.get(kv.dtype, 0)
        if kv_dtype:
            if vv.dtype != kv.dtype:
                raise InvalidArgumentError(
                    f"v.dtype = {vv.dtype} differs from k.dtype = {kv.dtype}: an FP8 cache holds "
                    f"k and v in one format")
        else:
            for view, name in ((kv, "k"), (vv, "v")):
                if view.dtype != qv.dtype:
                    raise InvalidArgumentError(
                        f"{name}.dtype = {view.dtype} differs from q.dtype = {qv.dtype}: k and v "
                        f"are q's dtype, or both float8_e4m3fn / float8_e5m2 (an FP8 cache)")
        (B, Hq, Lq, Dqk), qs = _layout_strides(qv, layout, "q")
        (Bk, Hkv, Lk, Dk), ks = _layout_strides(kv, layout, "k")
        (Bv, Hv, Lv, Dv), vs = _layout_strides(vv, layout, "v")
        paged = block_table is not None
        bt_ptr, bt_stride, num_blocks, psize = 0, 0, 0, 0
        if paged:
            btv = describe(block_table, "block_table")
            self._same_place(btv, "block_table", qv)
            if btv.dtype != "int32" or len(btv.shape) != 2 or btv.shape[0] != B or (
                    btv.shape[1] > 1 and btv.strides[1] != 1):
                raise InvalidArgumentError(
                    f"block_table: dtype {btv.dtype}, shape {tuple(btv.shape)}: it must be an "
                    f"int32 [B = {B}, blocks per sequence] table with contiguous rows")
            psize = Lk
            if page_size is not None and page_size != psize:
                raise InvalidArgumentError(
                    f"page_size = {page_size} differs from the block pools' token axis "
                    f"({psize}): k and v are [num_blocks, Hkv, page_size, D] ('bhld') or "
                    f"[num_blocks, page_size, Hkv, D] ('blhd')")
            num_blocks = Bk
            if kv_len is None:
                kv_len = btv.shape[1] * psize
            if not 0 <= kv_len <= btv.shape[1] * psize:
                raise InvalidArgumentError(
                    f"kv_len = {kv_len}: a block table of {btv.shape[1]} blocks of {psize} tokens "
                    f"holds 0 to {btv.shape[1] * psize} keys")
            bt_ptr, bt_stride, Lk_eff = btv.ptr, btv.strides[0], kv_len
            Bk = Bv = B
            self.keep.append(btv)
        else:
            if page_size is not None:
                raise InvalidArgumentError("page_size is given without block_table: pass both "
                                           "for paged K/V, or neither")
            if kv_len is not None and kv_len != Lk:
                raise InvalidArgumentError(
                    f"kv_len = {kv_len} differs from k's length {Lk}; kv_len is for paged K/V")
            Lk_eff = Lk
        if not (B == Bk == Bv) or Hkv != Hv or Lk != Lv or Dk != Dqk or (
                paged and kv.shape[0] != vv.shape[0]):
            raise InvalidArgumentError(
                f"shapes do not match: q {tuple(qv.shape)}, k {tuple(kv.shape)}, v "
                f"{tuple(vv.shape)} (layout '{layout}'): q and k need the same batch and head "
                f"dim, k and v the same batch, heads and length")
        self.o_shape = (B, Hq, Lq, Dv) if layout == "bhld" else (B, Lq, Hq, Dv)
        self.lse_shape = (B, Hq, Lq)

        if out is None:
            out = empty_like_kind(qv, self.o_shape, qv.dtype)
        ov = describe(out, "out")
        self._same_place(ov, "out", qv)
        if tuple(ov.shape) != self.o_shape or ov.dtype != qv.dtype:
            raise InvalidArgumentError(
                f"out: shape {tuple(ov.shape)}, dtype {ov.dtype}: it must be {self.o_shape} "
                f"{qv.dtype} (layout '{layout}')")
        _, os_ = _layout_strides(ov, layout, "out")
        lse, lse_ptr = None, 0
        if return_lse:
            lse = empty_like_kind(qv, self.lse_shape, "float32")
            lse_ptr = describe(lse, "lse").ptr
        self.views = (ov, lse)

        sinks_ptr = 0
        if sinks is not None:
            sv = describe(sinks, "sinks")
            self._same_place(sv, "sinks", qv)
            if sv.dtype != "float32" or tuple(sv.shape) != (Hq,) or (Hq > 1 and sv.strides[0] != 1):
                raise InvalidArgumentError(
                    f"sinks: dtype {sv.dtype}, shape {tuple(sv.shape)}: it must be a contiguous "
                    f"float32 [Hq = {Hq}] tensor (one logit per query head)")
            sinks_ptr = sv.ptr
            self.keep.append(sv)

        mask_kind, mask_ptr, mdims, mstrides = 0, 0, (0, 0, 0, 0), (0, 0, 0, 0)
        if mask is not None:
            mv = describe(mask, "mask")
            self._same_place(mv, "mask", qv)
            if mv.dtype in ("bool", "uint8"):
                mask_kind = _MASK_BOOLEAN
            elif mv.dtype == "float32":
                mask_kind = _MASK_ADDITIVE
            else:
                raise InvalidArgumentError(
                    f"mask.dtype = {mv.dtype}: allowed are bool or uint8 (nonzero = visible) and "
                    f"float32 (added to the scores)")
            if len(mv.shape) > 4:
                raise InvalidArgumentError(
                    f"mask has shape {tuple(mv.shape)}: at most 4 dimensions, broadcastable to "
                    f"[B, Hq, Lq, Lk] = {[B, Hq, Lq, Lk_eff]}")
            pad = 4 - len(mv.shape)
            mshape = (1,) * pad + tuple(mv.shape)
            mstr = (0,) * pad + tuple(mv.strides)
            want = (B, Hq, Lq, Lk_eff)
            if any(m not in (1, w) for m, w in zip(mshape, want)):
                raise InvalidArgumentError(
                    f"mask has shape {tuple(mv.shape)}: it must broadcast to [B, Hq, Lq, Lk] = "
                    f"{list(want)} (each dim that size or 1)")
            mdims = mshape
            mstrides = tuple(s if m > 1 else 0 for s, m in zip(mstr, mshape))
            mask_ptr = mv.ptr
            self.keep.append(mv)

        per_head, scale_ptrs = 0, [0, 0]
        if not kv_dtype and (k_scale is not None or v_scale is not None):
            raise InvalidArgumentError(
                f"{'k_scale' if k_scale is not None else 'v_scale'} is given but k and v are "
                f"{kv.dtype}: scales must be None unless k and v are float8_e4m3fn or float8_e5m2")
        counts = set()
        for i, (x, name) in enumerate(((k_scale, "k_scale"), (v_scale, "v_scale"))):
            if x is None:
                continue
            if isinstance(x, bool):
                raise InvalidArgumentError(
                    f"{name} = {x}: a scale is a float, or a float32 tensor of 1 or Hkv values")
            if isinstance(x, numbers.Real):  # Python and numpy scalars
                try:
                    t = empty_like_kind(qv, (1,), "float32")
                except InvalidArgumentError:
                    raise InvalidArgumentError(
                        f"{name} = {x}: a float scale is passed as a float32 tensor on q's device, "
                        f"which cannot be made for a {type(qv.obj).__module__} tensor; pass "
                        f"{name} as such a tensor") from None
                t[0] = float(x)
                x = t
            sv = describe(x, name)
            self._same_place(sv, name, qv)
            n = 1
            for d in sv.shape:
                n *= d
            if sv.dtype != "float32" or n not in (1, Hkv) or (n > 1 and sv.strides[-1] != 1) or (
                    len(sv.shape) > 1):
                raise InvalidArgumentError(
                    f"{name}: dtype {sv.dtype}, shape {tuple(sv.shape)}: it must be a float, or a "
                    f"contiguous float32 tensor of 1 value or Hkv = {Hkv} (one per KV head)")
            counts.add(n)
            scale_ptrs[i] = sv.ptr
            self.keep.append(sv)
        if len(counts) > 1:
            raise InvalidArgumentError(
                f"k_scale and v_scale hold {sorted(counts)} values: both must hold one, or both "
                f"Hkv = {Hkv}")
        per_head = int(counts == {Hkv} and Hkv > 1)

        stream = 0
        if self.device == CUDA and self.kind == "torch":
            stream = _cuda_reads()[1](self.index)
        self.fields = (
            _DTYPES[qv.dtype], self.device, B, Hq, Hkv, Lq, Lk_eff, Dqk, Dv,
            qv.ptr, *qs, kv.ptr, *ks, vv.ptr, *vs, ov.ptr, *os_, lse_ptr,
            0.0 if scale is None else float(scale), int(bool(causal)), int(window_left),
            float(softcap), sinks_ptr,
            mask_kind, mask_ptr, *mdims, *mstrides,
            bt_ptr, bt_stride, psize, num_blocks,
            _PATHS[path], -1 if memory_budget is None else int(memory_budget),
            0 if num_threads is None else int(num_threads), stream,
            kv_dtype, per_head, *scale_ptrs,
            _split_count(num_splits))

    def _same_place(self, view, name, ref):
        if view.kind != ref.kind and not (view.kind == "dlpack" or ref.kind == "dlpack"):
            raise InvalidArgumentError(
                f"{name} is a {view.kind} tensor and q a {ref.kind} one: pass one kind")
        if view.device != ref.device or (view.device == CUDA and view.index != ref.index):
            where = lambda x: "cpu" if x.device == CPU else f"cuda:{x.index}"
            raise InvalidArgumentError(
                f"{name} is on {where(view)} and q on {where(ref)}: every tensor of a call must be "
                f"on q's device")


_cuda_get_device = _current_stream = None  # set by _cuda_reads


def _cuda_reads():
    """(current device, current raw stream of device i) from torch, resolved once: torch._C's own
    functions where they exist (the same reads without Python layers), the public API otherwise."""
    global _cuda_get_device, _current_stream
    if _current_stream is None:
        torch = _torch()
        if hasattr(torch._C, "_cuda_getDevice") and hasattr(torch._C, "_cuda_getCurrentRawStream"):
            _cuda_get_device = torch._C._cuda_getDevice
            _current_stream = torch._C._cuda_getCurrentRawStream
        else:
            _cuda_get_device = torch.cuda.current_device
            _current_stream = lambda i: torch.cuda.current_stream(i).cuda_stream  # noqa: E731
    return _cuda_get_device, _current_stream


def _plan_from(t):
    status, message, ok, path, threads, bq, bk, splits, transient, _allocated, reason, kernel = t
    return Plan(bool(ok), _PATH_NAMES.get(path, str(path)), kernel, reason or message,
                transient, threads, bq, bk, splits, status)


def _check_grad(q, k, v):
    torch = _torch()
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        name = "q" if q.requires_grad else "k" if k.requires_grad else "v"
        raise InvalidArgumentError(
            f"{name} requires grad: longattn.attention is forward-only (no backward); call it "
            f"under torch.no_grad() or pass detached tensors")


_ALLOCATORS = {}


def _torch_alloc(device):
    """alloc(nbytes) -> (pointer, owner) on torch's caching allocator (one closure per device)."""
    alloc = _ALLOCATORS.get(device)
    if alloc is None:
        torch = _torch()

        def alloc(nbytes):
            t = torch.empty(nbytes, dtype=torch.uint8, device=device)
            return t.data_ptr(), t

        _ALLOCATORS[device] = alloc
    return alloc


# Calls already checked, by signature (everything but the tensors' pointers): a runtime calls the
# same few shapes every step, and re-reading forty fields costs more than the C call's planning.
_CALLS = {}
_MAX_CALLS = 1024


def _run_torch_cached(q, k, v, opts, return_lse):
    """The torch path without sinks, mask, out or paging: a cached _C.Call per signature. `opts`
    is (causal, window_left, softcap, scale, layout, path, memory_budget, num_threads). Every read
    here runs per call, so each is the cheapest torch offers (get_device() and is_cuda over
    .device, new_empty with the sizes as separate ints, which torch parses without a failed
    int conversion of a tuple), and the C call returns its status alone."""
    if q.requires_grad or k.requires_grad or v.requires_grad:
        _check_grad(q, k, v)  # raises only while grad mode is on
    index = q.get_device()  # -1 on the CPU
    key = (q.shape, q.stride(), k.shape, k.stride(), v.shape, v.stride(), q.dtype, k.dtype,
           v.dtype, index, k.get_device(), v.get_device(), q.is_cuda, k.is_cuda, v.is_cuda, opts,
           return_lse)
    entry = _CALLS.get(key)
    if entry is None:
        entry = _new_cached_call(q, k, v, opts, return_lse)
        if len(_CALLS) >= _MAX_CALLS:
            _CALLS.clear()
        _CALLS[key] = entry
    run, o_shape, lse_shape, alloc = entry
    stream = 0
    if alloc is not None:  # CUDA
        if _cuda_get_device() != index:  # the library runs on the current device
            with _torch().cuda.device(index):
                return _run_torch_cached(q, k, v, opts, return_lse)
        stream = _current_stream(index)
    o = q.new_empty(*o_shape)
    if return_lse:
        lse = q.new_empty(*lse_shape, dtype=_float32)
        status = run(q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), lse.data_ptr(),
                     stream, alloc)
        if status:
            raise from_status(status, _C.last_error())
        return o, lse
    status = run(q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), 0, stream, alloc)
    if status:
        raise from_status(status, _C.last_error())
    return o


_float32 = None  # torch.float32, set by _new_cached_call


def _new_fast_entry(q, k, v, opts, return_lse):
    """What _C.TorchCalls keeps for a new signature, checked the full way (_Call): (Call,
    new_empty arguments of o and of lse, alloc or None, current device, current stream)."""
    run, o_shape, lse_shape, alloc = _new_cached_call(q, k, v, opts, return_lse)
    cuda = alloc is not None
    return (run.__self__, (None, *o_shape), (None, *lse_shape, _float32), alloc,
            _cuda_get_device if cuda else None, _current_stream if cuda else None)


def _raise_status(status, message):
    raise from_status(status, message)


# The per-call torch path in the extension (one call; see TorchCalls in longattn_ext.cpp). Its
# run() returns None where the Python path above must decide (grad, not 4-d, another device).
_fast_calls = _C.TorchCalls(_new_fast_entry, _raise_status, _MAX_CALLS)
_fast_run = _fast_calls.run


def _run_torch(q, k, v, opts, return_lse):
    r = _fast_run(q, k, v, opts, return_lse)
    return _run_torch_cached(q, k, v, opts, return_lse) if r is None else r


def _new_cached_call(q, k, v, opts, return_lse):
    """Checks a new signature the full way (_Call) and keeps what later calls need."""
    global _float32
    causal, window_left, softcap, scale, layout, path, memory_budget, num_threads = opts
    full = _Call(q, k, v, causal, window_left, softcap, scale, None, None, layout, None,
                 return_lse, path, memory_budget, None, None, None, num_threads)
    _float32 = _torch().float32
    cuda = full.device == CUDA  # _Call resolved _cuda_reads() for a CUDA call
    return (_C.Call(full.fields, cuda).run_status, full.o_shape, full.lse_shape,
            _torch_alloc(q.device) if cuda else None)


def run(q, k, v, causal=False, window_left=-1, softcap=0.0, scale=None, sinks=None, mask=None,
        layout="bhld", out=None, return_lse=False, path="auto", memory_budget=None,
        block_table=None, page_size=None, kv_len=None, num_threads=None, k_scale=None,
        v_scale=None, num_splits=None):
    """attention() without the torch.compile dispatch: reads the tensors and calls the C API."""
    t = _torch()
    if (t is not None and type(q) is t.Tensor and sinks is None and mask is None and out is None
            and block_table is None and page_size is None and kv_len is None and k_scale is None
            and v_scale is None and num_splits is None):
        return _run_torch(q, k, v, (causal, window_left, softcap, scale, layout, path,
                                    memory_budget, num_threads), return_lse)
    call = _Call(q, k, v, causal, window_left, softcap, scale, sinks, mask, layout, out,
                 return_lse, path, memory_budget, block_table, page_size, kv_len, num_threads,
                 k_scale, v_scale, num_splits)
    o, lse = call.views[0].obj, call.views[1]
    alloc, caller_allocates = None, False
    if call.kind == "torch":
        _check_grad(q, k, v)
        if call.device == CUDA:
            alloc, caller_allocates = _torch_alloc(q.device), True
            if _cuda_reads()[0]() != call.index:
                with _torch().cuda.device(call.index):
                    result = _C.attention(call.fields, caller_allocates, alloc)
                return _finish(result, o, lse, return_lse)
    result = _C.attention(call.fields, caller_allocates, alloc)
    if call.kind == "dlpack" and out is None:
        o, lse = _to_caller_kind(q, o), _to_caller_kind(q, lse)
    return _finish(result, o, lse, return_lse)


def _to_caller_kind(ref, x):
    """A result made by numpy/torch/cupy for a DLPack exporter, as the exporter's kind where its
    framework can import DLPack (jax), else as it is."""
    if x is None:
        return None
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(ref, jax.Array):
        return jax.numpy.from_dlpack(x)
    return x


def _finish(result, o, lse, return_lse):
    if result[0] != 0:
        raise from_status(result[0], result[1])
    return (o, lse) if return_lse else o


def attention(q, k, v, *, causal=False, window_left=-1, softcap=0.0, scale=None, sinks=None,
              mask=None, layout="bhld", out=None, return_lse=False, path="auto",
              memory_budget=None, block_table=None, page_size=None, kv_len=None,
              num_threads=None, k_scale=None, v_scale=None, num_splits=None):
    """Attention over q, k, v of any kind (torch, numpy, DLPack); returns o, or (o, lse).

    Shapes (layout "bhld"): q [B, Hq, Lq, Dqk], k [B, Hkv, Lk, Dqk], v [B, Hkv, Lk, Dv] ->
    o [B, Hq, Lq, Dv], lse [B, Hq, Lq] float32 (natural log). layout "blhd" takes and gives
    [B, L, H, D]. Any strides are passed to the library as they are (the head-dim axis must be
    contiguous); nothing is copied. Causal is bottom-right aligned (query i sees key j iff
    j <= i + Lk - Lq); window_left = W also requires j >= i + Lk - Lq - W. `mask` is boolean
    (True = visible) or additive float32, broadcastable to [B, Hq, Lq, Lk]. `sinks` is float32
    [Hq]. Paged K/V: k and v are block pools ([num_blocks, Hkv, page_size, D] for "bhld"),
    block_table int32 [B, blocks], kv_len keys (default: every block full); a block id outside the
    pool raises, except in a CUDA graph capture, which reads the table only when the graph replays:
    there such an id makes that sequence's o and lse NaN. An FP8 cache: k and v
    float8_e4m3fn or float8_e5m2 (q and o stay q's dtype; the CPU runs it, and CUDA on its fused and
    split_kv paths), their values k * k_scale and v * v_scale; a scale is None (1), a float, or float32 of 1
    or Hkv values (one per KV head). num_splits fixes split_kv's slices per row (1 to 1024; with
    path "auto", 1 never splits and 2 and up split); None lets the library choose.
    The result is of q's kind and device; torch CUDA tensors run on torch's current stream and
    take transient memory from torch's allocator. torch tensors that require grad are refused
    (forward only). Raises longattn.Error (InvalidArgumentError, a ValueError, for bad arguments).
    """
    torch = _tensors._torch_module or _torch()
    if torch is not None and isinstance(q, torch.Tensor):
        if torch.compiler.is_compiling() or type(q) is not torch.Tensor or q.is_meta:
            if k_scale is not None or v_scale is not None:
                raise InvalidArgumentError(
                    "k_scale / v_scale: torch.ops.longattn.attention has no FP8 scales yet; call "
                    "longattn.attention eagerly (outside torch.compile) for an FP8 cache")
            from . import torch_ops  # registers the op on first use
            return torch_ops.call_op(q, k, v, causal, window_left, softcap, scale, sinks, mask,
                                     layout, out, return_lse, path, memory_budget, block_table,
                                     page_size, kv_len, num_threads, num_splits)
        if (sinks is None and mask is None and out is None and block_table is None
                and page_size is None and kv_len is None and k_scale is None and v_scale is None
                and num_splits is None):
            r = _fast_run(q, k, v, (causal, window_left, softcap, scale, layout, path,
                                    memory_budget, num_threads), return_lse)
            if r is not None:
                return r
    return run(q, k, v, causal, window_left, softcap, scale, sinks, mask, layout, out,
               return_lse, path, memory_budget, block_table, page_size, kv_len, num_threads,
               k_scale, v_scale, num_splits)


def plan(q, k, v, *, causal=False, window_left=-1, softcap=0.0, scale=None, sinks=None,
         mask=None, layout="bhld", out=None, return_lse=False, path="auto", memory_budget=None,
         block_table=None, page_size=None, kv_len=None, num_threads=None, k_scale=None,
         v_scale=None, num_splits=None):
    """What attention() with the same arguments would do, without running: a Plan. A plan that
    cannot run has ok = False and says why; invalid arguments raise as in attention()."""
    call = _Call(q, k, v, causal, window_left, softcap, scale, sinks, mask, layout, out,
                 return_lse, path, memory_budget, block_table, page_size, kv_len, num_threads,
                 k_scale, v_scale, num_splits)
    result = _C.plan(call.fields)
    if result[0] == 1:  # invalid arguments raise; a valid call that cannot run is a plan
        raise from_status(result[0], result[1])
    return _plan_from(result)


def merge_states(o_parts, lse_parts):
    """Combines n partial results over disjoint key sets: o_parts [n, ..., Dv] and lse_parts
    [n, ...] (float32) -> (o [..., Dv], lse [...]). Exact: o = sum_i e^(lse_i - lse) o_i,
    lse = log sum_i e^lse_i; a part with lse = -inf adds nothing, a row with none is 0, -inf.
    Host arrays run in the library; torch CUDA tensors with the same formula in torch."""
    if is_torch(o_parts) and o_parts.device.type != "cpu":
        torch = _torch()
        lse = torch.logsumexp(lse_parts, dim=0)
        safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
        w = torch.exp(lse_parts - safe)
        w = torch.where(torch.isinf(lse_parts), torch.zeros_like(w), w)
        return (w.unsqueeze(-1) * o_parts).sum(0), lse
    ov, lv = describe(o_parts, "o_parts"), describe(lse_parts, "lse_parts")
    if ov.dtype != "float32" or lv.dtype != "float32":
        raise InvalidArgumentError(
            f"o_parts.dtype = {ov.dtype}, lse_parts.dtype = {lv.dtype}: both must be float32")
    if len(ov.shape) < 2 or tuple(lv.shape) != tuple(ov.shape[:-1]):
        raise InvalidArgumentError(
            f"o_parts {tuple(ov.shape)} and lse_parts {tuple(lv.shape)}: o_parts is [n, ..., Dv] "
            f"and lse_parts [n, ...] with the same leading dims")
    for view, name in ((ov, "o_parts"), (lv, "lse_parts")):
        if view.device != CPU:
            raise InvalidArgumentError(f"{name} is on a CUDA device: merge_states takes host "
                                       f"arrays, or torch tensors on any device")
        expect, acc = [], 1
        for n in reversed(view.shape):
            expect.append(acc)
            acc *= n
        if any(s != e for s, e, n in zip(view.strides, reversed(expect), view.shape) if n > 1):
            raise InvalidArgumentError(f"{name} must be contiguous (strides {view.strides})")
    n, dv = ov.shape[0], ov.shape[-1]
    rows = math.prod(ov.shape[1:-1])
    o = empty_like_kind(ov, tuple(ov.shape[1:]), "float32")
    lse = empty_like_kind(ov, tuple(lv.shape[1:]), "float32")
    out_o, out_l = describe(o, "o"), describe(lse, "lse")
    status, message = _C.merge_states(n, rows, dv, ov.ptr, lv.ptr, out_o.ptr, out_l.ptr)
    if status:
        raise from_status(status, message)
    return o, lse


def devices():
    """The devices this build and machine have: a list of dicts (kind, available, name,
    features, cores, memory_total, memory_free)."""
    return [_C.device_query(CPU), _C.device_query(CUDA)]
