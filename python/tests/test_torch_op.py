"""torch.ops.longattn.attention: opcheck, torch.compile(fullgraph=True), fake tensors, CUDA graphs."""

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
