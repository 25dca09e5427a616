"""What power-of-2 scales cost in speed: full-int8 models with float and with shift requantization.

    QV2C_DATA=../shared/data python benchmarks/power_of_2_speed.py [--models a,b] [--runs 30]

A "shift" layer runs the same int8 kernels as a "float" one, given int32 per-channel shifts
instead of float32 multipliers (`qv2c/runtime/kernels/epilogue_kind.py`); this measures what the
integer-only epilogue costs.  Per model, batch 1, weights per tensor (the scheme of the
power-of-2 accuracy table): qv2c int8 with `scale_kind="float"` and `"power-of-2"`, medians of
interleaved rounds (`latency.interleaved_medians`), both compiled from the same 32 calibration images.
Results: benchmarks/results/power_of_2_speed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, calibration_images, cpu_model  # noqa: E402 (benchmarks/ is a folder of scripts)
from latency import ALL_MODELS, CALIBRATION_IMAGES, interleaved_medians, threads  # noqa: E402

import qv2c  # noqa: E402
from qv2c.datasets import model_path  # noqa: E402

KINDS = ("float", "power-of-2")


def measure(name: str, runs: int, rounds: int) -> dict:
    calib = calibration_images(name, CALIBRATION_IMAGES)
    models = {kind: qv2c.compile(str(model_path(name)), calib, precision="int8", weight_granularity="per-tensor",
                                 scale_kind=kind) for kind in KINDS}
    x = calib[:1]
    medians = interleaved_medians({kind: (lambda m=m: m(x)) for kind, m in models.items()}, runs, rounds)
    reference_fallbacks = sum(k.function == "run_reference" for k in models["power-of-2"].executable.program.kernels)
    return {"model": name, "median_s": medians, "power_of_2_reference_fallbacks": reference_fallbacks}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default=",".join(ALL_MODELS))
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    rows = []
    for name in args.models.split(","):
        rows.append(measure(name, args.runs, args.rounds))
        print(rows[-1], flush=True)
    meta = {"cpu": cpu_model(), "date": time.strftime("%Y-%m-%d"), "threads": threads(), "batch": 1,
            "runs": args.runs, "rounds": args.rounds}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "power_of_2_speed.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# int8 latency with float and power-of-2 (shift) requantization\n",
             f"CPU: {meta['cpu']}, {meta['date']}, {meta['threads']} threads, batch 1, weights per tensor. "
             f"Median of {args.runs} runs in {args.rounds} interleaved rounds. `fallbacks` = kernels of the "
             "power-of-2 program that run the NumPy reference instead of a compiled kernel.\n",
             "| model | float ms | power-of-2 ms | power-of-2 / float | fallbacks |", "|---|---|---|---|---|"]
    for r in rows:
        f, s = r["median_s"]["float"], r["median_s"]["power-of-2"]
        lines.append(f"| {r['model']} | {f * 1e3:.2f} | {s * 1e3:.2f} | {s / f:.2f} | "
                     f"{r['power_of_2_reference_fallbacks']} |")
    (RESULTS / "power_of_2_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
