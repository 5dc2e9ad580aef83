#!/usr/bin/env python3
"""Accuracy of FP8 KV caches (issue 18 item 5): RMSE of longattn's output with K and V stored in
e4m3 or e5m2 (per-KV-head scales, amax / the format's largest value), against the float64
attention of the unquantized bf16 inputs, beside the same for the bf16 cache, and against the
float64 attention of the dequantized values (what the kernels add to the quantization: the bf16
rounding of O, ~1.7e-3 relative, for the bf16 cache too). K carries a few
outlier channels per head (x12), as real caches do. Runs on the CPU (the CUDA paths refuse FP8 for
now), so the shapes are the peers' grid's head dims and GQA at CPU-sized lengths.

    python3 bench/fp8_accuracy.py [--out F.md]
"""
import argparse
import sys

import torch

import longattn

FORMATS = {"e4m3": (torch.float8_e4m3fn, 448.0), "e5m2": (torch.float8_e5m2, 57344.0)}


def reference(q, k, v, causal):
    """float64 attention with bottom-right causal alignment; GQA by repeating K/V heads."""
    q, k, v = (x.double() for x in (q, k, v))
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    s = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if causal:
        lq, lk = q.shape[2], k.shape[2]
        i = torch.arange(lq).view(-1, 1)
        j = torch.arange(lk).view(1, -1)
        s = s.masked_fill(j > i + (lk - lq), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def quantize(x, fmt):
    """x [B, Hkv, L, D] -> (codes, per-KV-head float32 scales) with amax mapped to the format's max."""
    dtype, top = FORMATS[fmt]
    scale = x.float().abs().amax(dim=(0, 2, 3)).clamp_min(1e-12) / top
    codes = (x.float() / scale.view(1, -1, 1, 1)).to(dtype)
    return codes, scale


def rel_rmse(o, ref):
    o = o.double()
    return ((o - ref) ** 2).mean().sqrt().item() / (ref ** 2).mean().sqrt().item()


def rel_max(o, ref):
    return (o.double() - ref).abs().max().item() / ref.abs().max().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    shapes = []  # (name, Hq, Hkv, Lq, Lk, d, causal)
    for d in (64, 128, 256, 512):
        shapes.append(("grid", 4, 4, 512, 512, d, True))
        shapes.append(("chunk", 4, 2, 256, 4096, d, True))
        shapes.append(("decode", 8, 2, 1, 8192, d, True))
    lines = ["| shape | Hq/Hkv | Lq | Lk | d | cache | rel RMSE vs float64 | rel max err "
             "| RMSE / bf16 cache's | rel RMSE vs dequantized float64 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for name, hq, hkv, lq, lk, d, causal in shapes:
        q = torch.randn(1, hq, lq, d, generator=gen).bfloat16()
        k = torch.randn(1, hkv, lk, d, generator=gen)
        v = torch.randn(1, hkv, lk, d, generator=gen)
        for h in range(hkv):  # 4 outlier channels per KV head
            k[:, h, :, torch.randperm(d, generator=gen)[:4]] *= 12
        k, v = k.bfloat16(), v.bfloat16()
        ref = reference(q, k, v, causal)
        base = None
        for cache in ("bf16", "e4m3", "e5m2"):
            if cache == "bf16":
                o = longattn.attention(q, k, v, causal=causal)
                deq = ref
            else:
                kc, ks = quantize(k, cache)
                vc, vs = quantize(v, cache)
                o = longattn.attention(q, kc, vc, causal=causal, k_scale=ks, v_scale=vs)
                deq = reference(q, kc.float() * ks.view(1, -1, 1, 1),
                                vc.float() * vs.view(1, -1, 1, 1), causal)
            rmse = rel_rmse(o, ref)
            base = rmse if cache == "bf16" else base
            line = (f"| {name} | {hq}/{hkv} | {lq} | {lk} | {d} | {cache} | {rmse:.2e} | "
                    f"{rel_max(o, ref):.2e} | {rmse / base:.1f} | {rel_rmse(o, deq):.1e} |")
            lines.append(line)
            print(line, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(f"# FP8 KV cache accuracy, longattn {longattn.__version__} on "
                    f"{longattn.devices()[0]['name']} (CPU), bf16 Q and O\n\n" + "\n".join(lines)
                    + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
