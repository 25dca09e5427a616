"""How much of a single fp32 layer's effect on top-1 is the layer, and how much the calibration draw?

    QV2C_DATA=../shared/data python benchmarks/calibration_stability.py squeezenet1.1 per-channel/float --draws 5

accuracy.py calibrates once, on the 100 calibration images of a model. On models whose full-int8
drop is a handful of images, which layer is best kept in fp32 (leave-one-out's pick) and whether
QuantuneV2's pick helps can then hinge on that one draw. This script repeats the experiment over
calibration draws: draw 0 is accuracy.py's (all 100 images), draw d > 0 a seeded random subset of
`--subset` of them (the way onnxruntime's docs calibrate on a sample). For every draw it computes
min-max ranges, QuantuneV2's ranking (local variant, its two inferences), full-int8 top-1, and the
top-1 with each single layer kept fp32, all on the model's evaluation images (as accuracy.py: first
1200 ImageNet validation images; every 5th CIFAR-10 test image). Each single-layer result is given as
the number of images it gains (+) or loses (-) against full int8 under the same draw, with the
paired McNemar p; the table's last columns say how stable each layer's effect is across draws. A second
table gives each layer's effect on fidelity to the fp32 model over the same images (logit SQNR against
fp32's logits, and the number of images whose class is fp32's class), which is what the sensitivity
methods estimate; top-1 against the labels sees that only where it flips a borderline image.
Writes results/calibration_stability_<model>_<scheme>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from accuracy import run_batches  # noqa: E402 (benchmarks/ is a folder of scripts, not a package)
from common import RESULTS, calibration_images, cpu_model, mcnemar  # noqa: E402

from qv2c.api import load_canonical
from qv2c.datasets import load_eval_set, model_info, model_path
from qv2c.errors import QV2CError
from qv2c.ir.core import Module
from qv2c.passes.calibrate import calibrate
from qv2c.passes.calibration_data import make_calibration_set
from qv2c.passes.layers import layer_name, quantizable_layers
from qv2c.passes.realize_quant import QuantScheme, realize_quant
from qv2c.passes.sensitivity import SensitivityContext, rank_layers
from qv2c.passes.sensitivity.metrics import ErrorStats


def draw_images(calib: np.ndarray, draw: int, subset: int) -> np.ndarray:
    """Draw 0: every calibration image (accuracy.py's draw); draw d: a seeded subset."""
    if draw == 0:
        return calib
    pick = np.sort(np.random.default_rng(draw).choice(len(calib), size=subset, replace=False))
    return calib[pick]


def logit_sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """SQNR of `approx` against the fp32 logits over all evaluation images: the output error that
    top-1 only sees where it flips a borderline image."""
    stats = ErrorStats()
    stats.update(reference, approx)
    return stats.sqnr_db


SCHEMES = ("per-channel/float", "per-tensor/float", "per-channel/power-of-2", "per-tensor/power-of-2")


def draw_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The model, scheme and draw options both draw scripts take."""
    nargs = None if required else "?"
    p.add_argument("model", nargs=nargs)
    p.add_argument("scheme", nargs=nargs, choices=SCHEMES if required else (*SCHEMES, None))
    p.add_argument("--draws", type=int, default=5, help="calibration draws, draw 0 included")
    p.add_argument("--subset", type=int, default=64, help="calibration images in draws 1..")


def checked_model(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, in one line, a model the registry does not know or draw counts that make no sense."""
    try:
        model_info(args.model)
    except QV2CError as e:
        p.error(str(e))
    if args.draws < 1 or not 1 <= args.subset <= 100:
        p.error("--draws must be at least 1 and --subset between 1 and the 100 calibration images")


def evaluation_set(model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """accuracy.py's evaluation images (the first 1200 ImageNet validation images, or every 5th
    CIFAR-10 test image), their labels, and the fp32 model's logits on them."""
    imagenet = model_info(model).dataset == "imagenet"
    x, y = load_eval_set(model, indices=slice(0, 1200) if imagenet else range(0, 10000, 5))
    return x, y, run_batches(load_canonical(str(model_path(model)), 1 if imagenet else 50), x)


def calibrated(name: str, scheme: QuantScheme, calib: np.ndarray) -> tuple[SensitivityContext, Module]:
    """What a calibration draw fixes, set up as accuracy.py does: the sensitivity context (analysis
    module, calibration set, min-max ranges) and the module at the evaluation batch size."""
    path = str(model_path(name))
    analysis_batch, eval_batch = (1, 1) if model_info(name).dataset == "imagenet" else (20, 50)
    analysis = load_canonical(path, analysis_batch)
    data = make_calibration_set(analysis, calib)
    ranges = calibrate(analysis, data, analysis_batch, "minmax")
    return SensitivityContext(analysis, data, analysis_batch, ranges, scheme), load_canonical(path, eval_batch)


def one_draw(name: str, scheme: QuantScheme, calib: np.ndarray, x: np.ndarray, y: np.ndarray,
             fp32_logits: np.ndarray) -> dict:
    """Full-int8 and every single-fp32-layer result under one calibration draw."""
    info = model_info(name)
    ctx, runtime = calibrated(name, scheme, calib)
    ranges = ctx.ranges
    ranking = rank_layers("quantunev2", ctx)
    layers = [layer_name(op) for op in quantizable_layers(runtime)]

    fp32_class = np.argmax(fp32_logits, axis=1)

    def run(fp32_layers: set[str]) -> tuple[np.ndarray, float, int]:
        """Which images it gets right, its logit SQNR against fp32, and on how many images its
        class is fp32's class."""
        logits = run_batches(realize_quant(runtime, set(layers) - fp32_layers, ranges, scheme).module, x)
        cls = np.argmax(logits, axis=1)
        return cls - info.label_offset == y, logit_sqnr_db(fp32_logits, logits), int(np.sum(cls == fp32_class))

    int8, int8_sqnr, int8_agree = run(set())
    single = {}
    for layer in layers:
        r, sqnr, agree = run({layer})
        split = mcnemar(r, int8)
        single[layer] = {"gain": int(r.sum() - int8.sum()), "a_only": split["a_only"], "b_only": split["b_only"],
                         "p": split["p"], "logit_sqnr_gain_db": sqnr - int8_sqnr, "agree_gain": agree - int8_agree}
    return {"int8_right": int(int8.sum()), "int8_logit_sqnr_db": int8_sqnr, "int8_agree": int8_agree,
            "quantunev2_order": ranking.top(5), "single": single}


def report(name: str, scheme_name: str, draws: list[dict], images: int) -> str:
    layers = list(draws[0]["single"])
    head = "| layer | " + " | ".join(f"draw {d}" for d in range(len(draws))) + " | mean | sd | draws < 0 | draws > 0 |"
    lines = [f"# Calibration draws vs single fp32 layers: {name}, {scheme_name} (benchmarks/calibration_stability.py)",
             "", f"{images} evaluation images; draw 0 calibrates on all {draws[0]['calibration_images']} "
             "calibration images (accuracy.py's draw), draw d > 0 on a seeded random subset of "
             f"{draws[-1]['calibration_images']}. CPU: {cpu_model()}; {time.strftime('%Y-%m-%d')}.", "",
             "| draw | full-int8 top-1 | QuantuneV2's first 5 | best single fp32 layer by top-1 on the evaluation images (images gained) |",
             "|---|---|---|---|"]
    for d, draw in enumerate(draws):
        best = max(draw["single"], key=lambda n: draw["single"][n]["gain"])
        lines.append(f"| {d} | {100 * draw['int8_right'] / images:.2f} | {', '.join(draw['quantunev2_order'])} | "
                     f"{best} ({draw['single'][best]['gain']:+d}) |")
    lines += ["", "Images gained (+) or lost (-) against full int8 of the same draw when one layer stays fp32 "
              "(paired McNemar p in brackets where below 0.05):", "", head,
              "|---|" + "---|" * (len(draws) + 4)]
    for layer in layers:
        gains = [draw["single"][layer]["gain"] for draw in draws]
        cells = [f"{g:+d}" + (f" (p {draw['single'][layer]['p']:.3f})" if draw["single"][layer]["p"] < 0.05 else "")
                 for g, draw in zip(gains, draws)]
        spread = f"{np.std(gains, ddof=1):.1f}" if len(gains) > 1 else "-"
        lines.append(f"| {layer} | " + " | ".join(cells) + f" | {np.mean(gains):+.1f} | {spread} | "
                     f"{sum(g < 0 for g in gains)} | {sum(g > 0 for g in gains)} |")
    lines += ["", "Fidelity to fp32 over the evaluation images, per draw: the logit SQNR gain in dB over full int8 "
              "of the same draw (full int8: " + ", ".join(f"{draw['int8_logit_sqnr_db']:.2f}" for draw in draws)
              + " dB), the layer's place when layers are sorted by that gain (1 = the largest), and the change "
              "in the number of images whose class is fp32's class (full int8: "
              + ", ".join(str(draw["int8_agree"]) for draw in draws) + f" of {images}):", "",
              "| layer | " + " | ".join(f"draw {d}" for d in range(len(draws))) + " |",
              "|---|" + "---|" * len(draws)]
    places = [sorted(layers, key=lambda n, draw=draw: -draw["single"][n]["logit_sqnr_gain_db"]) for draw in draws]
    for layer in layers:
        cells = [f"{draw['single'][layer]['logit_sqnr_gain_db']:+.2f} dB ({order.index(layer) + 1}), "
                 f"{draw['single'][layer]['agree_gain']:+d}"
                 for draw, order in zip(draws, places)]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    draw_arguments(p)
    args = p.parse_args()
    checked_model(p, args)
    x, y, fp32_logits = evaluation_set(args.model)
    calib = calibration_images(args.model, 100)
    scheme = QuantScheme(*args.scheme.split("/"))
    stem = f"calibration_stability_{args.model}_{args.scheme.replace('/', '_')}"
    draws = []
    for d in range(args.draws):
        start = time.perf_counter()
        images = draw_images(calib, d, args.subset)
        draw = one_draw(args.model, scheme, images, x, y, fp32_logits)
        draw["calibration_images"] = len(images)
        draws.append(draw)
        print(f"draw {d}: int8 {draw['int8_right']}/{len(y)}, QuantuneV2 {draw['quantunev2_order'][:3]}, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        (RESULTS / f"{stem}.json").write_text(json.dumps({"model": args.model, "scheme": args.scheme,
                                                         "images": len(y), "draws": draws}, indent=1))
        (RESULTS / f"{stem}.md").write_text(report(args.model, args.scheme, draws, len(y)))


if __name__ == "__main__":
    main()
