#!/usr/bin/env python3
"""Instruction mix and stall samples per opcode of one kernel, from ncu's source page.

    ncu ... --set full --import-source no -o REPORT <program>
    ncu --import REPORT.ncu-rep --page source --csv --print-source sass > K.csv
    scripts/ncu_mix.py K.csv [K2.csv ...]

For each CSV: the opcodes by executed instructions (millions, % of all) with their share of the
warp-state samples, then the stall reasons over the whole kernel. Two kernels side by side show
where one spends instructions or stalls the other does not (bench/NOTES.md v0.8: cuDNN's d = 128
kernel against ours). Runs anywhere Python does; the CSVs come from the GPU machine.
"""
import collections
import csv
import re
import sys

# Opcodes whose modifiers matter (the wgmma shape, the MUFU function, the barrier kind).
KEEP_TWO_PARTS = ("HGMMA", "MUFU", "WARPGROUP", "SYNCS", "BAR")


def load(path):
    rows = list(csv.reader(open(path)))
    header = next(r for r in rows if "Address" in r and "Source" in r)
    col = {h: i for i, h in enumerate(header)}
    stall_cols = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]

    def num(r, h):
        try:
            return float(r[col[h]].replace(",", ""))
        except (ValueError, IndexError):
            return 0.0

    out = []
    for r in rows[rows.index(header) + 1:]:
        if len(r) < len(header):
            continue
        words = r[col["Source"]].split()
        if not words:
            continue
        op = words[1] if words[0].startswith("@") and len(words) > 1 else words[0]
        parts = op.split(".")
        op = ".".join(parts[:2]) if parts[0] in KEEP_TWO_PARTS else parts[0]
        out.append((op, num(r, "Warp Stall Sampling (All Samples)"),
                    num(r, "Instructions Executed"), {h: num(r, h) for h in stall_cols}))
    return out


def report(path, top=28):
    ins = load(path)
    samples = sum(i[1] for i in ins) or 1.0
    executed = sum(i[2] for i in ins) or 1.0
    by_op = collections.defaultdict(lambda: [0.0, 0.0])
    stalls = collections.Counter()
    for op, s, e, st in ins:
        by_op[op][0] += s
        by_op[op][1] += e
        stalls.update(st)
    print(f"== {path}: {len(ins)} instructions, {executed / 1e6:.1f} M executed, "
          f"{samples:.0f} samples")
    print(f"  {'opcode':20s} {'% samples':>9s} {'executed M':>11s} {'% executed':>10s}")
    for op, (s, e) in sorted(by_op.items(), key=lambda x: -x[1][1])[:top]:
        print(f"  {op:20s} {100 * s / samples:9.1f} {e / 1e6:11.1f} {100 * e / executed:10.1f}")
    print("  stalls: " + ", ".join(f"{re.sub('^stall_', '', k)} {100 * v / samples:.1f}%"
                                   for k, v in stalls.most_common(10)))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for p in sys.argv[1:]:
        report(p)
