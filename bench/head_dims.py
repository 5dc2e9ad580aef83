"""Fused prefill at head dims without a compiled kernel, against the compiled dim they are padded
to: the time of head dim d (rows padded to 16 bytes, as TMA needs) over the time of the next
compiled dim on the same shape, and the portable kernel's time at d (a second process with
LONGATTN_CUDA_KERNEL=sm80). TFLOPS count the real head dims.

    python bench/head_dims.py [--dims 8,40,72,...] [--len 4096] [--row-align 8] [--rounds 3]
                              [--out FILE.md]

Each time is the median of --rounds rounds of CUDA-event timing (20 calls a round).
"""

import argparse
import json
import os
import subprocess
import sys

import torch

import longattn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import time_rounds_ms  # noqa: E402

DEFAULT_DIMS = "8,32,40,64,72,80,96,100,112,128,136,160,192,200,256,320,384,448,500,512"


def aligned(d, row_align):  # elements per row: d rounded up to a multiple of row_align
    return (d + row_align - 1) // row_align * row_align


def time_ms(d, length, rounds, row_align):
    # [B, H, L, D] views of wider rows: the row strides are multiples of row_align elements.
    def make(h):
        wide = torch.randn(1, h, length, aligned(d, row_align), dtype=torch.bfloat16, device="cuda")
        return wide[..., :d]
    q, k, v, o = make(16), make(8), make(8), make(16)
    ms = time_rounds_ms(lambda: longattn.attention(q, k, v, causal=True, out=o), rounds, 20)
    plan = longattn.plan(q, k, v, causal=True, out=o)
    return ms, plan.kernel


def measure(dims, length, rounds, row_align):
    return {d: time_ms(d, length, rounds, row_align) for d in dims}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", default=DEFAULT_DIMS)
    ap.add_argument("--len", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--row-align", type=int, default=8, help="row stride multiple, elements")
    ap.add_argument("--out")
    ap.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    dims = [int(x) for x in args.dims.split(",")]
    if args.json_only:  # the sm80 child process
        print(json.dumps(measure(dims, args.len, args.rounds, args.row_align)))
        return
    auto = measure(dims, args.len, args.rounds, args.row_align)
    child = subprocess.run(
        [sys.executable, __file__, "--dims", args.dims, "--len", str(args.len), "--rounds",
         str(args.rounds), "--row-align", str(args.row_align), "--json-only"],
        env={**os.environ, "LONGATTN_CUDA_KERNEL": "sm80"}, capture_output=True, text=True,
        check=True)
    sm80 = {int(k): v for k, v in json.loads(child.stdout.strip().splitlines()[-1]).items()}
    native = [d for d in dims if "padded" not in auto[d][1]]
    flops = lambda d, ms: 4 * 16 * args.len * args.len / 2 * d / (ms * 1e-3) / 1e12
    lines = [
        f"# Fused prefill by head dim ({torch.cuda.get_device_name()}, bf16, 16q/8kv heads, "
        f"{args.len} x {args.len} causal, row strides a multiple of {args.row_align} elements; median "
        f"of {args.rounds} rounds)",
        "",
        "| head dim | kernel (AUTO) | ms | TFLOPS (real dims) | next compiled dim | its ms | "
        "time / next compiled | portable kernel ms | portable / AUTO |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d in dims:
        ms, kernel = auto[d]
        nxt = min((n for n in native if n >= d), default=None)
        ratio = f"{ms / auto[nxt][0]:.3f}" if nxt and nxt != d else "-"
        nxt_ms = f"{auto[nxt][0]:.3f}" if nxt and nxt != d else "-"
        lines.append(f"| {d} | {kernel} | {ms:.3f} | {flops(d, ms):.0f} | {nxt if nxt else '-'} "
                     f"| {nxt_ms} | {ratio} | {sm80[d][0]:.3f} | {sm80[d][0] / ms:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
