"""Paged K/V against contiguous K/V on the same shapes: the kernel reads the cache in place through
a block table whose blocks are shuffled across the pool, at several page sizes.

    python bench/paged.py [--pages 1,16,64,256] [--rounds 3] [--blocks shuffled|ordered]
                          [--graph] [--lib build/liblongattn.so] [--out FILE.md]

With --lib, a build's C library through ctypes (bench/peers.py's bindings) instead of the package.

Each time is the median of --rounds rounds of CUDA-event timing (--graph: decode shapes as CUDA
graph replays, as runtimes run them); speed is contiguous time / paged time (1.0: no cost for
paging). Two contiguous baselines: head-major [B, H, L, D] and token-major
[B, L, H, D], the pool's own row order (its rows of one head are H * D apart, as in every page).
"""

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import Longattn, time_graph_ms, time_rounds_ms  # noqa: E402

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


def package_runner(q, k, v, o, paged=None):
    """(run, kernel and path) through the longattn package; paged = (table, page, kv_len)."""
    import longattn

    kw = {} if paged is None else dict(block_table=paged[0], page_size=paged[1], kv_len=paged[2])
    plan = longattn.plan(q, k, v, causal=True, out=o, **kw)
    if not plan.ok:
        return None, plan.reason
    return (lambda: longattn.attention(q, k, v, causal=True, out=o, **kw)), \
        f"{plan.kernel} ({plan.path})"


def c_api_runner(path):
    lib = Longattn(path)

    def prepare(q, k, v, o, paged=None):
        try:
            run, note, workspace = lib.prepare(q, k, v, o, True, paged)
        except RuntimeError as e:
            return None, str(e)
        return (lambda: (workspace, run())[1]), f"{lib.kernel} ({note.split()[0]})"

    return prepare


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", default="1,16,64,256")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--blocks", choices=["shuffled", "ordered"], default="shuffled",
                    help="the pool's blocks in random or in table order")
    ap.add_argument("--graph", action="store_true",
                    help="time decode shapes as CUDA graph replays (20 calls per graph)")
    ap.add_argument("--lib", help="a liblongattn.so to time instead of the longattn package")
    ap.add_argument("--out")
    args = ap.parse_args()
    prepare = c_api_runner(args.lib) if args.lib else package_runner
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
        graph = args.graph and lq == 1

        def timed(run):
            if not graph:
                return time_rounds_ms(run, args.rounds, calls)
            return statistics.median(time_graph_ms([run])[0] for _ in range(args.rounds))

        if graph:
            name += " (graph)"
        run, kernel = prepare(q, k, v, o)
        base = timed(run)
        lines.append(f"| {name} | contiguous head-major | {kernel} | {base:.3f} | 1.00 | |")
        kt, vt = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (k, v))
        run, kernel = prepare(q, kt, vt, o)
        tok = timed(run)
        lines.append(f"| {name} | contiguous token-major | {kernel} | {tok:.3f} "
                     f"| {base / tok:.2f} | 1.00 |")
        del kt, vt, run
        for page in pages:
            kp, vp, table = paged_copy(k, v, page, gen, args.blocks == "shuffled")
            run, kernel = prepare(q, kp, vp, o, (table, page, lk))
            if run is None:
                lines.append(f"| {name} | page {page} | refused: {kernel[:80]} | - | - | - |")
                continue
            try:
                ms = timed(run)
            except RuntimeError as e:  # a library that refuses paged K/V under capture
                lines.append(f"| {name} | page {page} | refused: {str(e)[:80]} | - | - | - |")
                continue
            lines.append(f"| {name} | page {page} | {kernel} | {ms:.3f} | {base / ms:.2f} | "
                         f"{tok / ms:.2f} |")
            del kp, vp
        print("\n".join(lines[-len(pages) - 2:]), flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
