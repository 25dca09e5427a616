"""How the cost of a sensitivity list grows with the number of layers (issue: list-generation cost).

    python benchmarks/sensitivity_scaling.py [--sizes 2,4,8,16,32] [--repeats 3] [--methods a,b]

The accuracy sweep (accuracy.py) times each method's list on five real CIFAR models whose layers
differ in size, so seconds per layer vary there and the claim "list generation cost grows
linearly with the number of layers" is not shown cleanly. This is the controlled version:
synthetic ONNX CNNs that are chains of N identical layers (Conv 3x3, 16 -> 16 channels, pad 1,
+ Relu, on a 16x16x16 input; then GlobalAveragePool + Flatten + Gemm to 10 classes; seeded
He-scaled weights), for N in `--sizes`, all ranked over the same 16 seeded random images in one
analysis batch.

Each list is timed the way accuracy.py times it (its `_ranking`: the `Ranking.seconds` and
`Ranking.inferences` that `rank_layers` reports; calibration, common to every method, is
excluded), through qv2c's NumPy reference interpreter. Per point: the median of `--repeats` runs,
with the methods interleaved within a repeat so drifting machine load hits all of them alike,
after one untimed warm-up of every method on the smallest chain. Per method, least-squares fits
of time = a + b*N (b = seconds per layer) and time = a + b*N + c*N^2: leave-one-out runs N + 2
inferences (N + 1 layers, the Gemm included) of a model of N layers, so it should grow about
quadratically, QuantuneV2's two inferences linearly. output-sqnr is left out by default: it runs
as many inferences as leave-one-out (the same quadratic cost, nothing new to show); add it with
`--methods`.

Results: benchmarks/results/sensitivity_scaling.{md,json}.

    python benchmarks/sensitivity_scaling.py --cifar [--repeats 3]

measures the same on the five CIFAR-10 models, as accuracy.py sets them up (the 100 calibration
images of accuracy.py, analysis batch 20, min-max ranges, per-channel float scales): each
QuantuneV2 list time with the number of quantizable layers and the activation elements their
outputs hold over the calibration set.  Their layers differ in size, so seconds per layer differ;
a list whose cost is linear in the layers' work has a constant cost per activation element,
which the report shows.  Results: benchmarks/results/sensitivity_scaling_cifar.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx import numpy_helper as nh

sys.path.insert(0, str(Path(__file__).parent))
from accuracy import _ranking  # noqa: E402 (benchmarks/ is a folder of scripts, not a package)
from common import RESULTS, cpu_model  # noqa: E402

from qv2c.api import load_canonical  # noqa: E402
from qv2c.passes.calibrate import calibrate  # noqa: E402
from qv2c.passes.calibration_data import make_calibration_set  # noqa: E402
from qv2c.passes.realize_quant import QuantScheme  # noqa: E402
from qv2c.passes.sensitivity import SensitivityContext  # noqa: E402

SIZES = "2,4,8,16,32"
METHODS = "quantunev2,quantunev2-global,leave-one-out"
CHANNELS, HW, CLASSES = 16, 16, 10
CALIBRATION_IMAGES = 16  # one analysis batch
SEED = 0
FITS = {"linear": 1, "quadratic": 2}  # fit name -> polynomial degree in N


def chain_model(n: int, seed: int = SEED) -> onnx.ModelProto:
    """N x (Conv 3x3 CHANNELS -> CHANNELS, pad 1, + Relu), GlobalAveragePool, Flatten, Gemm to CLASSES."""
    rng = np.random.default_rng(seed)
    he = np.sqrt(2.0 / (CHANNELS * 9))  # keeps the activation scale about constant through the Relu chain
    nodes, inits, x = [], [], "input"
    for i in range(n):
        w = (rng.standard_normal((CHANNELS, CHANNELS, 3, 3)) * he).astype(np.float32)
        b = (rng.standard_normal(CHANNELS) * 0.01).astype(np.float32)
        inits += [nh.from_array(w, f"conv{i}.w"), nh.from_array(b, f"conv{i}.b")]
        nodes += [helper.make_node("Conv", [x, f"conv{i}.w", f"conv{i}.b"], [f"conv{i}"], name=f"conv{i}",
                                   kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"relu{i}")]
        x = f"relu{i}"
    fc_w = (rng.standard_normal((CLASSES, CHANNELS)) / np.sqrt(CHANNELS)).astype(np.float32)
    inits += [nh.from_array(fc_w, "fc.w"), nh.from_array(np.zeros(CLASSES, np.float32), "fc.b")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"),
              helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, f"chain{n}",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", CHANNELS, HW, HW])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def context(n: int, images: np.ndarray) -> SensitivityContext:
    """What accuracy.py hands `rank_layers` for a model, here for the N-layer chain (min-max
    ranges, per-channel float scales, the whole calibration set in one batch)."""
    module = load_canonical(chain_model(n), len(images))
    data = make_calibration_set(module, images)
    ranges = calibrate(module, data, len(images), "minmax")
    return SensitivityContext(module, data, len(images), ranges, QuantScheme("per-channel", "float"))


def measure(n: int, methods: list[str], repeats: int, images: np.ndarray) -> dict:
    """Median list seconds (and inferences, layers) of every method on the N-layer chain."""
    ctx = context(n, images)
    runs = {m: [] for m in methods}
    for _ in range(repeats):
        for m in methods:
            runs[m].append(_ranking(m, ctx))
    point = {"n": n, "layers": len(runs[methods[0]][0]["order"]), "methods": {}}
    for m, rs in runs.items():
        seconds = [r["seconds"] for r in rs]
        point["methods"][m] = {"seconds": statistics.median(seconds), "all_seconds": seconds,
                               "inferences": rs[0]["inferences"]}
        print(f"N={n:3d} {m:18s} {statistics.median(seconds):8.3f} s  ({rs[0]['inferences']} inferences, "
              f"runs {', '.join(f'{s:.3f}' for s in seconds)})", flush=True)
    return point


def fit(ns: list[int], seconds: list[float], degree: int) -> dict | None:
    """Least-squares polynomial time = sum_k coef[k] * N^k with R^2; None when the points do not determine it."""
    if len(ns) <= degree:
        return None
    x, y = np.asarray(ns, float), np.asarray(seconds, float)
    coef = np.polynomial.polynomial.polyfit(x, y, degree)
    residual = y - np.polynomial.polynomial.polyval(x, coef)
    total = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - float(np.sum(residual ** 2) / total) if total > 0 else float("nan")
    return {"coefficients": [float(c) for c in coef], "r2": r2, "points": len(ns)}


def fits(points: list[dict], methods: list[str]) -> dict:
    """Per method and fit kind, the fit of median seconds against N."""
    ns = [p["n"] for p in points]
    return {m: {kind: fit(ns, [p["methods"][m]["seconds"] for p in points], deg) for kind, deg in FITS.items()}
            for m in methods}


def _fit_cells(f: dict | None, degree: int) -> list[str]:
    if f is None:
        return ["n/a"] * (degree + 2)
    return [f"{c:.4g}" for c in f["coefficients"]] + [f"{f['r2']:.4f}"]


def write_report(meta: dict, points: list[dict], methods: list[str], fitted: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sensitivity_scaling.json").write_text(
        json.dumps({"meta": meta, "points": points, "fits": fitted}, indent=1))
    lines = [f"# Sensitivity-list cost against the number of layers (synthetic chains)\n\n"
             f"CPU: {meta['cpu']} ({meta['cpus']} CPUs, load average {meta['load_average']} at start), "
             f"{meta['date']}. {meta['note']}\n\n"
             f"Model: N x (Conv 3x3 {CHANNELS}->{CHANNELS}, pad 1, + Relu) on 1x{CHANNELS}x{HW}x{HW}, then "
             f"GlobalAveragePool + Flatten + Gemm to {CLASSES} (N + 1 quantizable layers); {meta['images']} seeded "
             f"random images in one batch; per-channel float scales, min-max ranges. Seconds = median of "
             f"{meta['repeats']} runs of `rank_layers` (reference interpreter, calibration excluded), the "
             "figure accuracy.py reports as list time; inf = inferences over the calibration set.\n",
             "| N | layers | " + " | ".join(f"{m} s (inf)" for m in methods) + " | leave-one-out / quantunev2 |",
             "|---|---|" + "---|" * len(methods) + "---|"]
    for p in points:
        cells = [f"{p['methods'][m]['seconds']:.3f} ({p['methods'][m]['inferences']})" for m in methods]
        ms = p["methods"]
        ratio = (f"{ms['leave-one-out']['seconds'] / ms['quantunev2']['seconds']:.1f}x"
                 if {"leave-one-out", "quantunev2"} <= ms.keys() else "n/a")
        lines.append(f"| {p['n']} | {p['layers']} | " + " | ".join(cells) + f" | {ratio} |")
    lines += ["\nLeast-squares fits of median seconds against N (b = seconds per layer in the linear fit; "
              f"{len(points)} points, R^2 = 1 by construction when the points equal the parameters):\n",
              "| method | linear a | linear b | linear R^2 | quadratic a | quadratic b | quadratic c | quadratic R^2 |",
              "|---|---|---|---|---|---|---|---|"]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(_fit_cells(fitted[m]["linear"], 1) + _fit_cells(fitted[m]["quadratic"], 2))
                     + " |")
    (RESULTS / "sensitivity_scaling.md").write_text("\n".join(lines) + "\n")


CIFAR_MODELS = ("cifar10_resnet18v1", "cifar10_squeezenet1_1", "cifar10_vgg16", "cifar10_resnet50v1",
                "cifar10_mobilenetv2")
CIFAR_METHODS = ("quantunev2", "quantunev2-global")
CIFAR_ANALYSIS_BATCH = 20  # accuracy.py's analysis batch for CIFAR-10


def cifar_point(name: str, repeats: int) -> dict:
    """List seconds of the QuantuneV2 methods on one CIFAR model, with its layers and activation elements."""
    from common import calibration_images

    from qv2c.datasets import model_path
    from qv2c.passes.layers import layer_macs, quantizable_layers

    images = calibration_images(name, 100)
    module = load_canonical(str(model_path(name)), CIFAR_ANALYSIS_BATCH)
    data = make_calibration_set(module, images)
    ranges = calibrate(module, data, CIFAR_ANALYSIS_BATCH, "minmax")
    ctx = SensitivityContext(module, data, CIFAR_ANALYSIS_BATCH, ranges, QuantScheme("per-channel", "float"))
    layers = quantizable_layers(module)
    per_image = sum(op.result.type.size for op in layers) // CIFAR_ANALYSIS_BATCH
    runs = {m: [] for m in CIFAR_METHODS}
    _ranking(CIFAR_METHODS[0], ctx)  # untimed warm-up
    for _ in range(repeats):
        for m in CIFAR_METHODS:
            runs[m].append(_ranking(m, ctx)["seconds"])
    macs = sum(layer_macs(op) for op in layers) // CIFAR_ANALYSIS_BATCH * len(images)
    point = {"model": name, "layers": len(layers), "elements": per_image * len(images), "macs": macs,
             "images": len(images),
             "seconds": {m: statistics.median(v) for m, v in runs.items()}, "all_seconds": runs}
    print(f"{name}: {point['layers']} layers, {point['elements'] / 1e6:.1f} M elements, "
          + ", ".join(f"{m} {t:.2f} s" for m, t in point["seconds"].items()), flush=True)
    return point


def work_fit(points: list[dict], method: str) -> dict:
    """Least squares seconds = a * MACs + b * elements over the models, with R^2 and the largest relative residual."""
    design = np.array([[p["macs"], p["elements"]] for p in points], float)
    t = np.array([p["seconds"][method] for p in points])
    (a, b), *_ = np.linalg.lstsq(design, t, rcond=None)
    residual = t - design @ np.array([a, b])
    r2 = 1.0 - float(np.sum(residual ** 2) / np.sum((t - t.mean()) ** 2))
    return {"a": float(a), "b": float(b), "r2": r2, "worst_relative_residual": float(np.max(np.abs(residual) / t))}


def write_cifar_report(meta: dict, points: list[dict]) -> None:
    (RESULTS / "sensitivity_scaling_cifar.json").write_text(json.dumps({"meta": meta, "points": points}, indent=1))
    lines = ["# Sensitivity-list cost on the five CIFAR-10 models\n",
             f"CPU: {meta['cpu']} ({meta['cpus']} CPUs, load average {meta['load_average']} at start), {meta['date']}. "
             f"As accuracy.py: {points[0]['images']} calibration images, analysis batch {CIFAR_ANALYSIS_BATCH}, "
             "min-max ranges, per-channel float scales, reference interpreter; seconds = median of "
             f"{meta['repeats']} runs of `rank_layers` (calibration excluded), methods interleaved.  Elements = "
             "the values the quantizable layers output over the calibration set (what the activation metrics read).\n",
             "| model | layers | MACs (G) | elements (M) | " + " | ".join(f"{m} s | {m} ms / layer | {m} ns / element"
                                                           for m in CIFAR_METHODS) + " |",
             "|---|---|---|---|" + "---|---|---|" * len(CIFAR_METHODS)]
    for p in points:
        cells = []
        for m in CIFAR_METHODS:
            t = p["seconds"][m]
            cells += [f"{t:.2f}", f"{1e3 * t / p['layers']:.0f}", f"{1e9 * t / p['elements']:.1f}"]
        lines.append(f"| {p['model']} | {p['layers']} | {p['macs'] / 1e9:.1f} | {p['elements'] / 1e6:.1f} | "
                     + " | ".join(cells) + " |")
    lines.append("\nA list is two inferences (work ~ multiply-adds) plus per-layer metrics (work ~ activation "
                 "elements), so across models its time should follow t = a * MACs + b * elements with no term in "
                 "the layer count squared.  Least-squares fit over the five models (no intercept):\n")
    lines.append("| method | a (ns / MAC) | b (ns / element) | R^2 | seconds per layer: max / min | "
                 "largest |residual| / time |")
    lines.append("|---|---|---|---|---|---|")
    for m in CIFAR_METHODS:
        per_layer = [p["seconds"][m] / p["layers"] for p in points]
        f = work_fit(points, m)
        lines.append(f"| {m} | {1e9 * f['a']:.3f} | {1e9 * f['b']:.1f} | {f['r2']:.3f} | "
                     f"{max(per_layer) / min(per_layer):.1f}x | {f['worst_relative_residual']:.0%} |")
    (RESULTS / "sensitivity_scaling_cifar.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cifar", action="store_true", help="time the QuantuneV2 lists of the five CIFAR-10 models instead")
    p.add_argument("--sizes", default=SIZES, help=f"comma-separated chain lengths N (default {SIZES})")
    p.add_argument("--repeats", type=int, default=3, help="runs per point; the median is reported (default 3)")
    p.add_argument("--methods", default=METHODS, help=f"comma-separated sensitivity methods (default {METHODS})")
    args = p.parse_args()
    if args.cifar:
        meta = {"cpu": cpu_model(), "cpus": os.cpu_count(), "load_average": f"{os.getloadavg()[0]:.2f}",
                "date": time.strftime("%Y-%m-%d"), "repeats": args.repeats}
        write_cifar_report(meta, [cifar_point(name, args.repeats) for name in CIFAR_MODELS])
        print((RESULTS / "sensitivity_scaling_cifar.md").read_text())
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    methods = args.methods.split(",")
    meta = {"cpu": cpu_model(), "cpus": os.cpu_count(), "load_average": f"{os.getloadavg()[0]:.2f}",
            "date": time.strftime("%Y-%m-%d"), "repeats": args.repeats, "images": CALIBRATION_IMAGES,
            "note": "The machine is shared with other jobs; methods are interleaved within each repeat, "
                    "so compare them within a row before across rows."}
    images = np.random.default_rng(SEED).standard_normal((CALIBRATION_IMAGES, CHANNELS, HW, HW)).astype(np.float32)
    warm = context(sizes[0], images)
    for m in methods:  # untimed: one-off imports and reference-kernel loading stay out of the first point
        _ranking(m, warm)
    points = [measure(n, methods, args.repeats, images) for n in sizes]
    fitted = fits(points, methods)
    for m in methods:
        print(f"{m}: " + "; ".join(f"{kind} coef {[round(c, 4) for c in f['coefficients']]} R^2 {f['r2']:.4f}"
                                   for kind, f in fitted[m].items() if f is not None), flush=True)
    write_report(meta, points, methods, fitted)


if __name__ == "__main__":
    main()
