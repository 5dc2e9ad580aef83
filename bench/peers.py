#!/usr/bin/env python3
"""longattn against its peers on one GPU, in one run, on the same shapes and inputs.

Times longattn (through its C API, ctypes) and PyTorch's scaled_dot_product_attention backends
(flash, cuDNN, efficient) and FlexAttention (compiled once per shape, dynamic=False), checks every
output against an float32 reference on sampled rows, records each one's peak extra memory, and
prints one table. Also measures, in the same run, the bf16 matmul rate and the read ceiling (a
streaming read of 4 GiB) that the TFLOPS and GB/s columns are compared with.

  python3 bench/peers.py --lib build/liblongattn.so [--groups chunk,gemma,decode,grid]
                         [--peers longattn,flash,cudnn,efficient,flex] [--dims 128,256]
                         [--out bench/results/x.md]

Conventions (the FlashAttention papers'): FLOPs = 4 * d * (visible query-key pairs) * B * Hq, so
a causal square attention counts half the pairs. Causal is bottom-right aligned (query i sees key j
iff j <= i + Lk - Lq); SDPA gets it as torch.nn.attention.bias.causal_lower_right where Lq != Lk.
GQA runs natively (enable_gqa) where a backend takes it; a backend that refuses gets K/V expanded
to all query heads, marked "kv expanded", and its peak memory includes the copy.

Timing (the "timing" column): "call" is one call between two events, median of repeats: host work
per call (planning, launch) counts, as it does for an eager caller. The peers of a shape are timed
in --rounds rounds (3), the order rotating each round, and each gets the median of its rounds: a
kernel's time depends on what ran just before it (the card's clocks and power), so no peer may
always follow the same one. "graph" (the groups of
--graph-groups, decode by default) captures 20 calls into a CUDA graph after warm-up on a side
stream and times replays: what a serving runtime's decode step pays, the GPU time with the host
out of the way. The 20 calls rotate among copies of K/V of at least 150 MB together, so no call
finds the previous call's K/V in the 50 MB L2. The graph's own output of the first set is
checked against the reference too. A peer whose capture fails falls back to "call" and says why.
"""
import argparse
import ctypes
import math
import os
import statistics
import sys

import torch
import torch.nn.functional as F

# ---- longattn through ctypes: the structs of include/longattn/longattn.h, field by field.


class Strides(ctypes.Structure):
    _fields_ = [("batch", ctypes.c_int64), ("head", ctypes.c_int64), ("token", ctypes.c_int64)]


class Mask(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int32), ("data", ctypes.c_void_p),
                ("dims", ctypes.c_int64 * 4), ("strides", ctypes.c_int64 * 4)]


class Args(ctypes.Structure):
    _fields_ = [("q", ctypes.c_void_p), ("k", ctypes.c_void_p), ("v", ctypes.c_void_p),
                ("o", ctypes.c_void_p), ("lse", ctypes.c_void_p),
                ("dtype", ctypes.c_int32), ("device", ctypes.c_int32),
                ("batch", ctypes.c_int64), ("q_heads", ctypes.c_int64),
                ("kv_heads", ctypes.c_int64), ("q_len", ctypes.c_int64),
                ("kv_len", ctypes.c_int64), ("head_dim_qk", ctypes.c_int64),
                ("head_dim_v", ctypes.c_int64),
                ("q_strides", Strides), ("k_strides", Strides), ("v_strides", Strides),
                ("o_strides", Strides),
                ("scale", ctypes.c_float), ("causal", ctypes.c_int32),
                ("window_left", ctypes.c_int64), ("softcap", ctypes.c_float),
                ("sinks", ctypes.c_void_p), ("mask", Mask),
                ("block_table", ctypes.c_void_p), ("block_table_stride", ctypes.c_int64),
                ("page_size", ctypes.c_int64), ("num_blocks", ctypes.c_int64),
                ("kv_dtype", ctypes.c_int32), ("kv_scale_per_head", ctypes.c_int32),
                ("k_scale", ctypes.c_void_p), ("v_scale", ctypes.c_void_p)]


class Options(ctypes.Structure):
    _fields_ = [("path", ctypes.c_int32), ("memory_budget", ctypes.c_int64),
                ("num_threads", ctypes.c_int32), ("workspace", ctypes.c_void_p),
                ("workspace_bytes", ctypes.c_int64), ("log", ctypes.c_void_p),
                ("log_user", ctypes.c_void_p), ("stream", ctypes.c_void_p),
                ("num_splits", ctypes.c_int32)]


class Plan(ctypes.Structure):
    _fields_ = [("ok", ctypes.c_int32), ("status", ctypes.c_int32), ("path", ctypes.c_int32),
                ("device", ctypes.c_int32), ("threads", ctypes.c_int32),
                ("block_q", ctypes.c_int32), ("block_k", ctypes.c_int32),
                ("splits", ctypes.c_int32), ("transient_bytes", ctypes.c_int64),
                ("allocated_bytes", ctypes.c_int64), ("reason", ctypes.c_char * 512),
                ("kernel", ctypes.c_char * 64)]


PATHS = {0: "auto", 1: "reference", 2: "unfused", 3: "fused", 4: "split_kv"}
DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


class Longattn:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.lib.longattn_last_error.restype = ctypes.c_char_p
        for name in ("longattn_args_init", "longattn_options_init"):
            getattr(self.lib, name).restype = None

    def error(self):
        return self.lib.longattn_last_error().decode()

    def prepare(self, q, k, v, o, causal, paged=None):
        """Plans once; returns a callable running attention with a torch-allocated workspace, a
        note on the plan and the workspace. paged = (block table [B, pages] int32, page size,
        kv_len) with k, v the pools [blocks, H, page, D]."""
        args = Args()
        self.lib.longattn_args_init(ctypes.byref(args))
        args.q, args.k, args.v, args.o = q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr()
        args.dtype, args.device = DTYPES[q.dtype], 1
        (args.batch, args.q_heads, args.q_len, args.head_dim_qk) = q.shape
        args.kv_heads, args.kv_len, args.head_dim_v = k.shape[1], k.shape[2], v.shape[3]
        if paged is not None:
            table, args.page_size, args.kv_len = paged
            args.block_table, args.block_table_stride = table.data_ptr(), table.stride(0)
            args.num_blocks = k.shape[0]
        for name, t in (("q_strides", q), ("k_strides", k), ("v_strides", v), ("o_strides", o)):
            setattr(args, name, Strides(*t.stride()[:3]))
        args.causal = int(causal)
        args.window_left = -1
        opts = Options()
        self.lib.longattn_options_init(ctypes.byref(opts))
        opts.stream = torch.cuda.current_stream().cuda_stream
        nbytes = ctypes.c_int64(0)
        if self.lib.longattn_transient_bytes(ctypes.byref(args), 0, ctypes.byref(opts),
                                             ctypes.byref(nbytes)):
            raise RuntimeError(self.error())
        # The workspace comes from PyTorch's allocator, so the peak-memory column sees it.
        workspace = torch.empty(max(1, nbytes.value), dtype=torch.uint8, device="cuda")
        opts.workspace, opts.workspace_bytes = workspace.data_ptr(), nbytes.value
        plan = Plan()
        if self.lib.longattn_plan_attention(ctypes.byref(args), ctypes.byref(opts),
                                            ctypes.byref(plan)):
            raise RuntimeError(self.error())
        note = (f"{PATHS[plan.path]}" + (f" x{plan.splits}" if plan.splits > 1 else "") +
                (f" {plan.block_q}x{plan.block_k}" if plan.block_k > 0 else ""))
        self.kernel = plan.kernel.decode()

        def run():
            # The stream of the moment: a graph capture runs on torch's capture stream.
            opts.stream = torch.cuda.current_stream().cuda_stream
            if self.lib.longattn_attention(ctypes.byref(args), ctypes.byref(opts), None):
                raise RuntimeError(self.error())
            return o

        return run, note, workspace


# ---- shapes


def shapes(groups):
    out = []
    if "grid" in groups:  # 16K tokens per batch, hidden 2048
        for d in (64, 128, 256):
            for L in (1024, 4096, 16384):
                for causal in (False, True):
                    out.append(dict(group="grid", b=16384 // L, hq=2048 // d, hkv=2048 // d,
                                    lq=L, lk=L, d=d, causal=causal, kv_shared=False))
    if "chunk" in groups:  # chunked prefill, GQA 16/8
        for lq in (512, 2048):
            for lk in (16384, 65536, 131072):
                out.append(dict(group="chunk", b=1, hq=16, hkv=8, lq=lq, lk=lk, d=256,
                                causal=True, kv_shared=False))
    if "gemma" in groups:  # Gemma-4-style global layer: d=512, GQA 16/2, k == v
        for lk in (32768, 131072):
            out.append(dict(group="gemma", b=1, hq=16, hkv=2, lq=2048, lk=lk, d=512,
                            causal=True, kv_shared=True))
    if "decode" in groups:
        for d in (128, 256, 512):
            for hq, hkv in ((16, 2), (32, 8)):
                for lk in (32768, 131072):
                    out.append(dict(group="decode", b=1, hq=hq, hkv=hkv, lq=1, lk=lk, d=d,
                                    causal=True, kv_shared=False))
    return out


def visible_pairs(s):
    lq, lk = s["lq"], s["lk"]
    if not s["causal"]:
        return lq * lk
    off = lk - lq
    # sum over i of min(lk, max(0, i + off + 1))
    return sum(min(lk, max(0, i + off + 1)) for i in range(lq))


def inputs(s):
    """Random bf16 Q, K, V of shape s, the sampled rows checked, their float32 reference, FLOPs."""
    b, hq, hkv, lq, lk, d = s["b"], s["hq"], s["hkv"], s["lq"], s["lk"], s["d"]
    q = torch.randn(b, hq, lq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, hkv, lk, d, device="cuda", dtype=torch.bfloat16)
    v = k if s["kv_shared"] else torch.randn_like(k)
    rows = sorted({(h, i) for h in (0, hq - 1) for i in (0, lq // 2, lq - 1)})
    ref = reference_rows(q, k, v, s["causal"], rows)
    return q, k, v, rows, ref, 4 * d * visible_pairs(s) * b * hq


# ---- peers


def expand_kv(t, g):
    return t if g == 1 else t.repeat_interleave(g, dim=1)


def sdpa_runner(backend, q, k, v, causal, g):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.bias import causal_lower_right
    be = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
          "efficient": SDPBackend.EFFICIENT_ATTENTION}[backend]
    lq, lk = q.shape[2], k.shape[2]
    bias = causal_lower_right(lq, lk) if causal and lq != lk else None

    def call(kk, vv, gqa):
        with sdpa_kernel(be):
            if bias is not None:
                return F.scaled_dot_product_attention(q, kk, vv, attn_mask=bias, enable_gqa=gqa)
            return F.scaled_dot_product_attention(q, kk, vv, is_causal=causal, enable_gqa=gqa)

    try:
        call(k, v, g > 1)
        return (lambda: call(k, v, g > 1)), ""
    except Exception:  # this backend refuses GQA (or the shape): expand K/V and try again
        if g == 1:
            raise
        ke, ve = expand_kv(k, g), expand_kv(v, g)
        call(ke, ve, False)
        return (lambda: call(ke, ve, False)), "kv expanded"


def flex_runner(q, k, v, causal, g):
    import torch._dynamo
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    for knob in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 1000)
    compiled = torch.compile(flex_attention, dynamic=False)
    lq, lk = q.shape[2], k.shape[2]
    block_mask = None
    if causal:
        off = lk - lq
        block_mask = create_block_mask(lambda b, h, qi, kj: kj <= qi + off, None, None, lq, lk,
                                       device="cuda")
    run = lambda: compiled(q, k, v, block_mask=block_mask, enable_gqa=g > 1)
    run()
    return run, ""


# ---- checking and timing


def reference_rows(q, k, v, causal, rows):
    """float32 attention for a sample of (head, query) rows: [len(rows), Dv]."""
    g = q.shape[1] // k.shape[1]
    lq, lk, d = q.shape[2], k.shape[2], q.shape[3]
    out = []
    for h, i in rows:
        qi = q[0, h, i].float()
        kk, vv = k[0, h // g].float(), v[0, h // g].float()
        s = (kk @ qi) / math.sqrt(d)
        if causal:
            s[i + lk - lq + 1:] = float("-inf")
        out.append(torch.softmax(s, 0) @ vv)
    return torch.stack(out)


def max_rel_error(o, ref, rows):
    got = torch.stack([o[0, h, i].float() for h, i in rows])
    return ((got - ref).norm() / ref.norm()).item()


def time_ms(fn, budget_ms=400.0, max_reps=50):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    while len(times) < max_reps and (len(times) < 5 or sum(times) < budget_ms):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def time_rounds_ms(fn, rounds, calls):
    """Median over `rounds` of the mean time of `calls` back-to-back calls (launch gaps hidden)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / calls)
    return statistics.median(times)


def time_graph_ms(runners, calls=20, replays=10):
    """Per-call ms of `calls` calls captured in one CUDA graph (call i runs runners[i % n]), and
    the graph's own output of runners[0]'s first call."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the default stream, as torch's docs ask
        for _ in range(2):
            for r in runners:
                r()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = [runners[i % len(runners)]() for i in range(calls)]
    graph.replay()
    torch.cuda.synchronize()
    times = []
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(replays):
        start.record()
        graph.replay()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times) / calls, outs[0], graph


def rotation_sets(kv_bytes, total=150e6, most=8):
    return min(most, max(1, math.ceil(total / kv_bytes)))


def matmul_tflops():
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = time_ms(lambda: a @ b, budget_ms=200)
    return 2 * 8192 ** 3 / (ms * 1e-3) / 1e12


def read_gbps():
    """The read ceiling: the faster of two plain streaming reads of 4 GiB (torch's sum and amax
    reductions read every byte once and write a scalar), the bound for decode, which only reads."""
    a = torch.ones(1 << 30, dtype=torch.float32, device="cuda")
    best = min(time_ms(lambda: a.sum(), budget_ms=200), time_ms(lambda: a.amax(), budget_ms=200))
    return 4 * a.numel() / (best * 1e-3) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lib", default="build/liblongattn.so", help="path to liblongattn.so")
    ap.add_argument("--groups", default="grid,chunk,gemma,decode")
    ap.add_argument("--peers", default="longattn,flash,cudnn,efficient,flex")
    ap.add_argument("--dims", help="only shapes of these head dims, e.g. 128,256")
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    ap.add_argument("--rounds", type=int, default=3,
                    help="per-call shapes: rounds of timing, each peer once per round")
    ap.add_argument("--graph-groups", default="decode",
                    help="groups timed as CUDA graph replays (the others per call)")
    args = ap.parse_args()
    groups, peers = args.groups.split(","), args.peers.split(",")
    graph_groups = set(args.graph_groups.split(",")) if args.graph_groups else set()
    torch.manual_seed(0)
    la = Longattn(args.lib) if "longattn" in peers else None
    name = torch.cuda.get_device_name()
    peak, read = matmul_tflops(), read_gbps()
    lines = [f"# {name}: longattn vs peers (bf16)", "",
             f"bf16 matmul 8192^3: {peak:.0f} TFLOPS; read ceiling (streaming read of 4 GiB): "
             f"{read:.0f} GB/s; "
             f"torch {torch.__version__}", "",
             "| group | B | Hq/Hkv | Lq | Lk | d | causal | k=v | peer | timing | ms | TFLOPS | % mm "
             "| GB/s | % read | peak extra MB | rel err | note |",
             "|" + "---|" * 18]
    print("\n".join(lines), flush=True)
    dims = {int(x) for x in args.dims.split(",")} if args.dims else None
    for s in shapes(groups):
        if dims and s["d"] not in dims:
            continue
        b, hq, hkv, lq, lk, d = s["b"], s["hq"], s["hkv"], s["lq"], s["lk"], s["d"]
        g = hq // hkv
        q, k, v, rows, ref, flops = inputs(s)
        bytes_moved = (k.numel() * (1 if s["kv_shared"] else 2) + 2 * q.numel()) * 2
        use_graph = s["group"] in graph_groups
        kv_sets = [(k, v)]
        if use_graph:  # K/V copies for the graph's rotation (set 0 is the checked one)
            for _ in range(rotation_sets(bytes_moved) - 1):
                kk = torch.randn_like(k)
                kv_sets.append((kk, kk if s["kv_shared"] else torch.randn_like(v)))
        # Each peer is checked (and its peak memory taken) in turn; per-call peers are then timed
        # in rounds, the order rotating each round, so every one follows the same work: the card's
        # clock history moves a kernel's time by up to 16% with what ran before it (NOTES v0.6).
        done = {}
        for peer in peers:
            note, err, ms = "", float("nan"), float("nan")
            timing = "graph" if use_graph else "call"
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            keep = []

            def runner(kk, vv):
                if peer == "longattn":
                    o = torch.empty_like(q)
                    run, note, workspace = la.prepare(q, kk, vv, o, s["causal"])
                    keep.append(workspace)
                    return run, note
                if peer == "flex":
                    return flex_runner(q, kk, vv, s["causal"], g)
                return sdpa_runner(peer, q, kk, vv, s["causal"], g)

            run = None
            try:
                run, note = runner(k, v)
                out = run()
                torch.cuda.synchronize()
                err = max_rel_error(out, ref, rows)
                del out
                if use_graph:
                    # Peak memory of one call, before the rotation's runners and the graph pool.
                    extra = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
                    try:
                        runs = [run] + [runner(kk, vv)[0] for kk, vv in kv_sets[1:]]
                        ms, out, graph = time_graph_ms(runs)
                        err = max(err, max_rel_error(out, ref, rows))
                        del out, graph, runs
                        # The eager caller's view too (host work per call included).
                        note = f"{note} eager {1000 * time_ms(run, budget_ms=100):.0f} us".strip()
                    except Exception as e:  # not capturable: time per call, say why
                        torch.cuda.synchronize()
                        timing = "call"
                        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:60]
                        note = f"{note} graph failed: {why}".strip()
                        ms = time_ms(run)
                    run = None  # timed
                else:
                    extra = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
                status = "ok" if err < 2e-2 else "WRONG"
            except Exception as e:  # a peer that cannot run the shape: say why, keep going
                extra = float("nan")
                status = "n/a"
                note = (str(e).strip().splitlines() or [type(e).__name__])[0][:80]
                run = None
            done[peer] = dict(note=note, err=err, ms=ms, timing=timing, extra=extra,
                              status=status, run=run, keep=keep)
        timed = [p for p in peers if done[p]["run"] is not None]
        times = {p: [] for p in timed}
        for r in range(args.rounds):
            for p in timed[r % max(1, len(timed)):] + timed[:r % max(1, len(timed))]:
                if p not in times:
                    continue
                try:
                    times[p].append(time_ms(done[p]["run"], budget_ms=150, max_reps=20))
                except Exception as e:  # failed while timed (out of memory, say): say why
                    del times[p]
                    done[p]["status"] = "n/a"
                    done[p]["note"] = (str(e).strip().splitlines() or [type(e).__name__])[0][:80]
        for peer in peers:
            x = done[peer]
            ms = statistics.median(times[peer]) if peer in times else x["ms"]
            tflops = flops / (ms * 1e-3) / 1e12 if ms == ms else float("nan")
            gbps = bytes_moved / (ms * 1e-3) / 1e9 if ms == ms else float("nan")
            line = (f"| {s['group']} | {b} | {hq}/{hkv} | {lq} | {lk} | {d} | {int(s['causal'])} "
                    f"| {int(s['kv_shared'])} | {peer} | {x['timing']} | {ms:.4f} | {tflops:.1f} | "
                    f"{100 * tflops / peak:.1f} | {gbps:.0f} | {100 * gbps / read:.1f} | "
                    f"{x['extra']:.1f} | {x['err']:.1e} | {x['status']} {x['note']} |")
            lines.append(line)
            print(line, flush=True)
        del done, times
        del q, k, v, kv_sets
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
