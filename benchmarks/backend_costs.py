"""What the backend's design choices cost, measured: call overhead by argument kind, cold JIT per target,
and the int8 inner loop.

    python benchmarks/backend_costs.py        # writes results/backend_costs.md

- Call overhead: a Numba-compiled function of 10 arguments called from Python, positionally, with
  keyword arguments, and with one extra argument that is a named tuple or a small int8 array (the
  two ways of passing a target marker, `qv2c/runtime/kernels/target.py`).  Median of 20 blocks of
  5000 calls.  Why the generated program calls kernels positionally, and why the marker is an array.
- Cold JIT: the time of the first call of `conv_i8.conv2d_i8` (requantizing epilogue) for each target,
  in a fresh process with an empty Numba cache, one process at a time.
- The int8 inner loop of the host's target: `kernel_efficiency.int8_inner_loop` (instructions of the
  basic block with the most dot-product instructions).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).parent))
import kernel_efficiency  # noqa: E402 (benchmarks/ is a folder of scripts)
from common import RESULTS, cpu_flags, cpu_model  # noqa: E402

Marker = namedtuple("Marker", "code")

JIT_CHILD = """
import time, numpy as np
from qv2c.runtime.kernels import conv_i8, packing, prepare
from qv2c.runtime.kernels.target import TARGETS, AVX512_VNNI_EMULATED
prepare()
t = {"emulated": AVX512_VNNI_EMULATED}.get(NAME) or TARGETS[NAME]
x = np.zeros((1, 8, 8, 16), np.uint8)
w = packing.pack_conv_i8(np.ones((32, 16, 3, 3), np.int8), dot=t.int8_dot).data
out = np.zeros((1, 8, 8, 32), np.uint8)
start = time.perf_counter()
conv_i8.conv2d_i8(x, 0, w, np.zeros(32, np.int32), out, 3, 3, 1, 1, 1, 1, 1, 1, np.ones(32, np.float32), 0, 0, 255,
                  t.marker())
print(time.perf_counter() - start)
"""


@njit
def _ten(a, b, c, d, e, f, g, h, i, j):
    return a[0]


@njit
def _eleven(a, b, c, d, e, f, g, h, i, j, k):
    return a[0]


def call_overhead_us() -> dict[str, float]:
    a = np.zeros(4, np.float32)
    calls = {
        "10 arguments, positional": lambda: _ten(a, 1, 2, 3, 4.0, 5.0, 6, 7, 8, True),
        "10 arguments, keywords": lambda: _ten(a=a, b=1, c=2, d=3, e=4.0, f=5.0, g=6, h=7, i=8, j=True),
        "+ a named-tuple marker": lambda: _eleven(a, 1, 2, 3, 4.0, 5.0, 6, 7, 8, True, Marker(0)),
        "+ an int8 array marker": lambda: _eleven(a, 1, 2, 3, 4.0, 5.0, 6, 7, 8, True, np.zeros((1, 1), np.int8)),
    }
    out = {}
    for name, fn in calls.items():
        fn()
        blocks = []
        for _ in range(20):
            t = time.perf_counter()
            for _ in range(5000):
                fn()
            blocks.append((time.perf_counter() - t) / 5000)
        out[name] = statistics.median(blocks) * 1e6
    return out


def cold_jit_s(name: str) -> float:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        run = subprocess.run([sys.executable, "-c", JIT_CHILD.replace("NAME", repr(name))], env=env, capture_output=True,
                             text=True, check=True)
    return float(run.stdout.split()[-1])


def main() -> None:
    overhead = call_overhead_us()
    jit = {name: cold_jit_s(name) for name in ("avx2", "generic", "avx512", "emulated")}
    loop = kernel_efficiency.int8_inner_loop()
    lines = ["# Backend costs: call overhead, cold JIT per target, int8 inner loop\n",
             f"CPU: {cpu_model()} ({cpu_flags()}), {time.strftime('%Y-%m-%d')}.\n",
             "| call from Python | us per call |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in overhead.items()]
    lines += ["", "| `conv2d_i8` cold JIT, target | s |", "|---|---|"]
    lines += [f"| {'avx512-vnni (emulated VNNI)' if k == 'emulated' else k} | {v:.1f} |" for k, v in jit.items()]
    lines += ["", f"int8 inner loop of the host's target: {loop['instructions']} instructions: "
              + ", ".join(f"{k} {v}" for k, v in sorted(loop["counts"].items())) + "."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "backend_costs.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "backend_costs.json").write_text(json.dumps({"call_overhead_us": overhead, "cold_jit_s": jit,
                                                            "int8_inner_loop": loop}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
