"""A/B latency of two qv2c source trees on whole models, interleaved (for tuning constants).

    QV2C_DATA=../shared/data python benchmarks/ab_compare.py TREE_A TREE_B \\
        --models cifar10_resnet18v1:fp32,mobilenetv2:int8 [--rounds 20] [--label NAME]

A kernel constant such as `tiling.PARALLEL_MIN_OPS` is compiled into the Numba kernels, so
two settings cannot share a process.  This runs one long-lived worker process per tree (its
own `PYTHONPATH`, Numba cache and program cache), each holding the compiled model, and asks
them in turn for a block of 2 untimed and 6 timed batch-1 runs, `--rounds` times after a
short pause, so a slow spell of the shared machine hits both alike.  Reported: the median of
each side's timed runs and B/A.  Kernels are compiled (or loaded from the tree's cache)
before the first block.  Results append to benchmarks/results/ab_compare.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cpu_model  # noqa: E402 (benchmarks/ is a folder of scripts)

UNTIMED, TIMED = 2, 6


def worker(name: str, precision: str) -> None:
    """Compile `name` at `precision`, then answer each stdin line with a JSON list of run times."""
    import numpy as np
    from common import calibration_images

    import qv2c
    from qv2c.datasets import model_path

    calib = calibration_images(name, 8)
    x = np.ascontiguousarray(calib[:1])
    model = qv2c.compile(str(model_path(name)), calib, precision=precision)
    for _ in range(10):
        model(x)
    print("ready", flush=True)
    for _ in sys.stdin:
        for _ in range(UNTIMED):
            model(x)
        times = []
        for _ in range(TIMED):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
        print(json.dumps(times), flush=True)


def start(tree: Path, side: str, name: str, precision: str, scratch: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(tree), NUMBA_CACHE_DIR=str(scratch / f"numba_{side}"),
               QV2C_CACHE_DIR=str(scratch / f"qv2c_{side}"))
    proc = subprocess.Popen([sys.executable, __file__, "--worker", name, precision], cwd=tree, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"worker for {name} {precision} in {tree} failed to start")
    return proc


def compare(trees: dict[str, Path], name: str, precision: str, rounds: int, scratch: Path) -> dict:
    procs = {side: start(tree, side, name, precision, scratch) for side, tree in trees.items()}
    times: dict[str, list[float]] = {side: [] for side in procs}
    try:
        for _ in range(rounds):
            for side, proc in procs.items():
                time.sleep(0.03)
                proc.stdin.write("go\n")
                proc.stdin.flush()
                times[side] += json.loads(proc.stdout.readline())
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    med = {side: statistics.median(v) for side, v in times.items()}
    return {"model": name, "precision": precision, "median_s": med, "b_over_a": med["B"] / med["A"]}


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], sys.argv[3])
        return
    p = argparse.ArgumentParser()
    p.add_argument("tree_a", type=Path)
    p.add_argument("tree_b", type=Path)
    p.add_argument("--models", required=True, help="name:precision,...")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--label", default="", help="what A and B are, for the report")
    p.add_argument("--scratch", type=Path, default=Path("/tmp/qv2c_ab"))
    args = p.parse_args()
    trees = {"A": args.tree_a.resolve(), "B": args.tree_b.resolve()}
    rows = []
    for spec in args.models.split(","):
        name, precision = spec.split(":")
        rows.append(compare(trees, name, precision, args.rounds, args.scratch))
        r = rows[-1]
        print(f"{name} {precision}: A {r['median_s']['A'] * 1e3:.3f} ms, B {r['median_s']['B'] * 1e3:.3f} ms, "
              f"B/A {r['b_over_a']:.2f}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    lines = [f"\n## {args.label or 'A/B'} ({cpu_model()}, {time.strftime('%Y-%m-%d')})\n",
             f"Batch 1, median of {args.rounds * TIMED} runs per side in {args.rounds} interleaved rounds.\n",
             "| model | precision | A ms | B ms | B/A |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['precision']} | {r['median_s']['A'] * 1e3:.3f} | {r['median_s']['B'] * 1e3:.3f} | "
              f"{r['b_over_a']:.2f} |" for r in rows]
    out = RESULTS / "ab_compare.md"
    head = "" if out.exists() else "# A/B runs of two source trees (benchmarks/ab_compare.py)\n"
    with out.open("a") as f:
        f.write(head + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
