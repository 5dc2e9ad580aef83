#!/usr/bin/env python3
"""Where ptxas put the softmax in the sm_90a kernel's main loop (no GPU needed).

    scripts/sm90_sass.py [DQKxDV ...]      e.g. scripts/sm90_sass.py 128x128 256x256

Compiles fused_sm90_d<DQK>x<DV>_bf16.cu for sm_90a with the flags of an existing CUDA build
(build-cuda/, configured by CMake), disassembles it and, for the plain kernel, counts the softmax's
instructions between the wait for S (wgmma.wait_group 1, SASS `WARPGROUP.DEPBAR.LE gsb0, 0x1`) and
the wait for the previous P V product (`... gsb0, 0x0`), and after it, once per loop body (the
plain tiles' first, then the general one's). The source overlaps the two; what runs is what ptxas
scheduled (bench/NOTES.md v0.5, v0.7). Also prints ptxas's register and spill report. cuobjdump
and nvdisasm are not in this toolkit's install: they come from PyPI (nvidia-cuda-cuobjdump,
nvidia-cuda-nvdisasm) into build-tools/ on first use.
"""
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build-cuda")
TOOLS = os.path.join(ROOT, "build-tools")
OPS = ["MUFU.EX2", "FMNMX", "FADD", "FFMA", "F2FP", "SHFL"]


def cuobjdump():
    """cuobjdump and the nvdisasm it runs: from PATH, else from PyPI into build-tools/."""
    for path in os.environ.get("PATH", "").split(os.pathsep):
        if all(os.access(os.path.join(path, t), os.X_OK) for t in ("cuobjdump", "nvdisasm")):
            return os.path.join(path, "cuobjdump")
    found = glob.glob(os.path.join(TOOLS, "**", "bin", "nvdisasm"), recursive=True)
    if not found:
        os.makedirs(TOOLS, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", TOOLS,
                        "nvidia-cuda-cuobjdump", "nvidia-cuda-nvdisasm"], check=True)
        for wheel in glob.glob(os.path.join(TOOLS, "*.whl")):
            subprocess.run([sys.executable, "-m", "zipfile", "-e", wheel, TOOLS], check=True)
    bin_dir = os.path.dirname(glob.glob(os.path.join(TOOLS, "**", "bin", "nvdisasm"),
                                        recursive=True)[0])
    for t in ("cuobjdump", "nvdisasm"):
        os.chmod(os.path.join(bin_dir, t), 0o755)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return os.path.join(bin_dir, "cuobjdump")


def placement(sass):
    """Softmax instructions between the two waits and after the second, per plain kernel."""
    for body in re.split(r"\n\s*Function : ", sass)[1:]:
        name = body.split("\n", 1)[0]
        if not name.endswith("Sm90ScheduleE") or "Lb0E" not in name:
            continue  # the elementwise (softcap/mask) variant schedules alike
        ops = [re.sub(r".*\*/\s+", "", line).split(";")[0].strip()
               for line in body.split("\n") if re.search(r"/\*[0-9a-f]{4,}\*/", line)]
        waits1 = [i for i, op in enumerate(ops) if "DEPBAR.LE gsb0, 0x1" in op]
        if not waits1:
            print("  no wait_group 1 in the loop: ptxas serialized the wgmmas")
        for body, w1 in enumerate(waits1):
            w0 = next(i for i in range(w1 + 1, len(ops)) if "DEPBAR.LE gsb0, 0x0" in ops[i])
            print(f"  loop body {body + 1} of {len(waits1)}:")
            nxt = next((i for i in range(w0 + 1, len(ops)) if "HGMMA" in ops[i]), len(ops))
            for op in OPS:
                between = sum(op in o for o in ops[w1:w0])
                after = sum(op in o for o in ops[w0:nxt])
                print(f"    {op:9s} during the P V product {between:4d}   after its wait {after:4d}")


def main():
    dims = sys.argv[1:] or ["64x64", "128x128", "256x256"]
    rsp = os.path.join(BUILD, "CMakeFiles", "longattn_obj.dir", "includes_CUDA.rsp")
    if not os.path.exists(rsp):
        sys.exit(f"{rsp} is missing: configure the CUDA build first (cmake -S . -B build-cuda)")
    tool = cuobjdump()
    for d in dims:
        src = os.path.join(ROOT, "src", "cuda", "instantiations", f"fused_sm90_d{d}_bf16.cu")
        obj = os.path.join(BUILD, f"sass_d{d}.o")
        report = subprocess.run(
            ["nvcc", "--options-file", rsp, "-O3", "-std=c++17",
             "-gencode=arch=compute_90a,code=sm_90a", "-Xptxas", "-v", "-c", src, "-o", obj],
            cwd=BUILD, capture_output=True, text=True, check=True).stderr
        print(f"d = {d}:")
        for line in report.splitlines():
            if "spill" in line or "C7512" in line:
                print("  ptxas:", line.strip())
        placement(subprocess.run([tool, "-sass", obj], capture_output=True, text=True,
                                 check=True).stdout)


if __name__ == "__main__":
    main()
