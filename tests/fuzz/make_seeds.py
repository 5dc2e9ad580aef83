#!/usr/bin/env python3
"""Writes the fuzzer's seed corpus into DIR: all-zero inputs (each decodes to a small valid
float32 problem, since every selector's 0 is the valid choice) and seeded random bytes."""
import os
import random
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for n in (0, 8, 32, 128, 512):
    with open(os.path.join(out, f"zeros_{n}"), "wb") as f:
        f.write(bytes(n))
rng = random.Random(20)
for i in range(48):
    with open(os.path.join(out, f"random_{i:02d}"), "wb") as f:
        f.write(bytes(rng.getrandbits(8) for _ in range(rng.choice((16, 48, 96, 200, 400)))))
