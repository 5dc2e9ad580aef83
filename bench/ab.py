#!/usr/bin/env python3
"""Interleaved A/B of longattn builds (and cuDNN) in one process, shape by shape.

    python3 bench/ab.py A.so B.so [C.so ...] [--groups grid,chunk] [--dims 128] [--rounds N]
                        [--out F.md]

Why a tool of its own: the card's clock and power history moves a kernel's time by up to 16%
depending on what ran before it (bench/NOTES.md v0.6), so two builds timed in two processes, or
one after the other, are not comparable. Here every shape times each build and cuDNN's SDPA in
turns, round after round, on the same tensors, in the orders of a Williams square so that each one
follows every other equally often (what ran just before moves a power-bound shape's time). Give a copy of A as
one more build for an A/A control: its ratio is the harness's own spread. The table gives the
medians, each build against the first (A) and against cuDNN.
Every build is checked against the same reference rows first; a wrong one is reported, not timed.
"""
import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402  (its C API bindings, shapes, reference and timer)


def williams_square(n):
    """Orders of 0..n-1 in which every ordered pair of neighbours occurs equally often: n rows
    (each pair once) for even n, and these with their mirrors (each pair twice) for odd n."""
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        if len(first) % 2:
            first.append(lo)
            lo += 1
        else:
            first.append(hi)
            hi -= 1
    rows = [[(x + i) % n for x in first] for i in range(n)]
    return rows + [row[::-1] for row in rows] if n % 2 else rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("libs", nargs="+", help="liblongattn.so of each build; the first is the baseline")
    ap.add_argument("--groups", default="grid,chunk,gemma")
    ap.add_argument("--dims", help="only shapes of these head dims, e.g. 128,256")
    ap.add_argument("--rounds", type=int,
                    help="rounds of timing (default: one Williams square, n or 2n rounds)")
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    args = ap.parse_args()
    torch.manual_seed(0)
    names = [chr(ord("A") + i) for i in range(len(args.libs))]
    builds = {n: peers.Longattn(path) for n, path in zip(names, args.libs)}
    dims = {int(x) for x in args.dims.split(",")} if args.dims else None
    cols = names + ["cuDNN"] + [f"{n} / A" for n in names[1:]] + [f"{n} / cuDNN" for n in names]
    lines = [f"# {torch.cuda.get_device_name()}: " +
             ", ".join(f"{n} = {path}" for n, path in zip(names, args.libs)) +
             f"; {args.rounds or 'one Williams square of'} interleaved rounds, TFLOPS of the median",
             "",
             "| group | B | Hq/Hkv | Lq | Lk | d | causal | " + " | ".join(cols) + " | note |",
             "|" + "---|" * (8 + len(cols))]
    print("\n".join(lines), flush=True)
    nan = float("nan")
    for s in peers.shapes(args.groups.split(",")):
        if dims and s["d"] not in dims:
            continue
        b, hq, hkv, lq, lk, d = s["b"], s["hq"], s["hkv"], s["lq"], s["lk"], s["d"]
        q, k, v, rows, ref, flops = peers.inputs(s)
        runs, keep, note = {}, [], ""
        for name, la in builds.items():
            o = torch.empty_like(q)
            run, note, workspace = la.prepare(q, k, v, o, s["causal"])
            keep.append(workspace)
            err = peers.max_rel_error(run(), ref, rows)
            if err < 2e-2:
                runs[name] = run
            else:
                note += f" {name} WRONG ({err:.1e})"
        try:
            cudnn, _ = peers.sdpa_runner("cudnn", q, k, v, s["causal"], hq // hkv)
            if peers.max_rel_error(cudnn(), ref, rows) < 2e-2:
                runs["cuDNN"] = cudnn
        except Exception as e:  # cuDNN stops at d = 256: the builds are still compared
            note += f" cuDNN: {(str(e).strip().splitlines() or [type(e).__name__])[0][:40]}"
        times = {name: [] for name in runs}
        # Rounds in the orders of a Williams square, where each runner follows every other equally
        # often: on power-bound shapes a runner's time depends on what ran just before it.
        names_here = list(runs)
        square = williams_square(len(names_here))
        for r in range(args.rounds or len(square)):
            for i in square[r % len(square)]:
                name = names_here[i]
                times[name].append(peers.time_ms(runs[name], budget_ms=150, max_reps=20))
        tf = {n: flops / (statistics.median(t) * 1e-3) / 1e12 for n, t in times.items()}
        get = lambda n: tf.get(n, nan)  # noqa: E731
        vals = ([f"{get(n):.1f}" for n in names + ["cuDNN"]] +
                [f"{get(n) / get('A'):.3f}" for n in names[1:]] +
                [f"{get(n) / get('cuDNN'):.3f}" for n in names])
        line = (f"| {s['group']} | {b} | {hq}/{hkv} | {lq} | {lk} | {d} | {int(s['causal'])} | " +
                " | ".join(vals) + f" | {note.strip()} |")
        lines.append(line)
        print(line, flush=True)
        del q, k, v, keep, runs
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
