"""The single calls this session's kernel fixes were aimed at, timed in a source tree of your choice.

    python benchmarks/hot_spots.py [--tree DIR --label NAME]      # appends to results/hot_spots.md

Each row is the best of 7 rounds of the mean of 200 calls of one kernel (threads as stated), in a
child process whose `PYTHONPATH` is `--tree` (default: this checkout), so an older commit's kernels
(a `git worktree`) are measured with the same script: run it once per tree, one after the other.
The cases: a 1x1 int8 conv with a short reduction (16 input channels; pixel offsets and the epilogue
dominate), the same with a fused residual add, int8 depthwise 3x3 at two sizes, a late 7x7 1x1 conv
(how the work splits over 2 threads), the RGB stem's quad padding, and quantize in serial and parallel.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cpu_flags, cpu_model  # noqa: E402 (benchmarks/ is a folder of scripts)

ROUNDS, CALLS = 7, 200


def _best_us(fn) -> float:
    fn()
    best = float("inf")
    for _ in range(ROUNDS):
        t = time.perf_counter()
        for _ in range(CALLS):
            fn()
        best = min(best, (time.perf_counter() - t) / CALLS)
    return best * 1e6


def measure() -> dict[str, float]:
    """Microseconds per call of every case, in this process (whatever `qv2c` it imports)."""
    import numba
    import numpy as np

    from qv2c.runtime.kernels import conv_i8, depthwise, packing, prepare
    from qv2c.runtime.kernels.indirect import pad_u8_quads
    from qv2c.runtime.kernels.target import selected_target
    from qv2c.runtime.ops_quant import quantize_flat

    prepare()
    tgt = selected_target()
    rng = np.random.default_rng(0)

    def conv(h, c, oc, add=False):
        x = rng.integers(0, 256, (1, h, h, c), dtype=np.uint8)
        w = packing.pack_conv_i8(rng.integers(-127, 128, (oc, c, 1, 1), dtype=np.int8), dot=tgt.int8_dot).data
        bias, mult = np.zeros(oc, np.int32), np.full(oc, 1e-4, np.float32)
        out = np.empty((1, h, h, oc), np.uint8)
        res = rng.integers(0, 256, out.shape, dtype=np.uint8)
        m = tgt.marker()
        if add:
            return lambda: conv_i8.conv2d_i8_add(x, 3, w, bias, out, 1, 1, 1, 1, 0, 0, 1, 1, mult, 10, 0, 255, 0.05,
                                                 res, 7, 0.04, 0.06, 0, 0, 255, m)
        return lambda: conv_i8.conv2d_i8(x, 3, w, bias, out, 1, 1, 1, 1, 0, 0, 1, 1, mult, 0, 0, 255, m)

    def dw(h, c):
        x = rng.integers(0, 256, (1, h, h, c), dtype=np.uint8)
        w = packing.pack_depthwise_i8(rng.integers(-127, 128, (c, 1, 3, 3), dtype=np.int8)).data
        out = np.empty((1, h, h, c), np.uint8)
        bias, mult = np.zeros(c, np.int32), np.full(c, 1e-3, np.float32)
        return lambda: depthwise.depthwise_i8(x, 3, w, bias, out, 1, 1, 1, 1, 1, 1, mult, 0, 0, 255, tgt.marker())

    rgb = rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    quads = np.empty((1, 226, 226, 4), np.uint8)
    xf = rng.standard_normal(150528).astype(np.float32)
    q = np.empty(xf.size, np.uint8)
    one = {
        "int8 conv 1x1 32x32x16->64": conv(32, 16, 64),
        "int8 conv 1x1 32x32x16->64 + residual add": conv(32, 16, 64, add=True),
        "int8 depthwise 3x3 8x8x192": dw(8, 192),
        "int8 depthwise 3x3 56x56x144": dw(56, 144),
        "RGB quad padding 224x224x3 (serial)": lambda: pad_u8_quads(rgb, 0, 3, 1, 1, 1, quads, False),
        "quantize 150528 elements, serial": lambda: quantize_flat(xf, q, 0.0161, 123, 0, 255, False),
        "quantize 150528 elements, parallel": lambda: quantize_flat(xf, q, 0.0161, 123, 0, 255, True),
    }
    two = {"int8 conv 1x1 7x7x320->1280": conv(7, 320, 1280)}
    result = {}
    for threads, cases in ((1, one), (2, two)):
        numba.set_num_threads(threads)
        for name, fn in cases.items():
            result[f"{name}, {threads} thread{'s' if threads > 1 else ''}"] = _best_us(fn)
    result["target"] = tgt.label
    return result


def main() -> None:
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(measure()))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--label", default="this checkout")
    args = p.parse_args()
    env = dict(os.environ, PYTHONPATH=str(args.tree.resolve()))
    out = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True, check=True)
    times = json.loads(out.stdout.splitlines()[-1])
    target = times.pop("target")
    lines = [f"\n## {args.label} (`{args.tree}`)\n", f"CPU: {cpu_model()} ({cpu_flags()}), target {target}, "
             f"{time.strftime('%Y-%m-%d')}. Best of {ROUNDS} rounds of the mean of {CALLS} calls.\n",
             "| case | us per call |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in times.items()]
    path = RESULTS / "hot_spots.md"
    if not path.exists():
        path.write_text("# The kernel calls this session's fixes aimed at, per source tree (benchmarks/hot_spots.py)\n")
    with path.open("a") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
