#!/usr/bin/env python3
"""Plots a `longattn prefill --json` report: per-chunk latency, attention transient memory and
chunk size against kv_len, one line per path (fused vs unfused side by side).

    python3 scripts/plot_prefill.py report.json -o prefill.png

Needs matplotlib (Debian: python3-matplotlib). Attention only: the report's Q/K/V come from a
seeded generator, and the figure says so.
"""
import argparse
import json
import sys

MIB = 1024.0 * 1024.0
STYLE = {"fused": ("tab:blue", "o"), "unfused": ("tab:red", "s"), "split_kv": ("tab:green", "^")}


def load(path):
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    for key in ("paths", "stack", "config"):
        if key not in report:
            sys.exit(f"{path}: not a prefill report (no '{key}')")
    return report


def plot(report, out, title=None):
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m, ax_c) = plt.subplots(3, 1, figsize=(9, 10), sharex=True)
    for p in report["paths"]:
        chunks = p["chunks"]
        if not chunks:
            continue
        color, marker = STYLE.get(p["path"], ("tab:gray", "x"))
        kv = [c["kv_len"] for c in chunks]
        label = p["path"] + ("" if p["ok"] else " (stopped: over budget)")
        mark = {"marker": marker, "markersize": 3, "color": color, "label": label}
        # Latency per token keeps chunks of different sizes comparable.
        ax_t.plot(kv, [1e3 * c["seconds"] / c["chunk"] for c in chunks], **mark)
        ax_m.plot(kv, [c["transient_bytes"] / MIB for c in chunks], **mark)
        ax_c.plot(kv, [c["chunk"] for c in chunks], drawstyle="steps-pre", **mark)
        if not p["ok"]:
            for ax in (ax_t, ax_m, ax_c):
                ax.axvline(kv[-1], color=color, linestyle=":", linewidth=1)

    ax_t.set_ylabel("attention ms per token\n(all layers)")
    ax_m.set_ylabel("attention transient (MiB)")
    # symlog, not log: a fused kernel may need no transient memory at all (0 B on the GPU).
    ax_m.set_yscale("symlog", linthresh=1.0)
    ax_m.set_ylim(bottom=0)
    ax_c.set_ylabel("chunk (tokens)")
    ax_c.set_yscale("log", base=2)
    ax_c.set_xlabel("kv_len (tokens in the cache after the chunk)")
    budget = report["config"].get("budget_bytes", 0)
    budget_text = (f"{budget / MIB / 1024:.1f} GiB" if budget >= 1024 * MIB
                   else f"{budget / MIB:.0f} MiB")
    for ax in (ax_t, ax_m, ax_c):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    cfg = report["config"]
    fig.suptitle(
        title
        or (
            f"{report['stack']['name']} ({report['stack']['layers']} layers), {cfg['dtype']}, "
            f"{report.get('device', '')}\nbudget {budget_text}, "
            f"max chunk {cfg['max_chunk']}, {cfg['cache']} cache"
        ),
        fontsize=10,
    )
    fig.text(0.5, 0.005, report.get("disclaimer", ""), ha="center", fontsize=7, style="italic")
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", help="JSON report from `longattn prefill --json`")
    ap.add_argument("-o", "--output", default="prefill.png", help="image file (png, svg, pdf)")
    ap.add_argument("--title", help="figure title (default: stack, dtype, device, budget)")
    args = ap.parse_args()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit("plot_prefill.py needs matplotlib: apt-get install python3-matplotlib")
    plot(load(args.report), args.output, args.title)
    print(args.output)


if __name__ == "__main__":
    main()
