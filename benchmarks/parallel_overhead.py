"""What a second thread costs and gains for small kernels on this machine (the figures behind the
thresholds in `qv2c/runtime/kernels/tiling.py` and the re-warm runs of `latency.py`).

    QV2C_DATA=../shared/data python benchmarks/parallel_overhead.py

1. A conv's padded input copy (`indirect.pad_widen_s16` int8, `pad_nhwc` fp32), serial against
   parallel, for CIFAR/ImageNet-sized inputs and a 3-channel stem (channels padded to 4).
2. int8 3x3 convs (`conv_i8.conv2d_i8`, batch 1) on one thread against two (`numba.set_num_threads`).
3. The idle-pause effect on this VM: VGG16-CIFAR fp32 at batch 1, three runs right after a 50 ms
   pause, and three runs after the same pause plus two untimed runs.
4. Per-kernel time of SqueezeNet 1.1's first conv (3 input channels), int8 against fp32.

Each figure: the best of 5 repeats of a mean over many calls (1, 2), or medians (3, 4).
Results: benchmarks/results/parallel_overhead.{md,json}.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, calibration_images, cpu_model  # noqa: E402 (benchmarks/ is a folder of scripts)

import qv2c  # noqa: E402
from qv2c.datasets import load_eval_set, model_path  # noqa: E402
from qv2c.runtime.kernels import conv_i8, packing, prepare  # noqa: E402
from qv2c.runtime.kernels.indirect import pad_nhwc, pad_widen_s16  # noqa: E402
from qv2c.runtime.kernels.target import TARGETS  # noqa: E402

prepare()
#: this benchmark measures the AVX2 pairs kernel (its int16 widening copy is one of the things it times)
AVX2 = TARGETS["avx2"]

#: (H = W, C) of the copied inputs; (H = W, C, OC) of the convs
PAD_SHAPES = ((4, 128), (16, 32), (32, 16), (32, 64), (56, 64), (112, 64), (224, 3))
CONV_SHAPES = ((4, 128, 128), (8, 64, 64), (32, 16, 16), (32, 32, 32), (16, 128, 128), (32, 64, 64))


def best_mean_us(fn, calls: int, repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t) / calls * 1e6)
    return best


def pad_copy_row(rng, h: int, c: int) -> dict:
    x8 = rng.integers(0, 255, (1, h, h, c), dtype=np.uint8)
    xp8 = np.empty((1, h + 2, h + 2, c + c % 2), np.int16)
    xf = x8.astype(np.float32)
    xpf = np.empty((1, h + 2, h + 2, c), np.float32)
    row = {"input": f"{h}x{h}x{c}", "padded_elements": xp8.size}
    for par in (False, True):
        key = "parallel" if par else "serial"
        row[f"int8 widen {key} us"] = best_mean_us(lambda p=par: pad_widen_s16(x8, 3, 1, 1, 1, xp8, p), 300)
        row[f"fp32 pad {key} us"] = best_mean_us(lambda p=par: pad_nhwc(xf, 1, 1, xpf, p), 300)
    return row


def conv_threads_row(rng, h: int, c: int, oc: int) -> dict:
    x = rng.integers(0, 255, (1, h, h, c), dtype=np.uint8)
    w = packing.pack_conv_i8(rng.integers(-127, 127, (oc, c, 3, 3)).astype(np.int8), 1).data
    bias, mult = np.zeros(oc, np.int32), np.full(oc, 0.001, np.float32)
    out = np.empty((1, h, h, oc), np.uint8)
    row = {"conv": f"{h}x{h}x{c} -> {oc}", "ops": 2 * h * h * oc * c * 9}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        row[f"{threads} thread us"] = best_mean_us(
            lambda: conv_i8.conv2d_i8(x, 3, w, bias, out, 3, 3, 1, 1, 1, 1, 1, 1, mult, 0, 0, 255, AVX2.marker()), 300)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return row


def idle_pause() -> dict:
    name = "cifar10_vgg16"
    model = qv2c.compile(str(model_path(name)), precision="fp32")
    x = np.ascontiguousarray(load_eval_set(name, limit=1)[0])
    result = {}
    for rewarm in (0, 2):
        times = []
        for _ in range(20):
            time.sleep(0.05)
            for _ in range(rewarm):
                model.run(x)
            for _ in range(3):
                t = time.perf_counter()
                model.run(x)
                times.append((time.perf_counter() - t) * 1e3)
        result[f"{rewarm} untimed runs after the pause"] = {"median ms": statistics.median(times),
                                                            "max ms": max(times)}
    return result


def stem_profile() -> dict:
    name = "squeezenet1.1"
    calib = calibration_images(name, 16)
    x = calib[:1]
    out = {}
    for precision in ("int8", "fp32"):
        model = qv2c.compile(str(model_path(name)), calib, precision=precision)
        exe = model.executable
        feeds = {model.input_names[0]: x}
        per_run = []
        for _ in range(30):
            _, times = exe.run(feeds, profile=True)
            per_run.append(next(t.seconds for t in times if "Conv#0" in t.label))
        out[f"{precision} first conv us"] = statistics.median(per_run) * 1e6
    return out


def table(rows: list[dict]) -> list[str]:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[k]:.1f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    return lines


def main() -> None:
    rng = np.random.default_rng(0)
    result = {"cpu": cpu_model(), "date": time.strftime("%Y-%m-%d"), "threads": numba.config.NUMBA_NUM_THREADS,
              "pad_copy": [pad_copy_row(rng, h, c) for h, c in PAD_SHAPES],
              "conv_threads": [conv_threads_row(rng, *shape) for shape in CONV_SHAPES], "idle_pause": idle_pause(),
              "stem": stem_profile()}
    (RESULTS / "parallel_overhead.json").write_text(json.dumps(result, indent=1) + "\n")
    md = [f"# Small kernels: what a second thread costs and gains\n\nCPU: {result['cpu']}, {result['date']}, "
          f"{result['threads']} Numba threads. Produced by `benchmarks/parallel_overhead.py` (see its docstring).\n",
          "## Padded input copy (batch 1, best of 5 means of 300 calls)\n", *table(result["pad_copy"]),
          "\n## int8 3x3 conv, one thread against two (batch 1, best of 5 means of 300 calls)\n",
          *table(result["conv_threads"]),
          "\n## VGG16-CIFAR fp32, batch 1, runs after a 50 ms idle pause (20 pauses x 3 timed runs)\n"]
    md += [f"- {k}: median {v['median ms']:.2f} ms, max {v['max ms']:.2f} ms" for k, v in result["idle_pause"].items()]
    md += ["\n## SqueezeNet 1.1 first conv (3 input channels), median of 30 profiled runs\n"]
    md += [f"- {k}: {v:.0f}" for k, v in result["stem"].items()]
    (RESULTS / "parallel_overhead.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
