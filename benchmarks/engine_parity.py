"""Numba backend vs NumPy reference interpreter on one evaluation-set run, set up as accuracy.py.

    QV2C_DATA=../shared/data python benchmarks/engine_parity.py mobilenetv2:per-channel/float: squeezenet1.1:per-channel/float:Conv#7

Each case is `model:scheme:fp32 layers` (comma-separated; empty = full int8). The module is the one
accuracy.py evaluates (same calibration images, min-max ranges, `realize_quant`); it runs once on
the compiled Numba program (`accuracy.run_batches`) and once through `qv2c.ir.interpreter.evaluate`,
on the same images. Full int8 must give identical logits; with fp32 layers the two engines sum those
layers in different orders, and the report says how many images end up in another class. Appends
to results/engine_parity.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from accuracy import run_batches  # noqa: E402 (benchmarks/ is a folder of scripts, not a package)
from common import RESULTS, calibration_images, cpu_model  # noqa: E402

from qv2c.api import load_canonical
from qv2c.datasets import load_eval_set, model_info, model_path, top1
from qv2c.ir.interpreter import evaluate
from qv2c.passes.calibrate import calibrate
from qv2c.passes.calibration_data import make_calibration_set
from qv2c.passes.layers import layer_name, quantizable_layers
from qv2c.passes.realize_quant import QuantScheme, realize_quant


def parity(name: str, scheme: str, fp32_layers: list[str], images: int) -> str:
    """One Markdown table row comparing the two engines on the first `images` evaluation images."""
    path = str(model_path(name))
    info = model_info(name)
    x, y = load_eval_set(name, indices=slice(0, images) if info.dataset == "imagenet" else range(0, 10000, 5))
    x, y = x[:images], y[:images]
    analysis_batch = 1 if info.dataset == "imagenet" else 20  # as accuracy.py calibrates
    analysis = load_canonical(path, analysis_batch)
    ranges = calibrate(analysis, make_calibration_set(analysis, calibration_images(name, 100)), analysis_batch,
                       "minmax")
    runtime = load_canonical(path, 1)
    layers = {layer_name(op) for op in quantizable_layers(runtime)}
    unknown = set(fp32_layers) - layers
    if unknown:
        raise SystemExit(f"{name} has no layer {sorted(unknown)}; its layers: {sorted(layers)}")

    def module():
        return realize_quant(runtime, layers - set(fp32_layers), ranges, QuantScheme(*scheme.split("/"))).module

    fast = run_batches(module(), x)
    ref_module = module()
    ref = np.concatenate([evaluate(ref_module, {ref_module.inputs[0].name: x[i:i + 1]}, free_dead=True)
                          [id(ref_module.outputs[0])] for i in range(len(x))])
    off = info.label_offset
    moved = int(np.sum(fast.argmax(1) != ref.argmax(1)))
    verdict = "identical" if np.array_equal(fast, ref) else f"differ (max {np.abs(fast - ref).max():.3g})"
    return (f"| {name} | {scheme} | {','.join(fp32_layers) or '(full int8)'} | {len(x)} | {verdict} | {moved} | "
            f"{top1(fast, y, off):.2f} | {top1(ref, y, off):.2f} |")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("cases", nargs="+", help="model:scheme:fp32 layers (comma-separated, may be empty)")
    p.add_argument("--images", type=int, default=1200)
    args = p.parse_args()
    out = RESULTS / "engine_parity.md"
    if not out.exists():
        out.write_text("# Numba backend vs reference interpreter on evaluation images (benchmarks/engine_parity.py)\n\n"
                       "| model | scheme | fp32 layers | images | logits | images in another class | "
                       "top-1 Numba | top-1 interpreter |\n|---|---|---|---|---|---|---|---|\n")
    for case in args.cases:
        name, scheme, fp32 = case.split(":")
        row = parity(name, scheme, [n for n in fp32.split(",") if n], args.images)
        print(row, flush=True)
        with out.open("a") as f:
            f.write(f"{row} <!-- {cpu_model()}, {time.strftime('%Y-%m-%d')} -->\n")


if __name__ == "__main__":
    main()
