"""Paged K/V against contiguous K/V on the same shapes: the kernel reads the cache in place through
a block table whose blocks are shuffled across the pool, at several page sizes.

    python bench/paged.py [--pages 1,16,64,256] [--rounds 3] [--out FILE.md]

Each time is the median of --rounds rounds of CUDA-event timing; speed is contiguous time / paged
time (1.0: no cost for paging). Two contiguous baselines: head-major [B, H, L, D] and token-major
[B, L, H, D], the pool's own row order (its rows of one head are H * D apart, as in every page).
"""

import argparse
import os
import sys

import torch

import longattn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import time_rounds_ms  # noqa: E402

# (name, batch, q heads, kv heads, q_len, kv_len, head dim)
SHAPES = [
    ("prefill 2048 x 32K d=128", 1, 32, 8, 2048, 32768, 128),
    ("prefill 2048 x 32K d=256", 1, 16, 8, 2048, 32768, 256),
    ("prefill 512 x 16K d=512", 1, 16, 2, 512, 16384, 512),
    ("decode 1 x 32K d=128 B=8", 8, 32, 8, 1, 32768, 128),
]


def paged_copy(k, v, page, gen, shuffled=True):
    """K/V [B, H, L, D] as pools [blocks, page, H, D] (vLLM's layout) in shuffled (or table) order,
    viewed as [blocks, H, page, D], and the block table."""
    b, h, length, d = k.shape
    pages = (length + page - 1) // page
    blocks = b * pages
    perm = (torch.randperm(blocks, generator=gen) if shuffled else torch.arange(blocks)).to(
        torch.int32)
    table = perm.view(b, pages).to("cuda")
    pools = []
    for t in (k, v):
        pool = torch.zeros(blocks, page, h, d, dtype=t.dtype, device="cuda")
        padded = torch.zeros(b, pages * page, h, d, dtype=t.dtype, device="cuda")
        padded[:, :length] = t.transpose(1, 2)
        pool[table.view(-1).long()] = padded.view(blocks, page, h, d)
        pools.append(pool.transpose(1, 2))
    return pools[0], pools[1], table


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", default="1,16,64,256")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--blocks", choices=["shuffled", "ordered"], default="shuffled",
                    help="the pool's blocks in random or in table order")
    ap.add_argument("--out")
    args = ap.parse_args()
    pages = [int(x) for x in args.pages.split(",")]
    gen = torch.Generator().manual_seed(0)
    lines = [
        f"# Paged K/V vs contiguous ({torch.cuda.get_device_name()}, bf16, causal, {args.blocks} "
        f"blocks; median of {args.rounds} rounds)",
        "",
        "| shape | layout | kernel | ms | vs contiguous head-major | vs contiguous token-major |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, b, hq, hkv, lq, lk, d in SHAPES:
        q = torch.randn(b, hq, lq, d, dtype=torch.bfloat16, device="cuda")
        k = torch.randn(b, hkv, lk, d, dtype=torch.bfloat16, device="cuda")
        v = torch.randn(b, hkv, lk, d, dtype=torch.bfloat16, device="cuda")
        o = torch.empty_like(q)
        calls = 200 if lq == 1 else 10
        base = time_rounds_ms(lambda: longattn.attention(q, k, v, causal=True, out=o), args.rounds,
                              calls)
        plan = longattn.plan(q, k, v, causal=True, out=o)
        lines.append(f"| {name} | contiguous head-major | {plan.kernel} ({plan.path}) | {base:.3f} "
                     "| 1.00 | |")
        kt, vt = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (k, v))
        tok = time_rounds_ms(lambda: longattn.attention(q, kt, vt, causal=True, out=o),
                             args.rounds, calls)
        plan = longattn.plan(q, kt, vt, causal=True, out=o)
        lines.append(f"| {name} | contiguous token-major | {plan.kernel} ({plan.path}) | {tok:.3f} "
                     f"| {base / tok:.2f} | 1.00 |")
        del kt, vt
        for page in pages:
            kp, vp, table = paged_copy(k, v, page, gen, args.blocks == "shuffled")
            run = lambda: longattn.attention(q, kp, vp, causal=True, out=o, block_table=table,
                                             page_size=page, kv_len=lk)
            plan = longattn.plan(q, kp, vp, causal=True, out=o, block_table=table, page_size=page,
                                 kv_len=lk)
            if not plan.ok:
                lines.append(f"| {name} | page {page} | refused: {plan.reason[:80]} | - | - | - |")
                continue
            ms = time_rounds_ms(run, args.rounds, calls)
            lines.append(f"| {name} | page {page} | {plan.kernel} ({plan.path}) | {ms:.3f} | "
                         f"{base / ms:.2f} | {tok / ms:.2f} |")
            del kp, vp
        print("\n".join(lines[-len(pages) - 2:]), flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
