"""Latency of a CNN whose "same" padding is exported as explicit `Pad` nodes (issue 15), against onnxruntime.

    python benchmarks/padded_model.py [--size 224] [--threads 2] [--rounds 20]

The model is `models/make_padded_dwcnn.py`'s (built here in a temporary folder; random weights, so
calibration uses random inputs: only speed and the kernel list are measured here, exactness is
tested in tests/test_pad_island.py).  qv2c fp32 and int8 (`fold-pad` folds every Pad into its conv)
against onnxruntime fp32 and `quantize_static` QDQ per-channel int8, same threads, batch 1.  Rounds
are interleaved (each engine 2 untimed and 10 timed runs per round); medians in ms.  Also the int8
program's kernel list, which must hold no standalone pad or copy.

Results: benchmarks/results/padded_model.md (with the CPU model and its flags).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cpu_flags, cpu_model, interleaved_medians, onnxruntime_quantized, onnxruntime_session  # noqa: E402
from models.make_padded_dwcnn import build  # noqa: E402

import qv2c  # noqa: E402

UNTIMED, TIMED = 2, 10


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args()
    import numba

    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((32, 3, args.size, args.size)).astype(np.float32)
    x = rng.standard_normal((1, 3, args.size, args.size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        src, q = Path(tmp) / "padded.onnx", Path(tmp) / "padded_int8.onnx"
        onnx.save(build(args.size), src)
        onnxruntime_quantized(src, q, calib)
        models = {"qv2c fp32": qv2c.compile(str(src), calib, precision="fp32"),
                  "qv2c int8": qv2c.compile(str(src), calib, precision="int8")}
        sessions = {"onnxruntime fp32": onnxruntime_session(str(src), args.threads),
                    "onnxruntime int8": onnxruntime_session(str(q), args.threads)}
        runs = {name: (lambda m=m: m.run(x)) for name, m in models.items()}
        runs.update({name: (lambda s=s: s.run(None, {"input": x})) for name, s in sessions.items()})
        med = interleaved_medians(runs, args.rounds, UNTIMED, TIMED)
        kernels = [k.function for k in models["qv2c int8"].executable.program.kernels]
    lines = [f"# A CNN with explicit Pad nodes (`models/make_padded_dwcnn.py`, {args.size}x{args.size})\n",
             f"CPU: {cpu_model()} ({cpu_flags()}), {args.threads} threads, batch 1, {time.strftime('%Y-%m-%d')}. "
             f"Median of {args.rounds * TIMED} runs ({args.rounds} interleaved rounds), ms.\n",
             "| engine | ms |", "|---|---|"]
    lines += [f"| {name} | {v:.3f} |" for name, v in med.items()]
    lines += ["", f"qv2c int8 / qv2c fp32: {med['qv2c int8'] / med['qv2c fp32']:.2f}; "
              f"qv2c int8 / onnxruntime int8: {med['qv2c int8'] / med['onnxruntime int8']:.2f}; "
              f"qv2c fp32 / onnxruntime fp32: {med['qv2c fp32'] / med['onnxruntime fp32']:.2f}.", "",
              "qv2c int8 kernels, in program order: " + ", ".join(kernels) + "."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "padded_model.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
