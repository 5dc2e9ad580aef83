"""Host cost per call of the Python layers on a tiny decode shape, against the C call beneath them
and F.scaled_dot_product_attention: what a runtime pays per layer per step before any kernel runs.

    python bench/overhead.py [--device cuda|cpu] [--calls N] [--rounds R] [--clock wall|thread]
                             [--out FILE.md]

Each variant is timed as the wall time of N back-to-back calls (the kernels are queued, not waited
for, except once at the end of each round), in rotating rounds; the median round is reported.
`--clock thread` times the calling thread's CPU time instead (CPU runs on a shared machine: other
processes' time slices are not counted; meaningless for CUDA, where the host waits for the GPU).
The op's kernel is C++ where torch_ops could register it; LONGATTN_TORCH_OP=python keeps the Python
one, for comparison.
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import longattn
import longattn.torch_ops
from longattn import _C, api


def _op_kernel(dev):
    ops = longattn.torch_ops
    native = getattr(ops, "NATIVE_CUDA" if dev == "cuda" else "NATIVE_CPU", False)
    return "C++ (stable ABI)" if native else "Python (LONGATTN_TORCH_OP=python or older torch)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clock", choices=("wall", "thread"), default="wall")
    ap.add_argument("--out")
    args = ap.parse_args()
    dev = args.device
    # A decode step of a small GQA layer: the kernel is short, so host time dominates.
    q = torch.randn(1, 8, 1, 128, dtype=torch.bfloat16, device=dev)
    k = torch.randn(1, 2, 256, 128, dtype=torch.bfloat16, device=dev)
    v = torch.randn(1, 2, 256, 128, dtype=torch.bfloat16, device=dev)
    threads = 1 if dev == "cpu" else None
    call = api._Call(q, k, v, False, -1, 0.0, None, None, None, "bhld", None, False, "auto", None,
                     None, None, None, threads)
    cuda = dev == "cuda"
    alloc = api._torch_alloc(q.device) if cuda else None
    c_call = _C.Call(call.fields, cuda)
    o = call.views[0].obj
    ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), 0,
            torch.cuda.current_stream().cuda_stream if cuda else 0)
    plan = longattn.plan(q, k, v, num_threads=threads)
    variants = {
        # The C API's plan + run through the extension, every argument prebuilt: the floor.
        "C API (extension call, arguments prebuilt)": lambda: c_call.run(*ptrs, alloc),
        "C API plan only": lambda: _C.plan(call.fields),
        "longattn.attention": lambda: longattn.attention(q, k, v, num_threads=threads),
        "torch.ops.longattn.attention": lambda: torch.ops.longattn.attention(
            q, k, v, num_threads=threads),
        "F.scaled_dot_product_attention": lambda: F.scaled_dot_product_attention(
            q, k, v, enable_gqa=True),
    }
    if hasattr(c_call, "run_status"):  # what the per-call paths call: the status, no plan tuple
        variants["C API, status only"] = lambda: c_call.run_status(*ptrs, alloc)
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    times = {name: [] for name in variants}
    with torch.no_grad():
        for fn in variants.values():
            for _ in range(200):
                fn()
        sync()
        names = list(variants)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                fn = variants[name]
                t0 = clock()
                for _ in range(args.calls):
                    fn()
                sync()
                times[name].append((clock() - t0) / args.calls * 1e6)
    base = statistics.median(times["C API (extension call, arguments prebuilt)"])
    card = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    lines = [f"# Host cost per call, {card}, decode q 1x8x1x128, k/v 1x2x256x128 bf16",
             f"plan: {plan.path}, {plan.kernel}; clock: {args.clock}; torch {torch.__version__}, "
             f"the op's kernel: {_op_kernel(dev)}", "",
             "| variant | us per call (median of rounds) | above the C call |", "| --- | --- | --- |"]
    for name in names:
        m = statistics.median(times[name])
        lines.append(f"| {name} | {m:.1f} | {m - base:+.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
