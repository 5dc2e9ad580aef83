#!/usr/bin/env python3
"""longattn against PyTorch's CPU scaled_dot_product_attention on issue 21's shapes, in one run.

Both get the same bf16 tensors [B, H, L, D] and the same thread count (torch.set_num_threads,
longattn's num_threads); causal is bottom-right aligned for both (torch through
causal_lower_right). Every output is checked against a float32 reference on sampled rows before
timing; then each shape is timed in --rounds rounds, the order alternating, and each side gets the
median of its rounds (a round: the median of --trials calls). GFLOPS = 4 * d * visible pairs * Hq
/ time. Prints which longattn CPU kernels ran (longattn.devices()).

  PYTHONPATH=... python3 bench/cpu_peers.py [--threads 2] [--rounds 3] [--out x.md]
"""
import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

import longattn

SHAPES = [  # name, Hq, Hkv, Lq, Lk, d, causal
    ("d256_512x16K", 16, 8, 512, 16384, 256, False),
    ("d256_512x16K_causal", 16, 8, 512, 16384, 256, True),
    ("d256_4Kx4K_causal", 16, 8, 4096, 4096, 256, True),
    ("d128_512x16K", 16, 8, 512, 16384, 128, False),
    ("d512_16/2_512x8K", 16, 2, 512, 8192, 512, False),
]


def visible_pairs(lq, lk, causal):
    if not causal:
        return lq * lk
    off = lk - lq
    return sum(max(0, min(lk, i + off + 1)) for i in range(lq))


def sdpa(q, k, v, causal):
    g = q.shape[1] // k.shape[1]
    kw = {"enable_gqa": True} if g > 1 else {}
    if causal and q.shape[2] != k.shape[2]:
        from torch.nn.attention.bias import causal_lower_right
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=causal_lower_right(q.shape[2], k.shape[2]), **kw)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, **kw)


def reference_rows(q, k, v, causal, rows):
    g = q.shape[1] // k.shape[1]
    lq, lk = q.shape[2], k.shape[2]
    out = []
    for h, i in rows:
        s = (k[0, h // g].float() @ q[0, h, i].float()) / q.shape[-1] ** 0.5
        if causal:
            s[i + lk - lq + 1:] = float("-inf")
        out.append(torch.softmax(s, 0) @ v[0, h // g].float())
    return torch.stack(out)


def timed(fn, trials):
    fn()
    ts = []
    for _ in range(trials):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cpu = [f"{d['name']} ({d['features']})" for d in longattn.devices() if d["kind"] == "cpu"]
    lines = [f"# CPU: longattn vs torch {torch.__version__} SDPA (bf16, {args.threads} threads)", "",
             f"longattn CPU: {cpu[0] if cpu else '?'}", "",
             "| shape | Hq/Hkv | Lq x Lk | d | causal | longattn ms | sdpa ms | longattn GFLOPS "
             "| sdpa GFLOPS | ratio (sdpa ms / longattn ms) | max err longattn / sdpa |",
             "|" + "---|" * 11]
    print("\n".join(lines), flush=True)
    for name, hq, hkv, lq, lk, d, causal in SHAPES:
        q = torch.randn(1, hq, lq, d, dtype=torch.bfloat16)
        k = torch.randn(1, hkv, lk, d, dtype=torch.bfloat16)
        v = torch.randn(1, hkv, lk, d, dtype=torch.bfloat16)
        run_la = lambda: longattn.attention(q, k, v, causal=causal, num_threads=args.threads)
        run_sd = lambda: sdpa(q, k, v, causal)
        rows = [(h, i) for h in (0, hq - 1) for i in (0, lq // 2, lq - 1)]
        ref = reference_rows(q, k, v, causal, rows)
        errs = []
        for fn in (run_la, run_sd):
            o = fn()
            got = torch.stack([o[0, h, i].float() for h, i in rows])
            errs.append((got - ref).abs().max().item())
        times = {"la": [], "sd": []}
        for r in range(args.rounds):
            order = [("la", run_la), ("sd", run_sd)]
            for key, fn in (order if r % 2 == 0 else order[::-1]):
                times[key].append(timed(fn, args.trials))
        la, sd = statistics.median(times["la"]), statistics.median(times["sd"])
        flops = 4 * d * visible_pairs(lq, lk, causal) * hq
        line = (f"| {name} | {hq}/{hkv} | {lq} x {lk} | {d} | {int(causal)} | {1e3 * la:.1f} | "
                f"{1e3 * sd:.1f} | {flops / la / 1e9:.0f} | {flops / sd / 1e9:.0f} | "
                f"{sd / la:.2f}x | {errs[0]:.1e} / {errs[1]:.1e} |")
        lines.append(line)
        print(line, flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
