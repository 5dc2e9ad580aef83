"""longattn.distributed on CPU over gloo: ring (pass-KV, zig-zag) and pass-Q attention in 2 and 4
processes against single-process longattn.attention of the whole sequence, and the errors.

The processes are spawned once per world size and run every case; the parent unshards what they
saved and compares, so each case is its own test."""

import datetime
import os
import sys
import tempfile

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import longattn  # noqa: E402
from longattn.distributed import (pass_q_attention, ring_attention, zigzag_shard,  # noqa: E402
                                  zigzag_unshard)

B, HQ, HKV, D, CHUNK = 2, 4, 2, 40, 12
KV_TOTAL, Q_LEN = 100, 30
# Slices of the KV cache per rank, not in rank order, several cut inside the query chunk.
SLICES = {2: [(0, 80), (80, 100)], 4: [(60, 85), (0, 25), (85, 100), (25, 60)]}
TOL = {"float32": 1e-5, "bfloat16": 1e-2}

# name: (kind, dtype, causal, sinks and softcap)
CASES = {
    "ring_f32_causal": ("ring", "float32", True, False),
    "ring_f32_full": ("ring", "float32", False, False),
    "ring_f32_causal_sinks_softcap": ("ring", "float32", True, True),
    "ring_bf16_causal": ("ring", "bfloat16", True, False),
    "ring_bf16_full_sinks_softcap": ("ring", "bfloat16", False, True),
    "passq_f32_causal": ("pass_q", "float32", True, False),
    "passq_f32_full": ("pass_q", "float32", False, False),
    "passq_f32_causal_sinks_softcap": ("pass_q", "float32", True, True),
    "passq_bf16_causal": ("pass_q", "bfloat16", True, False),
}


def inputs(name, world):
    """The full q, k, v (and sinks, softcap) of a case, the same in every process."""
    kind, dtype, _, extras = CASES[name]
    gen = torch.Generator().manual_seed(list(CASES).index(name) * 10 + world)
    lk = 2 * world * CHUNK if kind == "ring" else KV_TOTAL
    lq = lk if kind == "ring" else Q_LEN
    dt = getattr(torch, dtype)
    q = torch.randn(B, HQ, lq, D, generator=gen).to(dt)
    k = torch.randn(B, HKV, lk, D, generator=gen).to(dt)
    v = torch.randn(B, HKV, lk, D, generator=gen).to(dt)
    sinks = torch.randn(HQ, generator=gen) if extras else None
    return q, k, v, sinks, (5.0 if extras else 0.0)


def run_case(name, rank, world):
    kind, _, causal, _ = CASES[name]
    q, k, v, sinks, softcap = inputs(name, world)
    if kind == "ring":
        shard = lambda x: zigzag_shard(x, rank, world, dim=2)  # noqa: E731
        return ring_attention(shard(q), shard(k), shard(v), causal=causal, sinks=sinks,
                              softcap=softcap, return_lse=True, num_threads=1)
    lo, hi = SLICES[world][rank]
    return pass_q_attention(q, k[:, :, lo:hi], v[:, :, lo:hi], kv_start=lo, kv_total=KV_TOTAL,
                            causal=causal, sinks=sinks, softcap=softcap, return_lse=True,
                            num_threads=1)


def error_cases(rank, world):
    """The message of each call that must raise InvalidArgumentError on every rank."""
    q = torch.randn(B, HQ, 2 * CHUNK, D)
    k = torch.randn(B, HKV, 2 * CHUNK, D)
    calls = {
        "ring_odd_length": lambda: ring_attention(q[:, :, 1:], k[:, :, 1:], k[:, :, 1:]),
        "ring_window": lambda: ring_attention(q, k, k, window_left=8),
        "passq_window": lambda: pass_q_attention(q, k, k, kv_start=rank * 2 * CHUNK,
                                                 kv_total=world * 2 * CHUNK, window_left=8),
        # Every rank claims the same slice: a gap and an overlap.
        "passq_overlap": lambda: pass_q_attention(q, k, k, kv_start=0,
                                                  kv_total=world * 2 * CHUNK),
        # One rank alone is wrong; the others must raise too instead of waiting.
        "passq_one_bad_rank": lambda: pass_q_attention(
            q, k, k, kv_start=rank * 2 * CHUNK if rank else -1, kv_total=world * 2 * CHUNK),
    }
    out = {}
    for name, call in calls.items():
        try:
            call()
            out[name] = None
        except longattn.InvalidArgumentError as e:
            out[name] = str(e)
    return out


def worker(rank, world, init_file, out_dir):
    if sys.platform.startswith("linux"):  # loopback: the host name need not resolve
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    # A short timeout turns a hang (a rank left waiting) into a failure.
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        with torch.no_grad():
            results = {name: run_case(name, rank, world) for name in CASES}
        results["errors"] = error_cases(rank, world)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module", params=[2, 4], ids=lambda w: f"world{w}")
def spawned(request):
    """(world, [results of rank r]) from one spawn of `world` processes."""
    world = request.param
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        torch.multiprocessing.start_processes(worker, args=(world, init_file, tmp), nprocs=world,
                                              join=True, start_method="spawn")
        yield world, [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(world)]


def rel_err(x, ref):
    return ((x.double() - ref.double()).abs().max() / ref.double().abs().max().clamp(min=1e-6)
            ).item()


@pytest.mark.parametrize("name", list(CASES))
def test_matches_single_process(spawned, name):
    world, results = spawned
    kind, dtype, causal, _ = CASES[name]
    q, k, v, sinks, softcap = inputs(name, world)
    # The reference runs in float32 on the same (rounded) inputs.
    ref_o, ref_lse = longattn.attention(q.float(), k.float(), v.float(), causal=causal,
                                        sinks=sinks, softcap=softcap, return_lse=True)
    if kind == "ring":
        o = zigzag_unshard([r[name][0] for r in results], world, dim=2)
        lse = zigzag_unshard([r[name][1] for r in results], world, dim=2)
    else:  # every rank returns the whole result, bit for bit the same
        o, lse = results[0][name]
        for r in results[1:]:
            assert torch.equal(r[name][0], o) and torch.equal(r[name][1], lse)
    assert o.dtype == getattr(torch, dtype) and lse.dtype == torch.float32
    assert o.shape == ref_o.shape and lse.shape == ref_lse.shape
    assert rel_err(o, ref_o) < TOL[dtype]
    assert (lse - ref_lse).abs().max().item() < TOL[dtype] * ref_lse.abs().max().item()


def test_errors(spawned):
    world, results = spawned
    for r, res in enumerate(results):
        e = res["errors"]
        assert "equal and even" in e["ring_odd_length"], (r, e)
        assert "window_left = 8" in e["ring_window"], (r, e)
        assert "window_left = 8" in e["passq_window"], (r, e)
        assert "must tile" in e["passq_overlap"], (r, e)
        assert "rank(s) [0]" in e["passq_one_bad_rank"], (r, e)


def test_zigzag_roundtrip():
    world = 3
    x = torch.arange(2 * 3 * 2 * world * 5).reshape(2, 3, 2 * world * 5, 1)
    shards = [zigzag_shard(x, r, world, dim=2) for r in range(world)]
    # Rank 0 holds chunks 0 and 5 of 6 (5 positions each).
    assert shards[0][0, 0, :, 0].tolist() == list(range(5)) + list(range(25, 30))
    assert torch.equal(zigzag_unshard(shards, world, dim=2), x)
    xl = x.transpose(1, 2)  # [B, L, H, D]: another dim
    assert torch.equal(zigzag_unshard([zigzag_shard(xl, r, world, 1) for r in range(world)],
                                      world, 1), xl)


def test_zigzag_errors():
    x = torch.zeros(1, 1, 10, 4)
    with pytest.raises(longattn.InvalidArgumentError, match=r"x.shape\[2\] = 10.*divisible by 4"):
        zigzag_shard(x, 0, 2, dim=2)
    with pytest.raises(longattn.InvalidArgumentError, match="rank = 2"):
        zigzag_shard(x, 2, 2, dim=2)
    with pytest.raises(longattn.InvalidArgumentError, match="one shard per rank"):
        zigzag_unshard([x], 2, dim=2)


def test_requires_init():
    if dist.is_initialized():
        pytest.skip("a process group is already initialized here")
    q = torch.zeros(1, 1, 4, 8)
    with pytest.raises(longattn.InvalidArgumentError, match="init_process_group"):
        ring_attention(q, q, q)
