"""ShuffleNet's channel shuffles (issue 15, layout folding): qv2c against onnxruntime, and per-kernel profiles
with and without `fold-channel-permutation`.

    python benchmarks/shufflenet_layout.py [--threads 2] [--rounds 10] [--profile-runs 5]

The model is `light_shufflenet.onnx` from the `onnx` wheel (onnx/backend/test/data/light/; its weights
are not a trained network's, so calibration uses random inputs: only speed and the kernel mix are
measured here, exactness is tested in tests/passes/test_fold_channel_permutation.py).  Batch 1:
qv2c fp32 and int8 (every layer) against onnxruntime fp32 and `quantize_static` QDQ per-channel int8,
same threads.  Rounds are interleaved (each engine 2 untimed and 10 timed runs per round); medians
in ms, and the ratios to onnxruntime from the same run.

Profiles: "before" is qv2c with `fold-channel-permutation` taken out of the canonicalize pipeline (every
shuffle runs as Reshape, Transpose, Reshape: strided copies through NCHW), "after" is the pipeline as it
is.  Per kernel function: the median over `--profile-runs` profiled runs of each call, summed, and its
share of the run; plus the largest single layout-kernel call's share (the issue's bar: no layout copy
above 5 % of the int8 profile).

Results: benchmarks/results/shufflenet_layout.md (with the CPU model and its flags).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cpu_flags, cpu_model, interleaved_medians, onnxruntime_quantized, onnxruntime_session  # noqa: E402

import qv2c  # noqa: E402
import qv2c.api  # noqa: E402
from qv2c.passes import CANONICALIZE  # noqa: E402

MODEL = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_shufflenet.onnx"
INPUT = "gpu_0/data_0"  # the ONNX name (qv2c names it gpu_0_data_0)
UNTIMED, TIMED = 2, 10
#: kernels that only move or reorder elements
LAYOUT = ("copy_nd", "copy_flat", "permute_channels", "concat_part", "nchw_to_nhwc", "nhwc_to_nchw", "fill_flat",
          "pad_nhwc", "pad_gather")


def _compile(calib: np.ndarray, precision: str, fold: bool) -> qv2c.CompiledModel:
    pipeline = CANONICALIZE if fold else [p for p in CANONICALIZE if p != "fold-channel-permutation"]
    with mock.patch.object(qv2c.api, "CANONICALIZE", pipeline):
        return qv2c.compile(str(MODEL), calib, precision=precision)


def _profile(model: qv2c.CompiledModel, x: np.ndarray, runs: int) -> tuple[dict[str, float], float, float]:
    """(kernel function -> ms per run, total ms, largest single layout call's share of the total)."""
    per_call = defaultdict(list)
    functions = {}
    for _ in range(runs + 1):  # the first run is untimed
        _, times = model.executable.run({model.input_names[0]: x}, profile=True)
        for k in times:
            per_call[k.index].append(k.seconds)
            functions[k.index] = k.kernel.rsplit(":", 1)[-1]
    median = {i: statistics.median(t[1:]) * 1e3 for i, t in per_call.items()}
    total = sum(median.values())
    by_fn: dict[str, float] = defaultdict(float)
    for i, ms in median.items():
        by_fn[functions[i]] += ms
    layout_max = max((ms for i, ms in median.items() if functions[i] in LAYOUT), default=0.0)
    return dict(by_fn), total, layout_max / total


def _profile_table(profiles: dict[str, tuple[dict[str, float], float, float]]) -> list[str]:
    names = list(profiles)
    fns = sorted({f for p, _, _ in profiles.values() for f in p}, key=lambda f: -max(p.get(f, 0.0)
                                                                                       for p, _, _ in profiles.values()))
    lines = ["| kernel | " + " | ".join(f"{n} ms | %" for n in names) + " |",
             "|---|" + "---|---|" * len(names)]
    for f in fns:
        cells = []
        for n in names:
            p, total, _ = profiles[n]
            cells.append(f"{p[f]:.3f} | {100 * p[f] / total:.1f}" if f in p else "- | -")
        lines.append(f"| {f}{' (layout)' if f in LAYOUT else ''} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"{profiles[n][1]:.3f} | 100" for n in names) + " |")
    lines.append("| largest single layout call, % of total | "
                 + " | ".join(f"| {100 * profiles[n][2]:.1f}" for n in names) + " |")
    layout_sum = [100 * sum(v for f, v in profiles[n][0].items() if f in LAYOUT) / profiles[n][1] for n in names]
    lines.append("| all layout calls, % of total | " + " | ".join(f"| {s:.1f}" for s in layout_sum) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--profile-runs", type=int, default=5)
    args = p.parse_args()
    import numba

    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((16, 3, 224, 224)).astype(np.float32)
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        q = Path(tmp) / "shufflenet_int8.onnx"
        onnxruntime_quantized(MODEL, q, calib, input_name=INPUT)
        models = {f"qv2c {prec}": _compile(calib, prec, True) for prec in ("fp32", "int8")}
        sessions = {"onnxruntime fp32": onnxruntime_session(str(MODEL), args.threads),
                    "onnxruntime int8": onnxruntime_session(str(q), args.threads)}
        runs = {name: (lambda m=m: m.run(x)) for name, m in models.items()}
        runs.update({name: (lambda s=s: s.run(None, {INPUT: x})) for name, s in sessions.items()})
        med = interleaved_medians(runs, args.rounds, UNTIMED, TIMED)
        profiles = {}
        for prec in ("fp32", "int8"):
            profiles[f"{prec} before"] = _profile(_compile(calib, prec, False), x, args.profile_runs)
            profiles[f"{prec} after"] = _profile(models[f"qv2c {prec}"], x, args.profile_runs)
        kernels = [k.function for k in models["qv2c int8"].executable.program.kernels]
    lines = ["# ShuffleNet (`light_shufflenet.onnx`, 224x224): channel shuffles folded or run as one kernel\n",
             f"CPU: {cpu_model()} ({cpu_flags()}), {args.threads} threads, batch 1, {time.strftime('%Y-%m-%d')}. "
             f"Median of {args.rounds * TIMED} runs ({args.rounds} interleaved rounds), ms.\n",
             "| engine | ms |", "|---|---|"]
    lines += [f"| {name} | {v:.3f} |" for name, v in med.items()]
    lines += ["", f"qv2c fp32 / onnxruntime fp32: {med['qv2c fp32'] / med['onnxruntime fp32']:.2f}; "
              f"qv2c int8 / onnxruntime int8: {med['qv2c int8'] / med['onnxruntime int8']:.2f}; "
              f"qv2c int8 / qv2c fp32: {med['qv2c int8'] / med['qv2c fp32']:.2f}.", "",
              f"Per-kernel profiles (median of {args.profile_runs} profiled runs per call, summed per kernel "
              "function), before (without `fold-channel-permutation`) and after:", ""]
    lines += _profile_table(profiles)
    lines += ["", f"qv2c int8 program: {kernels.count('permute_channels')} `permute_channels` calls, "
              f"{kernels.count('copy_nd')} `copy_nd` calls, {len(kernels)} kernel calls in all."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shufflenet_layout.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
