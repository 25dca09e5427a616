"""Is "QuantuneV2 trails a baseline at this k" a property of the method or of the calibration draw?

    QV2C_DATA=../shared/data python benchmarks/method_stability.py cifar10_resnet18v1 per-channel/float --draws 5

accuracy.py calibrates once. Where full int8 loses a handful of images, its check "QuantuneV2 no worse
than random, first-last and weight-sqnr at every k" compares top-1s that differ by a few images. This
script reruns that comparison over calibration draws (draw 0 is accuracy.py's: all 100 calibration
images; draw d > 0 a seeded random subset, as calibration_stability.py draws them). For every draw:
min-max ranges, the rankings of quantunev2, weight-sqnr, first-last and random (seed 0, as
accuracy.py), and the top-1 of each method's first k layers kept fp32, for k = 1, 2, 3, 5, 10, on
accuracy.py's evaluation images (first 1200 ImageNet validation images; every 5th CIFAR-10 test
image), and the logit SQNR of each against the fp32 model's logits on those images: fidelity to fp32,
which is what the sensitivity methods estimate, and which a handful of borderline images cannot
swing. Draw 0 must reproduce accuracy.py's cached top-1s; the script checks that and says so.
For each baseline and k the report gives QuantuneV2's lead in images per draw and the number of
draws in which it trails. Writes results/method_stability_<model>_<scheme>.{md,json}.

`--method quantunev2-referred` (or another variant) judges that variant the same way instead, with
the default quantunev2 as a fourth method to compare against, and writes
results/method_stability_<model>_<scheme>_<method>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from accuracy import CACHE_DIR, KS, run_batches  # noqa: E402 (benchmarks/ is a folder of scripts, not a package)
from calibration_stability import (  # noqa: E402
    calibrated,
    checked_model,
    draw_arguments,
    draw_images,
    evaluation_set,
    logit_sqnr_db,
)
from common import RESULTS, calibration_images, cpu_model  # noqa: E402

from qv2c.datasets import model_info
from qv2c.passes.layers import layer_name, quantizable_layers
from qv2c.passes.realize_quant import QuantScheme, realize_quant
from qv2c.passes.sensitivity import METHODS, rank_layers

DEFAULT_METHOD = "quantunev2"
BASELINES = ("random", "first-last", "weight-sqnr")


def compared_with(method: str) -> tuple[str, ...]:
    """The methods `method` is judged against: the three weak baselines, and the default QuantuneV2
    when `method` is another variant of it."""
    return BASELINES if method == DEFAULT_METHOD else (*BASELINES, DEFAULT_METHOD)


def one_draw(name: str, scheme: QuantScheme, calib: np.ndarray, x: np.ndarray, y: np.ndarray,
             fp32_logits: np.ndarray, method: str = DEFAULT_METHOD) -> dict:
    """Every method's top-1 (images right) and logit SQNR against fp32 at every k, under one
    calibration draw."""
    info = model_info(name)
    ctx, runtime = calibrated(name, scheme, calib)
    ranges = ctx.ranges
    orders = {m: rank_layers(m, ctx).top(max(KS)) for m in (method, *compared_with(method))}
    layers = {layer_name(op) for op in quantizable_layers(runtime)}
    results: dict[frozenset, tuple[int, float]] = {}

    def result(fp32_layers: frozenset) -> tuple[int, float]:
        """(images right, logit SQNR against fp32 in dB), each assignment run once."""
        if fp32_layers not in results:
            logits = run_batches(realize_quant(runtime, layers - fp32_layers, ranges, scheme).module, x)
            results[fp32_layers] = (int(np.sum(np.argmax(logits, axis=1) - info.label_offset == y)),
                                    logit_sqnr_db(fp32_logits, logits))
        return results[fp32_layers]

    by_k = {m: {k: result(frozenset(order[:k])) for k in KS if k <= len(order)} for m, order in orders.items()}
    return {"int8_right": result(frozenset())[0], "orders": orders,
            "right_by_k": {m: {k: r[0] for k, r in rs.items()} for m, rs in by_k.items()},
            "sqnr_by_k": {m: {k: r[1] for k, r in rs.items()} for m, rs in by_k.items()}}


def cached_figures(name: str, scheme_name: str, images: int, draw: dict) -> list[str]:
    """Draw 0 against accuracy.py's cache: the lines that differ (none if it reproduces)."""
    cache_file = CACHE_DIR / f"{name}.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    differ = []
    for method, by_k in draw["right_by_k"].items():
        ranking = cache.get(f"{name}|{scheme_name}|ranking|{method}")
        if ranking is None:
            continue
        if ranking["order"][: max(KS)] != draw["orders"][method]:
            differ.append(f"{method}: ranking differs from the cached one")
            continue
        for k, n_right in by_k.items():
            key = f"{name}|{images}|{scheme_name}|" + ",".join(sorted(ranking["order"][:k]))
            if key in cache and abs(cache[key] - 100 * n_right / images) > 1e-9:
                differ.append(f"{method} k={k}: cached {cache[key]:.2f}, now {100 * n_right / images:.2f}")
    return differ


def report(name: str, scheme_name: str, draws: list[dict], images: int, subset: int, reproduced: list[str],
           method: str = DEFAULT_METHOD) -> str:
    n = len(draws)
    lines = [f"# {method} vs baselines over calibration draws: {name}, {scheme_name} "
             "(benchmarks/method_stability.py)", "",
             f"{images} evaluation images; draw 0 calibrates on all 100 calibration images (accuracy.py's draw), "
             f"draws 1..{n - 1} on seeded random subsets of {subset}. CPU: {cpu_model()}; {time.strftime('%Y-%m-%d')}.", "",
             "Draw 0 against accuracy.py's cache: " + ("every cached top-1 and ranking reproduced." if not reproduced
                                                      else "DIFFERS: " + "; ".join(reproduced)), "",
             "Full-int8 images right per draw: " + ", ".join(str(d["int8_right"]) for d in draws) + ".", "",
             f"{method}'s first three layers per draw: " + "; ".join(", ".join(d["orders"][method][:3]) for d in draws)
             + ".", "",
             f"{method}'s lead over each baseline in images (negative: it trails), per draw:", "",
             *lead_table(draws, "right_by_k", "+d", "+.1f", method), "",
             f"The same assignments judged by fidelity to the fp32 model instead of the labels: {method}'s lead in "
             "logit SQNR against fp32 over the evaluation images, in dB (negative: it trails), per draw:", "",
             *lead_table(draws, "sqnr_by_k", "+.2f", "+.2f", method)]
    return "\n".join(lines) + "\n"


def lead_table(draws: list[dict], field: str, cell: str, mean: str, method: str = DEFAULT_METHOD) -> list[str]:
    """Markdown rows of `method`'s lead over each method it is compared with at each k, one column per draw."""
    n = len(draws)
    rows = ["| baseline | k | " + " | ".join(f"draw {d}" for d in range(n)) + " | mean | draws it trails |",
            "|---|---|" + "---|" * (n + 2)]
    for baseline in compared_with(method):
        for k in draws[0][field][method]:
            leads = [d[field][method][k] - d[field][baseline][k] for d in draws]
            rows.append(f"| {baseline} | {k} | " + " | ".join(format(v, cell) for v in leads)
                        + f" | {format(np.mean(leads), mean)} | {sum(v < 0 for v in leads)} of {n} |")
    return rows


def summary() -> str:
    """One line per model, scheme and method run so far: in how many (baseline, k) cells the method
    trails in most draws, by top-1 and by fidelity to fp32."""
    lines = ["# QuantuneV2 vs baselines over calibration draws: summary (benchmarks/method_stability.py --summary)", "",
             "Cells are (baseline, k) pairs: 3 baselines x 5 k (a variant of QuantuneV2 is also compared with the "
             "default quantunev2: the last two columns). \"Trails\" counts cells where the method is behind in "
             "most draws (more than half); \"ahead\" where it is ahead in most. Per-model tables: "
             "`method_stability_<model>_<scheme>[_<method>].md`.", "",
             "| model | scheme | method | draws | top-1: trails | top-1: ahead | top-1: trails in every draw | "
             "fidelity: trails | fidelity: ahead | fidelity: trails in every draw | vs quantunev2 top-1: trails / "
             "ahead | vs quantunev2 fidelity: trails / ahead |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(RESULTS.glob("method_stability_*_*.json")):
        run = json.loads(path.read_text())
        method = run.get("method", DEFAULT_METHOD)
        draws, n = run["draws"], len(run["draws"])
        counts, versus = [], []
        for field in ("right_by_k", "sqnr_by_k"):
            if not all(field in d for d in draws):
                counts += ["-", "-", "-"]
                versus.append("-")
                continue
            cells = {b: [[d[field][method][k] - d[field][b][k] for d in draws] for k in draws[0][field][method]]
                     for b in compared_with(method)}
            weak = [leads for b in BASELINES for leads in cells[b]]
            counts += [str(sum(sum(v < 0 for v in leads) > n / 2 for leads in weak)),
                       str(sum(sum(v > 0 for v in leads) > n / 2 for leads in weak)),
                       str(sum(all(v < 0 for v in leads) for leads in weak))]
            default = cells.get(DEFAULT_METHOD)
            versus.append("-" if default is None else f"{sum(sum(v < 0 for v in leads) > n / 2 for leads in default)}"
                          f" / {sum(sum(v > 0 for v in leads) > n / 2 for leads in default)}")
        lines.append(f"| {run['model']} | {run['scheme']} | {method} | {n} | " + " | ".join(counts + versus) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    draw_arguments(p, required=False)
    p.add_argument("--summary", action="store_true", help="only rebuild results/method_stability.md from the runs")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=[m for m in METHODS if m.startswith(DEFAULT_METHOD)],
                   help="the QuantuneV2 variant to judge (default: %(default)s)")
    args = p.parse_args()
    if args.summary or not args.model:
        (RESULTS / "method_stability.md").write_text(summary())
        print(summary())
        return
    if args.scheme is None:
        p.error("give a scheme after the model, or --summary")
    checked_model(p, args)
    x, y, fp32_logits = evaluation_set(args.model)
    calib = calibration_images(args.model, 100)
    scheme = QuantScheme(*args.scheme.split("/"))
    stem = f"method_stability_{args.model}_{args.scheme.replace('/', '_')}"
    if args.method != DEFAULT_METHOD:
        stem += f"_{args.method}"
    draws, reproduced = [], []
    for d in range(args.draws):
        start = time.perf_counter()
        draw = one_draw(args.model, scheme, draw_images(calib, d, args.subset), x, y, fp32_logits, args.method)
        draws.append(draw)
        if d == 0:
            reproduced = cached_figures(args.model, args.scheme, len(y), draw)
        print(f"draw {d}: int8 {draw['int8_right']}/{len(y)}, {time.perf_counter() - start:.0f} s"
              + (f"; draw 0 vs cache: {reproduced or 'reproduced'}" if d == 0 else ""), flush=True)
        (RESULTS / f"{stem}.json").write_text(json.dumps({"model": args.model, "scheme": args.scheme, "method": args.method,
                                                          "images": len(y), "draws": draws}, indent=1))
        (RESULTS / f"{stem}.md").write_text(report(args.model, args.scheme, draws, len(y), args.subset, reproduced,
                                                   args.method))


if __name__ == "__main__":
    main()
