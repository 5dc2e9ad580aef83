"""torch.ops.longattn.attention: opcheck, torch.compile(fullgraph=True), fake tensors, CUDA graphs."""

import sys

import pytest

torch = pytest.importorskip("torch")
import longattn  # noqa: E402
import longattn.torch_ops  # noqa: E402,F401  (registers the op)

from reference import attention_ref  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def inputs(device, dtype=torch.float32, B=2, Hq=4, Hkv=2, Lq=5, Lk=17, D=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g).to(device, dtype)
            for s in ((B, Hq, Lq, D), (B, Hkv, Lk, D), (B, Hkv, Lk, D))]


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    q, k, v = inputs(device)
    sinks = torch.randn(4, device=device)
    mask = torch.rand(2, 1, 5, 17, device=device) > 0.3
    for kwargs in (dict(causal=True), dict(window_left=3, softcap=20.0, sinks=sinks),
                   dict(mask=mask, scale=0.1)):
        torch.library.opcheck(torch.ops.longattn.attention.default, (q, k, v), kwargs)
    qb, kb, vb = (x.transpose(1, 2) for x in (q, k, v))  # [B, L, H, D] views
    torch.library.opcheck(torch.ops.longattn.attention.default, (qb, kb, vb),
                          dict(layout="blhd", causal=True))


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph(device):
    q, k, v = inputs(device)

    def layer(q, k, v):
        o = longattn.attention(q * 2, k, v, causal=True)
        return o.sum(-1) + 1

    compiled = torch.compile(layer, fullgraph=True)
    expected = layer(q, k, v)
    assert torch.allclose(compiled(q, k, v), expected, atol=1e-5)
    o, lse = torch.compile(lambda q, k, v: longattn.attention(q, k, v, return_lse=True),
                           fullgraph=True)(q, k, v)
    ref_o, ref_lse = attention_ref(q.double().cpu().numpy(), k.double().cpu().numpy(),
                                   v.double().cpu().numpy())
    tol = 1e-4 if device == "cpu" else 2e-2  # CUDA's fused path rounds float32 to bf16 per tile
    assert abs(o.cpu().double().numpy() - ref_o).max() < tol
    assert abs(lse.cpu().double().numpy() - ref_lse).max() < tol


def test_fake_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        q = torch.empty(2, 9, 8, 256, dtype=torch.bfloat16)  # blhd
        k = torch.empty(2, 40, 2, 256, dtype=torch.bfloat16)
        v = torch.empty(2, 40, 2, 128, dtype=torch.bfloat16)
        o, lse = longattn.attention(q, k, v, layout="blhd", return_lse=True)
        assert o.shape == (2, 9, 8, 128) and o.dtype == torch.bfloat16
        assert lse.shape == (2, 8, 9) and lse.dtype == torch.float32


def test_meta_tensors():
    q, k, v = (torch.empty(s, device="meta") for s in ((1, 4, 3, 64), (1, 2, 9, 64), (1, 2, 9, 32)))
    assert longattn.attention(q, k, v).shape == (1, 4, 3, 32)


def test_op_refuses_grad():
    q, k, v = inputs("cpu")
    q.requires_grad_()
    with pytest.raises(longattn.InvalidArgumentError, match="requires grad"):
        torch.ops.longattn.attention(q, k, v)


def test_per_call_path_matches_full_path():
    """The cached per-call path (the extension's TorchCalls, then api._run_torch_cached) gives the
    bits of the checked path (api.run with an `out`, which never takes it), whatever signatures
    come in between; a new stride pattern, dtype or option is a new signature."""
    from longattn import api
    q, k, v = inputs("cpu", Lq=3, Lk=11)
    ks = torch.randn(2, 11, 2, 64).transpose(1, 2)  # same shape as k, other strides
    cases = [(q, k, v, dict(causal=True)), (q, ks, v, dict(causal=True)),
             (q, k, v, dict(window_left=2, softcap=5.0)), (q.half(), k.half(), v.half(), {}),
             (q, k, v, dict(causal=True, scale=0.3))]
    for _ in range(2):
        for q_, k_, v_, kw in cases:
            out = torch.empty(q_.shape[:3] + (v_.shape[3],), dtype=q_.dtype)
            ref_o, ref_lse = api.run(q_, k_, v_, out=out, return_lse=True, **kw)
            o, lse = longattn.attention(q_, k_, v_, return_lse=True, **kw)
            assert torch.equal(o, ref_o) and torch.equal(lse, ref_lse)
            o, lse = torch.ops.longattn.attention(q_, k_, v_, **kw)
            assert torch.equal(o, ref_o) and torch.equal(lse, ref_lse)
            assert torch.equal(longattn.attention(q_, k_, v_, **kw), ref_o)
    # Errors keep their kind on the per-call path, and grad is checked there too.
    for _ in range(2):
        with pytest.raises(longattn.OverBudgetError):
            longattn.attention(q, k, v, path="unfused", memory_budget=1)
    qg = q.clone().requires_grad_()
    with pytest.raises(longattn.InvalidArgumentError, match="requires grad"):
        longattn.attention(qg, k, v)
    with torch.no_grad():
        assert torch.equal(longattn.attention(qg, k, v), longattn.attention(q, k, v))
    with pytest.raises(longattn.InvalidArgumentError, match="4-d"):
        longattn.attention(q[0], k[0], v[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_capture():
    """Decode steps captured into a CUDA graph, split-KV workspace from torch's allocator."""
    q, k, v = inputs("cuda", torch.bfloat16, B=1, Hq=16, Hkv=2, Lq=1, Lk=8192, D=128)
    eager = longattn.attention(q, k, v)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        longattn.attention(q, k, v)  # warm up on the capture stream
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = longattn.attention(q, k, v)
    q.copy_(torch.randn_like(q))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.allclose(out.float(), longattn.attention(q, k, v).float(), atol=1e-2)
    assert not torch.equal(out, eager)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_current_stream():
    q, k, v = inputs("cuda", torch.float16, Lq=64, Lk=4096, D=128)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        o = longattn.attention(q, k, v, causal=True)
        o2 = o * 1  # same stream: ordered after the attention kernel without a sync
    s.synchronize()
    assert torch.equal(o, o2)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float().repeat_interleave(2, 1), v.float().repeat_interleave(2, 1),
        attn_mask=torch.ones(64, 4096, dtype=torch.bool, device="cuda").tril(4096 - 64))
    assert (o.float() - ref).abs().max() < 2e-2


# --- the C++ kernel (python/src/torch_op.cpp) against the Python kernel (torch_ops._kernel) ---

def _native():
    from longattn import torch_ops
    return torch_ops.NATIVE_CUDA if torch.cuda.is_available() else torch_ops.NATIVE_CPU


def test_native_kernel_registered():
    """From torch 2.10 on the op's kernels are the extension's (unless LONGATTN_TORCH_OP=python)."""
    import os
    from longattn import torch_ops
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 10) or os.environ.get("LONGATTN_TORCH_OP") == "python":
        pytest.skip("the Python kernel serves this torch")
    assert torch_ops.NATIVE_CPU, torch_ops._why
    if torch.version.cuda:
        assert torch_ops.NATIVE_CUDA, torch_ops._why


def _cases(device):
    """(q, k, v, kwargs) over layouts, dtypes, GQA, masks, sinks, paging, odd strides and errors."""
    g = torch.Generator().manual_seed(1)

    def rnd(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=g).to(device, dtype)

    q, k, v = rnd(2, 4, 5, 64), rnd(2, 2, 17, 64), rnd(2, 2, 17, 64)
    cases = []
    for dt in (torch.float32, torch.float16, torch.bfloat16):
        qd, kd, vd = q.to(dt), k.to(dt), v.to(dt)
        cases += [(qd, kd, vd, {}), (qd, kd, vd, dict(causal=True)),
                  (qd, kd, vd, dict(causal=True, window_left=3, softcap=20.0, scale=0.2))]
        qb, kb, vb = (x.transpose(1, 2) for x in (qd, kd, vd))  # [B, L, H, D] views
        cases += [(qb, kb, vb, dict(layout="blhd")), (qb, kb, vb, dict(layout="blhd", causal=True))]
        cases += [(qb.contiguous(), kb.contiguous(), vb.contiguous(), dict(layout="blhd"))]
    # MQA, Dv != Dqk, odd strides (token-strided slices, a broadcast head), k == v, Lq > Lk.
    cases += [(q, k[:, :1], v[:, :1], {}), (q, k, rnd(2, 2, 17, 32), dict(causal=True)),
              (rnd(2, 4, 10, 64)[:, :, ::2], rnd(2, 2, 34, 64)[:, :, ::2], v, {}),
              (q, k[:, :1].expand(2, 2, 17, 64), v, {}), (q, k, k, dict(causal=True)),
              (rnd(2, 4, 20, 64), k, v, dict(causal=True)), (q, k, v, dict(scale=0.0)),
              (rnd(1, 8, 1, 128), rnd(1, 2, 300, 128), rnd(1, 2, 300, 128), dict(num_threads=1))]
    for path in ("reference", "unfused", "fused", "split_kv"):
        cases.append((q, k, v, dict(path=path, causal=True)))
    cases += [(q, k, v, dict(memory_budget=1 << 30)),
              (q, k, v, dict(path="unfused", memory_budget=1))]
    cases += [(q, k, v, dict(num_splits=3)), (q, k, v, dict(path="split_kv", num_splits=40)),
              (q, k, v, dict(num_splits=1, causal=True)), (q, k, v, dict(num_splits=-1)),
              (q, k, v, dict(path="fused", num_splits=2)), (q, k, v, dict(num_splits=1 << 40))]
    sinks = rnd(4)
    mask = rnd(2, 1, 5, 17) > 0.3
    cases += [(q, k, v, dict(sinks=sinks)), (q, k, v, dict(sinks=sinks, causal=True, softcap=5.0)),
              (q, k, v, dict(mask=mask)), (q, k, v, dict(mask=mask.to(torch.uint8))),
              (q, k, v, dict(mask=rnd(5, 17))), (q, k, v, dict(mask=rnd(2, 4, 5, 17)[..., ::1])),
              (q, k, v, dict(mask=rnd(17) > 0)), (q, k, v, dict(mask=rnd(4, 1, 17))),
              (q, k, v, dict(mask=rnd(2, 4, 5, 34)[..., ::2], sinks=sinks, window_left=4))]
    # Paged K/V: pools of 8 blocks of 4 tokens, per layout.
    kp, vp = rnd(8, 2, 4, 64), rnd(8, 2, 4, 64)
    bt = torch.tensor([[3, 1, 7, 0], [2, 5, 6, 4]], dtype=torch.int32, device=device)
    cases += [(q, kp, vp, dict(block_table=bt)), (q, kp, vp, dict(block_table=bt, kv_len=13)),
              (q, kp, vp, dict(block_table=bt, page_size=4, kv_len=16, causal=True)),
              (q.transpose(1, 2), kp.transpose(1, 2), vp.transpose(1, 2),
               dict(block_table=bt, layout="blhd", kv_len=9)),
              (q, kp, vp, dict(block_table=bt[:, :3], kv_len=0, mask=rnd(5, 1) > 0))]
    # Errors: each of _Call's checks, then the library's own.
    cases += [
        (q, k, v, dict(layout="bhdl")), (q, k, v, dict(layout="it's")), (q, k, v, dict(path="x")),
        (q.double(), k.double(), v.double(), {}), (q, k.half(), v, {}), (q, k, v.half(), {}),
        (q.int(), k, v, {}), (q[0], k, v, {}), (q, k[0], v, {}), (q, k, v[..., None], {}),
        (q, k, v, dict(layout="blhd")), (q, k[..., ::2], v, {}),
        (q.transpose(2, 3).contiguous().transpose(2, 3), k, v, {}),
        (q, k, rnd(2, 2, 16, 64), {}), (q, rnd(1, 2, 17, 64), v, {}), (q, k, rnd(2, 1, 17, 64), {}),
        (q, rnd(2, 2, 17, 32), v, {}), (q, k, v, dict(kv_len=3)), (q, k, v, dict(kv_len=17)),
        (q, k, v, dict(page_size=17)),
        (q, kp, vp, dict(block_table=bt.long())), (q, kp, vp, dict(block_table=bt[0])),
        (q, kp, vp, dict(block_table=bt[:1])),
        (q, kp, vp, dict(block_table=bt.t().contiguous().t())),
        (q, kp, vp, dict(block_table=bt, page_size=8)),
        (q, kp, vp, dict(block_table=bt, kv_len=17)), (q, kp, vp, dict(block_table=bt, kv_len=-1)),
        (q, kp, rnd(7, 2, 4, 64), dict(block_table=bt)),
        (q, k, v, dict(sinks=rnd(3))), (q, k, v, dict(sinks=sinks.double())),
        (q, k, v, dict(sinks=rnd(4, 2)[:, 0])), (q, k, v, dict(sinks=rnd(4, 1))),
        (q, k, v, dict(mask=rnd(5, 17).half())), (q, k, v, dict(mask=rnd(1, 2, 1, 5, 17))),
        (q, k, v, dict(mask=rnd(3, 17))), (q, k, v, dict(mask=rnd(2, 4, 5, 16))),
        (q, k, v, dict(window_left=-2)), (q, k, v, dict(softcap=-1.0)),
        (q, k, v, dict(num_threads=-1)), (rnd(2, 3, 5, 64), k, v, {}),
    ]
    if hasattr(torch, "float8_e4m3fn"):  # an FP8 cache: refused by the op (eager API only)
        cases += [(q, k.to(torch.float8_e4m3fn), v.to(torch.float8_e4m3fn), {})]
    if device == "cuda":
        cases += [(q, k.cpu(), v, {}), (q, k, v, dict(sinks=sinks.cpu())),
                  (q, k, v, dict(mask=mask.cpu())), (q, kp, vp, dict(block_table=bt.cpu()))]
    return cases


def _outcome(fn, q, k, v, kw):
    try:
        return fn(q, k, v, **kw)
    except Exception as e:  # noqa: BLE001 - the comparison is the point
        return e


@pytest.mark.parametrize("device", DEVICES)
def test_native_kernel_matches_python_kernel(device):
    """The C++ kernel reads the arguments as api._Call does: the same bits, strides and dtypes, or
    the same exception class and message; and it writes nothing but its outputs."""
    from longattn import torch_ops
    if not _native():
        pytest.skip("the Python kernel serves this torch")
    for i, (q, k, v, kw) in enumerate(_cases(device)):
        inputs = [x.clone() for x in (q, k, v, *(t for t in kw.values() if torch.is_tensor(t)))]
        with torch.no_grad():
            got = _outcome(torch.ops.longattn.attention, q, k, v, kw)
            want = _outcome(torch_ops._kernel, q, k, v, kw)
        case = f"case {i}: {tuple(q.shape)} {q.dtype} {kw.keys()}"
        if isinstance(want, Exception):
            assert type(got) is type(want), f"{case}: {got!r} != {want!r}"
            assert str(got) == str(want), case
            continue
        assert not isinstance(got, Exception), f"{case}: {got!r}"
        for a, b in zip(got, want):
            assert a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype, case
            assert a.device == b.device, case
            assert torch.equal(a, b), case
        after = [q, k, v, *(t for t in kw.values() if torch.is_tensor(t))]
        assert all(torch.equal(x, y) for x, y in zip(inputs, after)), case


@pytest.mark.parametrize("device", DEVICES)
def test_native_kernel_grad(device):
    """Inputs that require grad are refused while grad mode is on (before or after the argument
    checks, as in the Python path), accepted under no_grad."""
    from longattn import torch_ops
    q, k, v = inputs(device)
    for name in "qkv":
        args = dict(q=q, k=k, v=v)
        args[name] = args[name].clone().requires_grad_()
        for kw in ({}, dict(causal=True, sinks=torch.zeros(4, device=device))):
            with pytest.raises(longattn.InvalidArgumentError, match=f"^{name} requires grad"):
                torch.ops.longattn.attention(*args.values(), **kw)
            with torch.no_grad():
                o, lse = torch.ops.longattn.attention(*args.values(), **kw)
            assert not o.requires_grad
            assert torch.equal(o, torch_ops._kernel(q, k, v, **kw)[0])
    # With grad mode on and nothing requiring grad the op runs.
    assert torch.equal(torch.ops.longattn.attention(q, k, v)[0], longattn.attention(q, k, v))
    # The argument errors come first where the Python path checks them first (sinks given).
    qg = q.clone().requires_grad_()
    for fn in (torch.ops.longattn.attention, torch_ops._kernel):
        with pytest.raises(longattn.InvalidArgumentError, match="sinks"):
            fn(qg, k, v, sinks=torch.zeros(3, device=device))
        with pytest.raises(longattn.InvalidArgumentError, match="requires grad"):
            fn(qg, k, v, layout="x")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_native_kernel_releases_tensors():
    """Every tensor the kernel receives or makes is released once: 300 calls on fresh 1 MiB
    tensors, failing ones included, leave the resident memory where it was."""
    import gc
    import os
    if not _native():
        pytest.skip("the Python kernel serves this torch")
    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        gc.collect()
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    def step(i):
        q = torch.randn(1, 4, 64, 64)
        k, v = torch.randn(1, 2, 2048, 64), torch.randn(1, 2, 2048, 64)
        kw = dict(sinks=torch.zeros(4), mask=torch.ones(64, 2048, dtype=torch.bool))
        if i % 3 == 2:
            kw["sinks"] = torch.zeros(5)  # an argument error after every handle was taken
        try:
            with torch.no_grad():
                torch.ops.longattn.attention(q, k, v, causal=True, **kw)
        except longattn.InvalidArgumentError:
            assert i % 3 == 2

    for i in range(30):
        step(i)
    before = rss()
    for i in range(300):
        step(i)
    assert rss() - before < 64 << 20  # a leak of q, k, v, mask or o would be ~1 GiB


def test_python_kernel_fallback():
    """LONGATTN_TORCH_OP=python keeps the Python kernel, with one log line saying so."""
    import os
    import subprocess
    code = ("import logging; logging.basicConfig(); import torch, longattn.torch_ops as t; "
            "q = torch.randn(1, 2, 3, 8); o, lse = torch.ops.longattn.attention(q, q, q); "
            "print(t.NATIVE_CPU, t.NATIVE_CUDA, o.shape == q.shape)")
    env = dict(os.environ, LONGATTN_TORCH_OP="python")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False", "True"]
    lines = [x for x in r.stderr.splitlines() if "longattn" in x]
    assert len(lines) == 1 and "LONGATTN_TORCH_OP=python" in lines[0], r.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_op_cuda_graph_capture():
    """The op itself captured into a CUDA graph: outputs and the split-KV workspace from torch's
    allocator (the graph's pool), the kernels on the capture stream."""
    q, k, v = inputs("cuda", torch.bfloat16, B=1, Hq=16, Hkv=2, Lq=1, Lk=8192, D=128)
    op = torch.ops.longattn.attention
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        op(q, k, v)  # warm up on the capture stream
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out, lse = op(q, k, v)
    q.copy_(torch.randn_like(q))
    graph.replay()
    torch.cuda.synchronize()
    o2, lse2 = op(q, k, v)
    assert torch.allclose(out.float(), o2.float(), atol=1e-2)
    assert torch.allclose(lse, lse2, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_op_cuda_graph_capture_paged():
    """Paged decode captured into a CUDA graph, as runtimes capture their decode step: the block
    table is read when the graph runs, so a replay after the table changed in place uses the new
    ids; an id outside the pool turns that sequence's rows into NaN (outside a capture it
    raises)."""
    B, Hq, Hkv, D, page, pages, blocks = 3, 16, 2, 128, 16, 40, 130
    g = torch.Generator().manual_seed(3)
    q = torch.randn(B, Hq, 1, D, generator=g).to("cuda", torch.bfloat16)
    kp = torch.randn(blocks, Hkv, page, D, generator=g).to("cuda", torch.bfloat16)
    vp = torch.randn(blocks, Hkv, page, D, generator=g).to("cuda", torch.bfloat16)
    ids = torch.randperm(blocks, generator=g)[:B * pages].to(torch.int32).view(B, pages)
    table = ids.cuda()
    kv_len = pages * page - 5
    op = torch.ops.longattn.attention
    call = lambda t: op(q, kp, vp, block_table=t, kv_len=kv_len)  # noqa: E731
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        call(table)  # warm up on the capture stream
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out, lse = call(table)
    for rows in (ids, ids.roll(1, dims=0)):
        table.copy_(rows)
        graph.replay()
        torch.cuda.synchronize()
        want, want_lse = call(rows.cuda())
        assert torch.equal(out, want) and torch.equal(lse, want_lse)
    bad = ids.roll(1, dims=0).clone()
    bad[1, -1] = blocks
    with pytest.raises(longattn.InvalidArgumentError, match="block_table"):
        call(bad.cuda())
    table.copy_(bad)
    graph.replay()
    torch.cuda.synchronize()
    assert out[1].isnan().all() and lse[1].isnan().all()
    assert torch.equal(out[[0, 2]], want[[0, 2]]) and torch.equal(lse[[0, 2]], want_lse[[0, 2]])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_op_cuda_current_stream_and_device():
    q, k, v = inputs("cuda", torch.float16, Lq=64, Lk=4096, D=128)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        o, _ = torch.ops.longattn.attention(q, k, v, causal=True)
        o2 = o * 1  # same stream: ordered after the attention kernel without a sync
    s.synchronize()
    assert torch.equal(o, o2)
    assert torch.equal(o, longattn.attention(q, k, v, causal=True))
    if torch.cuda.device_count() > 1:  # tensors on a device other than the current one
        q1, k1, v1 = (x.to("cuda:1") for x in (q, k, v))
        o1, _ = torch.ops.longattn.attention(q1, k1, v1, causal=True)
        assert o1.device == q1.device and torch.equal(o1.cpu(), o.cpu())
