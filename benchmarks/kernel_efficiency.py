"""How close the conv kernels get to the CPU's measured peak, one thread, as layers grow.

    python benchmarks/kernel_efficiency.py

For 1x1 and 3x3 convs of increasing pixel count (batch 1) it times one call of
`conv_f32.conv2d_f32` and `conv_i8.conv2d_i8` on one thread (median of many calls after
warm-up, best of a few rounds over all layers) and divides the throughput by the peak `instruction_peak.py` measures in the same
run (independent chains of the very instructions the micro-kernels use).  The fraction of
peak separates the two costs a layer pays:

- fixed costs per call and per 6-pixel x 16-channel block (dispatch, padded / widened input
  copy, pixel offsets, epilogue): they dominate small layers, whose fraction is low;
- the inner loop itself: what large layers converge to.

It also counts the instructions of the int8 inner loop (from Numba's assembly of the
conv task) so the report says what one reduction step costs.  Results:
benchmarks/results/kernel_efficiency.{md,json}.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import instruction_peak  # noqa: E402
from common import RESULTS, cpu_flags, cpu_model, timed_runs  # noqa: E402 (benchmarks/ is a folder of scripts)

#: rounds over all layers; each layer's figure is its best round (see the report header)
ROUNDS = 5
#: (kernel size, input channels, output channels) x output side lengths
SHAPES = [((1, 576, 96), (2, 4, 8, 16)), ((1, 64, 64), (4, 8, 16, 32)), ((3, 16, 16), (8, 16, 32)),
          ((3, 64, 64), (4, 8, 16, 32))]


def median_us(fn, calls: int) -> float:
    return statistics.median(timed_runs(fn, 30, calls)) * 1e6


def layer_times(k: int, c: int, oc: int, side: int, calls: int) -> dict:
    """Median microseconds of one fp32 and one int8 call of a `k`x`k` conv (pad k // 2) on side x side x c."""
    from qv2c.runtime.kernels import conv_f32, conv_i8, packing, prepare
    from qv2c.runtime.kernels.target import selected_target

    prepare()
    tgt = selected_target()
    rng = np.random.default_rng(0)
    p = k // 2
    xf = rng.standard_normal((1, side, side, c)).astype(np.float32)
    wf = packing.pack_conv_f32(rng.standard_normal((oc, c, k, k)).astype(np.float32)).data
    bf = np.zeros(oc, np.float32)
    outf = np.zeros((1, side, side, oc), np.float32)
    x8 = rng.integers(0, 256, (1, side, side, c), dtype=np.uint8)
    w8 = packing.pack_conv_i8(rng.integers(-127, 128, (oc, c, k, k), dtype=np.int8), dot=tgt.int8_dot).data
    b8 = np.zeros(oc, np.int32)
    out8 = np.zeros((1, side, side, oc), np.uint8)
    mult = np.full(oc, 1e-4, np.float32)
    f32 = median_us(lambda: conv_f32.conv2d_f32(xf, wf, bf, outf, outf, k, k, 1, 1, p, p, 1, 1, -np.inf, np.inf,
                                                False, tgt.marker()), calls)
    i8 = median_us(lambda: conv_i8.conv2d_i8(x8, 128, w8, b8, out8, k, k, 1, 1, p, p, 1, 1, mult, 0, 0, 255,
                                             tgt.marker()), calls)
    return {"k": k, "c": c, "oc": oc, "side": side, "macs": side * side * c * oc * k * k, "fp32_us": f32, "int8_us": i8}


def int8_inner_loop() -> dict:
    """Instruction counts of the int8 conv task's innermost loop (the basic block with the most dot-product
    instructions of the target: `vpdpbusd` for native VNNI, else `vpmaddwd`).

    Numba keeps no assembly for kernels it loads from its on-disk cache, so this compiles them afresh
    in a child process with an empty cache directory."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, __file__, "--int8-loop"], env=env, capture_output=True, text=True,
                             check=True)
    return json.loads(out.stdout.splitlines()[-1])


def _int8_inner_loop_here() -> dict:
    from qv2c.runtime.kernels import conv_i8
    from qv2c.runtime.kernels.target import selected_target

    tgt = selected_target()
    dot, width = ("vpdpbusd", 4) if tgt.int8_dot == "quads" and tgt.vnni == "native" else ("vpmaddwd", 2)
    layer_times(3, 16, 16, 8, 1)
    asm = "\n".join(conv_i8._task.inspect_asm().values())
    blocks, current = [], None  # basic blocks from a label to the first jump after it
    for line in asm.splitlines():
        if re.match(r"^\.?[\w$.]+:", line):
            current = []
            blocks.append(current)
        elif current is not None and line.startswith("\t") and not line.strip().startswith("."):
            current.append(line.split()[0])
            if current[-1].startswith("j"):
                current = None
    best = max(blocks, key=lambda b: b.count(dot), default=[])
    # one dot instruction: `tgt.lanes` int32 lanes, each summing `width` products
    return {"target": tgt.label, "dot": dot, "macs": best.count(dot) * tgt.lanes * width, "instructions": len(best),
            "counts": {name: best.count(name) for name in sorted(set(best))}}


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _reading(result: dict) -> str:
    """What the table says, computed from it: the ceiling the largest layer reaches, and the small layers' loss."""
    peaks, rows = result["peaks"], result["rows"]
    big = max(rows, key=lambda r: r["macs"])
    ratio = max(r["fp32_us"] / r["int8_us"] for r in rows)
    text = (f"Reading: the largest layer (3x3 {big['side']}x{big['side']}x{big['c']}->{big['oc']}) runs at "
            f"{2 * big['macs'] / big['fp32_us'] / 1e3 / peaks['fp32_gops']:.0%} of the fp32 peak")
    if peaks["int8_gops"]:
        text += (f" and {2 * big['macs'] / big['int8_us'] / 1e3 / peaks['int8_gops']:.0%} of the int8 peak; int8 is "
                 f"at most {ratio:.2f}x faster than fp32 on any layer, against {peaks['int8_gops'] / peaks['fp32_gops']:.2f}x "
                 "for the instructions themselves")
    return (text + ".  Layers with few pixels or a short reduction (a 1x1 conv over 64 channels is 32 int16-pair "
            "steps per 6x16 block on AVX2, 16 u8 quads per 12x16 block with VNNI) pay the fixed cost of a call and of each block (dispatch, the padded/widened input "
            "copy, pixel offsets, the epilogue); int8 pays it more, since its reduction has half as many steps as "
            "fp32's for the same channels.")


def write_report(result: dict) -> None:
    peaks = result["peaks"]
    lines = ["# Conv kernels against the measured peak (one thread)", "",
             f"CPU: {result['cpu']}, {result['date']}. One thread (`numba.set_num_threads(1)`), batch 1: the best of "
             f"{result['rounds']} rounds (every layer once per round) of the median of {result['calls']} calls after "
             "warm-up, as the peak is a best of rounds; this VM's speed drifts by tens of percent between runs.  Peak of one core from `instruction_peak.py` in the same run: "
             f"fp32 {peaks['fp32_gops']:.0f} GFLOP/s (FMA), int8 {_fmt(peaks['int8_gops'], '.0f')} GOP/s (the "
             f"target's dot product, {peaks.get('target', 'target not recorded')}; not measured without AVX2); "
             "2 operations per multiply-add.", "",
             "| layer | MACs | fp32 us | fp32 GFLOP/s | fp32 % of peak | int8 us | int8 GOP/s | int8 % of peak | "
             "fp32 / int8 time |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        gf, gi = 2 * r["macs"] / r["fp32_us"] / 1e3, 2 * r["macs"] / r["int8_us"] / 1e3
        lines.append(f"| {r['k']}x{r['k']} {r['side']}x{r['side']}x{r['c']}->{r['oc']} | {r['macs'] / 1e6:.2f} M | "
                     f"{r['fp32_us']:.1f} | {gf:.1f} | {100 * gf / peaks['fp32_gops']:.0f} % | {r['int8_us']:.1f} | "
                     f"{gi:.1f} | {_fmt(peaks['int8_gops'] and 100 * gi / peaks['int8_gops'], '.0f')} % | "
                     f"{r['fp32_us'] / r['int8_us']:.2f} |")
    loop = result["int8_loop"]
    lines += ["", f"int8 inner loop (target {loop.get('target', '?')}; the basic block with the most `{loop.get('dot', 'vpmaddwd')}`): "
              f"{loop['instructions']} instructions for {loop.get('macs', '?')} multiply-adds: "
              + ", ".join(f"{n} {c}" for n, c in loop["counts"].items()) + ".",
              "", _reading(result), ""]
    (RESULTS / "kernel_efficiency.md").write_text("\n".join(lines))
    (RESULTS / "kernel_efficiency.json").write_text(json.dumps(result, indent=1))


def main() -> None:
    if sys.argv[1:] == ["--int8-loop"]:
        print(json.dumps(_int8_inner_loop_here()))
        return
    calls, rounds = 100, ROUNDS
    peaks = instruction_peak.per_core_peaks()
    numba.set_num_threads(1)
    shapes = [(k, c, oc, side) for (k, c, oc), sides in SHAPES for side in sides]
    per_round = [[layer_times(*shape, calls) for shape in shapes] for _ in range(rounds)]
    rows = [dict(r[0], fp32_us=min(x["fp32_us"] for x in r), int8_us=min(x["int8_us"] for x in r))
            for r in zip(*per_round)]
    result = {"cpu": f"{cpu_model()} ({cpu_flags()})", "date": time.strftime("%Y-%m-%d"), "calls": calls,
              "rounds": rounds,
              "peaks": {"fp32_gops": peaks["peak_f32_gops_per_core"], "int8_gops": peaks["peak_i8_gops_per_core"],
                        "target": peaks["target"]},
              "rows": rows, "int8_loop": int8_inner_loop()}
    write_report(result)
    print((RESULTS / "kernel_efficiency.md").read_text())


if __name__ == "__main__":
    main()
