"""The array API against the float64 reference: numpy and torch inputs, both layouts, every dtype,
strided views, masks, sinks, windows, paged K/V, every path, and the errors."""

import math

import numpy as np
import pytest

import longattn
from reference import attention_ref

torch = pytest.importorskip("torch")

TOL = {"float32": 2e-5, "float16": 2e-2, "bfloat16": 3e-2}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def rel_err(o, ref):
    o = np.asarray(o, dtype=np.float64)
    return np.abs(o - ref).max() / max(np.abs(ref).max(), 1e-6)


def to_np64(x):
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy().astype(np.float64)
    return np.asarray(x, dtype=np.float64)


def make(shape, dtype, device, gen, layout="bhld", pad=0):
    """A tensor of logical [B,H,L,D] shape in `layout`, inside a buffer padded by `pad` elements
    per row (so the strides are not the contiguous ones)."""
    B, H, L, D = shape
    phys = (B, H, L, D + pad) if layout == "bhld" else (B, L, H, D + pad)
    t = torch.randn(phys, generator=gen, dtype=torch.float32).to(getattr(torch, dtype))
    t = t.to(device)[..., :D]
    return t


def logical(t, layout):
    """[B,H,L,D] float64 numpy view of a tensor in `layout`."""
    a = to_np64(t)
    return a if layout == "bhld" else a.transpose(0, 2, 1, 3)


CASES = [
    # B, Hq, Hkv, Lq, Lk, Dqk, Dv, causal, window, softcap, sinks
    (1, 4, 4, 7, 7, 64, 64, True, -1, 0.0, False),
    (2, 8, 2, 5, 33, 128, 128, True, -1, 0.0, False),  # GQA 4, chunk against a longer cache
    (1, 4, 1, 9, 4, 32, 32, True, -1, 0.0, False),  # Lq > Lk: empty rows
    (1, 2, 1, 17, 40, 256, 256, True, 7, 30.0, True),  # window, softcap, sinks
    (2, 4, 2, 3, 19, 192, 128, False, -1, 0.0, True),  # Dqk != Dv
    (1, 2, 2, 1, 300, 512, 512, False, -1, 0.0, False),  # decode, d = 512
    (1, 3, 1, 6, 11, 40, 24, True, 3, 0.0, False),  # odd head dims
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("layout", ["bhld", "blhd"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:7])))
def test_torch_against_reference(case, layout, dtype, device):
    B, Hq, Hkv, Lq, Lk, Dqk, Dv, causal, window, softcap, use_sinks = case
    gen = torch.Generator().manual_seed(hash(case) % 2**31)
    q = make((B, Hq, Lq, Dqk), dtype, device, gen, layout, pad=3)
    k = make((B, Hkv, Lk, Dqk), dtype, device, gen, layout, pad=5)
    v = make((B, Hkv, Lk, Dv), dtype, device, gen, layout)
    sinks = torch.randn(Hq, generator=gen).to(device) if use_sinks else None
    o, lse = longattn.attention(q, k, v, causal=causal, window_left=window, softcap=softcap,
                                sinks=sinks, layout=layout, return_lse=True)
    assert isinstance(o, torch.Tensor) and o.device.type == device and o.dtype == q.dtype
    assert o.shape == ((B, Hq, Lq, Dv) if layout == "bhld" else (B, Lq, Hq, Dv))
    ref_o, ref_lse = attention_ref(logical(q, layout), logical(k, layout), logical(v, layout),
                                   causal, window, softcap, None,
                                   None if sinks is None else to_np64(sinks))
    # CUDA's fused kernels round float32 inputs to bf16 per tile (README, "CUDA backend").
    exact = dtype == "float32" and device == "cpu"
    assert rel_err(logical(o, layout), ref_o) < TOL[dtype if device == "cpu" else
                                                     ("bfloat16" if dtype == "float32" else dtype)]
    lse = to_np64(lse)
    finite = np.isfinite(ref_lse)
    assert (np.isfinite(lse) == finite).all()
    assert np.abs(lse[finite] - ref_lse[finite]).max() < 1e-3 * (1 if exact else 30)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("layout", ["bhld", "blhd"])
def test_numpy_against_reference(layout, dtype):
    rng = np.random.default_rng(1)
    B, Hq, Hkv, Lq, Lk, D = 2, 6, 3, 13, 29, 96
    shape = lambda h, l: (B, h, l, D) if layout == "bhld" else (B, l, h, D)
    q = rng.standard_normal(shape(Hq, Lq)).astype(dtype)
    k = rng.standard_normal(shape(Hkv, Lk)).astype(dtype)
    v = rng.standard_normal(shape(Hkv, Lk)).astype(dtype)
    o, lse = longattn.attention(q, k, v, causal=True, window_left=9, layout=layout,
                                return_lse=True)
    assert isinstance(o, np.ndarray) and o.dtype == np.dtype(dtype)
    lg = (lambda x: x) if layout == "bhld" else (lambda x: np.asarray(x).transpose(0, 2, 1, 3))
    ref_o, ref_lse = attention_ref(lg(q), lg(k), lg(v), True, 9)
    assert rel_err(lg(o), ref_o) < TOL[dtype]
    assert np.allclose(lse, ref_lse, atol=1e-3 if dtype == "float32" else 3e-2)


def test_numpy_bfloat16():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal(s).astype(ml_dtypes.bfloat16)
               for s in ((1, 2, 5, 64), (1, 2, 9, 64), (1, 2, 9, 64)))
    o = longattn.attention(q, k, v, causal=True)
    assert o.dtype == ml_dtypes.bfloat16
    ref, _ = attention_ref(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), True)
    assert rel_err(o.astype(np.float64), ref) < TOL["bfloat16"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", ["reference", "unfused", "fused", "split_kv", "auto"])
@pytest.mark.parametrize("mask_kind", ["bool", "additive"])
def test_masks_and_paths(device, path, mask_kind):
    gen = torch.Generator().manual_seed(3)
    B, Hq, Hkv, Lq, Lk, D = 2, 4, 2, 6, 50, 64
    dt = torch.float32 if device == "cpu" else torch.bfloat16
    q, k, v = (torch.randn(s, generator=gen).to(device, dt)
               for s in ((B, Hq, Lq, D), (B, Hkv, Lk, D), (B, Hkv, Lk, D)))
    # A padding mask per batch row ([B, 1, 1, Lk]), broadcast over heads and queries.
    lens = [50, 31]
    visible = torch.arange(Lk)[None, :] < torch.tensor(lens)[:, None]
    if mask_kind == "bool":
        mask = visible[:, None, None, :]
    else:
        mask = torch.where(visible, 0.0, -math.inf)[:, None, None, :].float()
        mask = mask + torch.randn(B, 1, Lq, Lk, generator=gen) * 0.5  # a bias per query too
    mask = mask.to(device)
    if path == "reference" and device == "cuda":
        pytest.skip("the float64 reference path runs on the CPU only")
    try:
        o = longattn.attention(q, k, v, causal=True, mask=mask, path=path)
    except longattn.UnsupportedError as e:
        assert path == "split_kv" and device == "cuda", e  # a forced path may refuse, clearly
        return
    ref, _ = attention_ref(to_np64(q), to_np64(k), to_np64(v), True, mask=to_np64(mask)
                           if mask_kind == "additive" else mask.cpu().numpy())
    assert rel_err(to_np64(o), ref) < TOL["float32" if dt == torch.float32 else "bfloat16"]


@pytest.mark.parametrize("device", DEVICES)
def test_out_view_and_k_equals_v(device):
    """out= may be any strided view (here [B,L,H,D] memory seen as [B,H,L,D]); k may be v."""
    gen = torch.Generator().manual_seed(4)
    B, H, Lq, Lk, D = 2, 4, 5, 12, 128
    q = torch.randn(B, H, Lq, D, generator=gen).to(device)
    kv = torch.randn(B, H, Lk, D, generator=gen).to(device)
    buf = torch.full((B, Lq, H, D + 2), 7.0, device=device)
    out = buf[..., :D].transpose(1, 2)
    o = longattn.attention(q, kv, kv, out=out, causal=True)
    assert o is out
    ref, _ = attention_ref(to_np64(q), to_np64(kv), to_np64(kv), True)
    assert rel_err(to_np64(out), ref) < TOL["bfloat16" if device == "cuda" else "float32"]
    assert (buf[..., D:] == 7.0).all()  # nothing written outside the view


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("page_size", [1, 16, 64])
def test_paged(device, page_size):
    gen = torch.Generator().manual_seed(5)
    B, Hq, Hkv, Lq, D, blocks_per_seq = 2, 4, 2, 3, 64, 5
    kv_len = blocks_per_seq * page_size - (page_size // 2)
    num_blocks = B * blocks_per_seq + 3
    dt = torch.float32 if device == "cpu" else torch.float16
    kpool = torch.randn(num_blocks, Hkv, page_size, D, generator=gen).to(device, dt)
    vpool = torch.randn(num_blocks, Hkv, page_size, D, generator=gen).to(device, dt)
    table = torch.randperm(num_blocks, generator=gen)[:B * blocks_per_seq].view(B, -1)
    table = table.to(device, torch.int32)
    q = torch.randn(B, Hq, Lq, D, generator=gen).to(device, dt)
    try:
        o = longattn.attention(q, kpool, vpool, causal=True, block_table=table,
                               page_size=page_size, kv_len=kv_len)
    except longattn.UnsupportedError as e:
        pytest.xfail(f"paged page_size {page_size} not run on {device}: {e}")
    # The same keys gathered contiguously.
    idx = table.long().cpu()
    k = kpool.cpu()[idx].permute(0, 2, 1, 3, 4).reshape(B, Hkv, -1, D)[:, :, :kv_len]
    v = vpool.cpu()[idx].permute(0, 2, 1, 3, 4).reshape(B, Hkv, -1, D)[:, :, :kv_len]
    ref, _ = attention_ref(to_np64(q), to_np64(k), to_np64(v), True)
    assert rel_err(to_np64(o), ref) < TOL["float32" if dt == torch.float32 else "float16"]


@pytest.mark.parametrize("device", DEVICES)
def test_mla_576_512(device):
    """MLA: V is the first 512 columns of the 576-wide K rows (one buffer, one KV head)."""
    gen = torch.Generator().manual_seed(10)
    dt = torch.float32 if device == "cpu" else torch.bfloat16
    q = torch.randn(1, 16, 5, 576, generator=gen).to(device, dt)
    kv = torch.randn(1, 1, 40, 576, generator=gen).to(device, dt)
    o = longattn.attention(q, kv, kv[..., :512], causal=True)
    assert o.shape == (1, 16, 5, 512)
    ref, _ = attention_ref(to_np64(q), to_np64(kv), to_np64(kv[..., :512]), True)
    assert rel_err(to_np64(o), ref) < TOL["float32" if device == "cpu" else "bfloat16"]
    # Fused on both devices (on CUDA the portable kernel's 576/512 instance).
    o = longattn.attention(q, kv, kv[..., :512], causal=True, path="fused")
    assert rel_err(to_np64(o), ref) < TOL["float32" if device == "cpu" else "bfloat16"]


def test_dlpack_generic():
    """Any __dlpack__ exporter is read through DLPack; the result is numpy on the CPU."""

    class Exporter:
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    rng = np.random.default_rng(6)
    q, k, v = (rng.standard_normal(s).astype(np.float32)
               for s in ((1, 2, 4, 32), (1, 1, 8, 32), (1, 1, 8, 32)))
    o = longattn.attention(Exporter(q), Exporter(k), Exporter(v), causal=True)
    ref, _ = attention_ref(q, k, v, True)
    assert rel_err(o, ref) < TOL["float32"]


def test_jax_cpu():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(8)
    q, k, v = (rng.standard_normal(s).astype(np.float32)
               for s in ((1, 4, 6, 64), (1, 2, 10, 64), (1, 2, 10, 64)))
    cpu = jax.devices("cpu")[0]
    o = longattn.attention(*(jax.device_put(jnp.asarray(x), cpu) for x in (q, k, v)), causal=True)
    assert isinstance(o, jax.Array)
    ref, _ = attention_ref(q, k, v, True)
    assert rel_err(np.asarray(o), ref) < TOL["float32"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cupy_cuda():
    cp = pytest.importorskip("cupy")
    rng = np.random.default_rng(9)
    q, k, v = (rng.standard_normal(s).astype(np.float16)
               for s in ((2, 8, 33, 128), (2, 2, 70, 128), (2, 2, 70, 128)))
    o = longattn.attention(cp.asarray(q), cp.asarray(k), cp.asarray(v), causal=True)
    assert isinstance(o, cp.ndarray) and o.dtype == cp.float16
    ref, _ = attention_ref(q, k, v, True)
    assert rel_err(cp.asnumpy(o), ref) < TOL["float16"]


def test_plan():
    q = torch.randn(1, 16, 2048, 256, dtype=torch.bfloat16)
    k = torch.randn(1, 8, 4096, 256, dtype=torch.bfloat16)
    p = longattn.plan(q, k, k, causal=True)
    assert p.ok and p.path in ("fused", "split_kv") and p.transient_bytes >= 0 and p.reason
    assert p.kernel.startswith("cpu ") and p.kernel.endswith(" tiles") and p.kernel in p.reason
    p = longattn.plan(q, k, k, causal=True, path="unfused")
    assert p.ok and p.transient_bytes >= 16 * 2048 * 4096 * 4  # the score matrix
    assert p.kernel.endswith("scores materialized")
    p = longattn.plan(q, k, k, causal=True, path="unfused", memory_budget=1 << 20)
    assert not p.ok and p.status == 3 and "budget" in p.reason
    with pytest.raises(longattn.OverBudgetError, match="budget"):
        longattn.attention(q, k, k, path="unfused", memory_budget=1 << 20)


def test_merge_states():
    rng = np.random.default_rng(7)
    q = rng.standard_normal((1, 2, 3, 16)).astype(np.float32)
    k = rng.standard_normal((1, 2, 20, 16)).astype(np.float32)
    v = rng.standard_normal((1, 2, 20, 16)).astype(np.float32)
    parts = [longattn.attention(q, k[:, :, a:b], v[:, :, a:b], return_lse=True)
             for a, b in ((0, 7), (7, 20))]
    o, lse = longattn.merge_states(np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]))
    full_o, full_lse = longattn.attention(q, k, v, return_lse=True)
    assert np.allclose(o, full_o, atol=1e-5) and np.allclose(lse, full_lse, atol=1e-5)
    to, tl = longattn.merge_states(torch.from_numpy(np.stack([p[0] for p in parts])),
                                   torch.from_numpy(np.stack([p[1] for p in parts])))
    assert np.allclose(to.numpy(), full_o, atol=1e-5)


def test_devices_and_version():
    devs = longattn.devices()
    assert devs[0]["kind"] == "cpu" and devs[0]["available"] and devs[0]["cores"] >= 1
    assert devs[1]["kind"] == "cuda" and isinstance(devs[1]["available"], bool)
    assert longattn.__version__.count(".") == 2


def test_errors_name_the_argument():
    q = torch.randn(1, 4, 5, 64)
    k = torch.randn(1, 2, 9, 64)
    cases = [
        (dict(q=q.double()), "q.dtype"),
        (dict(k=k.half()), "k.dtype"),
        (dict(q=q[0]), "q has 3 dimensions"),
        (dict(q=q.transpose(2, 3)), "q.stride(-1)"),
        (dict(v=torch.randn(1, 2, 8, 64)), "shapes do not match"),
        (dict(k=torch.randn(1, 3, 9, 64), v=torch.randn(1, 3, 9, 64)), "q_heads"),
        (dict(layout="bshd"), "layout"),
        (dict(path="fastest"), "path"),
        (dict(mask=torch.ones(2, 1, 5, 9, dtype=torch.bool)), "mask has shape"),
        (dict(mask=torch.ones(5, 9, dtype=torch.int64)), "mask.dtype"),
        (dict(sinks=torch.zeros(3)), "sinks"),
        (dict(out=torch.empty(1, 4, 5, 32)), "out"),
        (dict(window_left=-2), "window_left"),
        (dict(softcap=-1.0), "softcap"),
        (dict(q=np.zeros((1, 4, 5, 64), np.float32)), "one kind"),
        (dict(q="q"), "q is a builtins.str"),
        (dict(page_size=16), "page_size"),
    ]
    for change, message in cases:
        args = dict(q=q, k=k, v=k)
        args.update(change)
        qq, kk, vv = args.pop("q"), args.pop("k"), args.pop("v")
        with pytest.raises(longattn.InvalidArgumentError, match=message.replace("(", r"\(")
                           .replace(")", r"\)").replace(".", r"\.")):
            longattn.attention(qq, kk, vv, **args)
    assert issubclass(longattn.InvalidArgumentError, ValueError)


def test_requires_grad_refused():
    q = torch.randn(1, 2, 3, 16, requires_grad=True)
    k = torch.randn(1, 2, 3, 16)
    with pytest.raises(longattn.InvalidArgumentError, match="q requires grad"):
        longattn.attention(q, k, k)
    with torch.no_grad():
        longattn.attention(q, k, k)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", ["float8_e4m3fn", "float8_e5m2"])
@pytest.mark.parametrize("scales", ["none", "float", "tensor", "head"])
@pytest.mark.parametrize("lq", [1, 37])
def test_fp8_cache(fmt, scales, lq, device):
    """An FP8 KV cache: k and v in float8 with scales, against the float64 reference on the
    dequantized values (the CPU computes in float32 from them; CUDA's fused kernel converts K and V
    exactly to q's bf16 and folds the scales in)."""
    if not hasattr(torch, fmt):
        pytest.skip(f"this torch has no {fmt}")
    if device == "cuda" and torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the CUDA kernels read FP8 caches on Hopper (compute capability 9.0) only")
    gen = torch.Generator().manual_seed(5)
    Hkv = 2
    dt = torch.float32 if device == "cpu" else torch.bfloat16
    q = torch.randn(2, 8, lq, 128, generator=gen).to(device, dt)
    k = (torch.randn(2, Hkv, 300, 128, generator=gen) * 4).to(getattr(torch, fmt)).to(device)
    v = (torch.randn(2, Hkv, 300, 128, generator=gen) * 4).to(getattr(torch, fmt)).to(device)
    ks = {"none": None, "float": 0.25, "tensor": torch.tensor([0.5]),
          "head": torch.tensor([0.5, 0.125])}[scales]
    vs = {"none": None, "float": 1.5, "tensor": torch.tensor([2.0]),
          "head": torch.tensor([0.75, 3.0])}[scales]
    ks, vs = (s.to(device) if isinstance(s, torch.Tensor) else s for s in (ks, vs))
    o = longattn.attention(q, k, v, causal=True, k_scale=ks, v_scale=vs)

    def values(x, s):
        x = to_np64(x)
        if s is None:
            return x
        s = np.asarray([s] if isinstance(s, float) else s.cpu().numpy(), dtype=np.float64)
        return x * (s.reshape(1, -1, 1, 1) if s.size > 1 else s.reshape(()))

    ref, _ = attention_ref(to_np64(q), values(k, ks), values(v, vs), causal=True)
    assert rel_err(to_np64(o), ref) < TOL["float32" if device == "cpu" else "bfloat16"]
    kernel = longattn.plan(q, k, v, causal=True, k_scale=ks, v_scale=vs).kernel
    assert kernel.startswith("cpu " if device == "cpu" else "sm80 "), kernel
    if device == "cuda":  # the unfused path reads K and V in q's dtype: refused by name
        with pytest.raises(longattn.UnsupportedError, match="kv_dtype"):
            longattn.attention(q, k, v, path="unfused")


def test_fp8_errors():
    q = torch.randn(1, 2, 3, 64)
    k8 = torch.randn(1, 2, 5, 64).to(torch.float8_e4m3fn)
    with pytest.raises(longattn.InvalidArgumentError, match="v.dtype"):
        longattn.attention(q, k8, k8.to(torch.float8_e5m2))
    with pytest.raises(longattn.InvalidArgumentError, match="k_scale"):
        longattn.attention(q, q, q, k_scale=0.5)
    with pytest.raises(longattn.InvalidArgumentError, match="v_scale"):
        longattn.attention(q, k8, k8, v_scale=torch.ones(3))
    with pytest.raises(longattn.InvalidArgumentError, match="k_scale and v_scale"):
        longattn.attention(q, k8, k8, k_scale=torch.ones(2), v_scale=1.0)
    with pytest.raises(longattn.InvalidArgumentError, match="k_scale = True"):
        longattn.attention(q, k8, k8, k_scale=True)
    # numpy scalars are floats too
    o = longattn.attention(q, k8, k8, k_scale=np.float32(0.5), v_scale=np.float64(2.0))
    assert torch.equal(o, longattn.attention(q, k8, k8, k_scale=0.5, v_scale=2.0))
    if torch.cuda.is_available():  # CUDA's unfused path reads K and V in q's dtype
        with pytest.raises(longattn.Error, match="kv_dtype"):
            longattn.attention(q.cuda(), k8.cuda(), k8.cuda(), path="unfused")


@pytest.mark.parametrize("device", DEVICES)
def test_num_splits(device):
    """num_splits fixes split_kv's slice count (AUTO splits at 2 and up, never at 1); the result
    is the reference's; a bad count raises naming it."""
    gen = torch.Generator().manual_seed(11)
    q = torch.randn(1, 8, 3, 64, generator=gen).to(device, torch.bfloat16)
    k = torch.randn(1, 2, 2000, 64, generator=gen).to(device, torch.bfloat16)
    v = torch.randn(1, 2, 2000, 64, generator=gen).to(device, torch.bfloat16)
    ref, _ = attention_ref(to_np64(q), to_np64(k), to_np64(v), True)
    for path, splits in (("auto", 7), ("split_kv", 150), ("auto", 1)):
        p = longattn.plan(q, k, v, causal=True, path=path, num_splits=splits)
        assert p.ok and p.path == ("fused" if splits == 1 else "split_kv"), p.reason
        if splits > 1:
            assert p.splits == splits
        o = longattn.attention(q, k, v, causal=True, path=path, num_splits=splits)
        assert rel_err(to_np64(o), ref) < TOL["bfloat16"]
    for bad, message in ((0.5, "num_splits = 0.5"), (True, "num_splits = True"),
                         (2 ** 40, "num_splits = 1099511627776"), (-3, "options.num_splits = -3"),
                         (1025, "options.num_splits = 1025")):
        with pytest.raises(longattn.InvalidArgumentError, match=message):
            longattn.attention(q, k, v, num_splits=bad)
    with pytest.raises(longattn.InvalidArgumentError, match="options.num_splits = 4"):
        longattn.attention(q, k, v, path="fused", num_splits=4)
