"""Cold start: compile time of a model on an empty cache and a warm one, and the memory a loaded model adds.

    QV2C_DATA=../shared/data python benchmarks/cold_start.py [--model cifar10_resnet18v1] [--repeats 3]

The same measurements as `latency.py`'s compile and memory tables (fresh processes: `latency.child`),
on their own, so they can be rerun after a backend change without the whole latency run.  Cold = new
empty Numba and qv2c program cache directories; warm = the same directories again.  Memory = RSS growth
of a fresh process while it builds the model and runs it 10 times (qv2c, fp32 and int8) or creates the
onnxruntime session and runs it (fp32 and QDQ int8), 1 thread.

Results: benchmarks/results/cold_start.md (with the CPU and the qv2c target).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import latency  # noqa: E402 (benchmarks/ is a folder of scripts)
from common import RESULTS, cpu_flags, cpu_model  # noqa: E402


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({', '.join(f'{v:.1f}' for v in values)})"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="cifar10_resnet18v1")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    times = latency.compile_times(args.model, args.repeats)
    mem = latency.memory(args.model, 1)
    lines = [f"# Cold start of {args.model}\n",
             f"CPU: {cpu_model()} ({cpu_flags()}), {time.strftime('%Y-%m-%d')}. {args.repeats} fresh-process repeats; "
             "median (all values). `qv2c.compile` with QuantuneV2 k = 3 on 100 calibration images, then one run.\n",
             "| cache | compile s | first run s | total s |", "|---|---|---|---|"]
    for kind in ("cold", "warm"):
        cells = [_cell([r[key] for r in times[kind]]) for key in ("compile_s", "first_run_s", "total_s")]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += ["", "| engine | RSS growth MiB |", "|---|---|"]
    lines += [f"| {mode} | {m['rss_growth'] / 2**20:.0f} |" for mode, m in mem.items()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cold_start.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
