"""The analysis on generated code (issue 15, part 4): list times and ranking agreement.

    QV2C_DATA=../shared/data python benchmarks/analysis_speed.py [--models a,b] [--repeats 3] [--reference-loo a,b]

For every model of accuracy.md (100 calibration images, as there; analysis batch as `qv2c.compile`
picks it): calibration, QuantuneV2's list (calibration excluded) and leave-one-out's list on the
Numba evaluator (`qv2c/analysis_backend.py`) and on the reference interpreter, beside the time of
two plain inferences over the calibration set (the compiled fused fp32 and all-int8 programs, as
`qv2c.compile` builds them). Numba figures are medians of `--repeats` runs after a first one; the
first run (program build, kernels loaded from a warm cache) is reported on its own. Interpreter
figures are one run (they take seconds to minutes). Leave-one-out on the interpreter runs only for
`--reference-loo` models (it takes up to ~12 minutes a model; accuracy.md has its earlier times).

Agreement: each evaluator calibrates and ranks end to end (as `compile(analysis_backend=...)`
would); the report gives, per scheme, whether QuantuneV2's top-k sets and leave-one-out's match
for k = 1, 2, 3, 5, 10, and where one differs, the scores of the layers that swap. Ranges: how
many are bit-equal and the largest relative difference.

Kernel JIT: `--jit-model` (default cifar10_resnet18v1) runs calibration + QuantuneV2 in a fresh
process on empty Numba and qv2c program caches (cold), then again on the same caches (warm).
Results: benchmarks/results/analysis_speed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, calibration_images, cpu_flags, cpu_model  # noqa: E402 (a folder of scripts)

from qv2c.analysis_backend import NumbaEvaluator
from qv2c.api import _analysis_batch, load_canonical
from qv2c.backend import build_executable
from qv2c.datasets import model_path
from qv2c.passes import run_pipeline
from qv2c.passes.calibrate import calibrate
from qv2c.passes.calibration_data import make_calibration_set
from qv2c.passes.evaluator import ReferenceEvaluator
from qv2c.passes.layers import layer_name, quantizable_layers
from qv2c.passes.realize_quant import QuantScheme, realize_quant
from qv2c.passes.sensitivity import SensitivityContext, rank_layers

MODELS = ["mobilenetv2", "squeezenet1.1", "cifar10_resnet18v1", "cifar10_resnet50v1", "cifar10_squeezenet1_1",
          "cifar10_vgg16", "cifar10_mobilenetv2"]
SCHEMES = ("per-channel", "per-tensor")
KS = (1, 2, 3, 5, 10)
CALIBRATION = 100


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def setup(name: str):
    path = str(model_path(name))
    x = calibration_images(name, CALIBRATION)
    runtime = load_canonical(path, 1)
    batch = _analysis_batch(len(x), runtime)
    module = load_canonical(path, batch) if batch != 1 else runtime
    return path, module, make_calibration_set(module, x), batch


def plain_inferences(path: str, module, data, batch: int, ranges, repeats: int) -> float:
    """Median time of one fp32 and one all-int8 pass over the calibration set (fused programs)."""
    fp32 = run_pipeline(load_canonical(path, batch), ["fuse"])
    layers = {layer_name(op) for op in quantizable_layers(module)}
    int8 = run_pipeline(realize_quant(module, layers, ranges, QuantScheme()).module, ["fuse"])
    exes = [build_executable(m) for m in (fp32, int8)]
    batches = [inputs for inputs, _ in data.batches(batch)]
    for exe in exes:
        exe.run(batches[0])
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for exe in exes:
            for inputs in batches:
                exe.run(inputs)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def numba_times(repeats: int, fn, *args, **kwargs) -> tuple[object, float, float]:
    """(result, first run s, median of `repeats` later runs s)."""
    result, first = timed(fn, *args, **kwargs)
    return result, first, statistics.median(timed(fn, *args, **kwargs)[1] for _ in range(repeats))


def agreement(a, b) -> dict:
    """Top-k set agreement of two rankings of the same layers; for a k where they differ, the layers
    in one top-k only, with their score in each ranking."""
    sa, sb = {r.name: r.score for r in a.records}, {r.name: r.score for r in b.records}
    out = {"same_order": a.top(len(a.records)) == b.top(len(b.records)), "k": {}}
    for k in KS:
        if k > len(a.records):
            continue
        diff = set(a.top(k)) ^ set(b.top(k))
        out["k"][k] = {"same": not diff, "swaps": {n: (sa[n], sb[n]) for n in sorted(diff)}}
    return out


def measure(name: str, repeats: int, reference_loo: bool) -> dict:
    path, module, data, batch = setup(name)
    ref, nb = ReferenceEvaluator(), NumbaEvaluator()
    res: dict = {"layers": len(quantizable_layers(module)), "batch": batch}
    ranges_ref, res["calibrate_reference_s"] = timed(calibrate, module, data, batch, evaluator=ref)
    ranges_nb, res["calibrate_numba_first_s"], res["calibrate_numba_s"] = numba_times(
        repeats, calibrate, module, data, batch, evaluator=nb)
    rel = [abs(p - q) / max(abs(p), abs(q), 1e-30) for n in ranges_ref for p, q in zip(ranges_ref[n], ranges_nb[n])]
    res["ranges"] = {"count": len(ranges_ref), "equal": sum(ranges_ref[n] == ranges_nb[n] for n in ranges_ref),
                     "max_rel_diff": max(rel)}
    res["two_inferences_s"] = plain_inferences(path, module, data, batch, ranges_nb, repeats)
    for scheme in SCHEMES:
        ctx_ref = SensitivityContext(module, data, batch, ranges_ref, QuantScheme(scheme), evaluator=ref)
        ctx_nb = SensitivityContext(module, data, batch, ranges_nb, QuantScheme(scheme), evaluator=nb)
        r_ref, t_ref = timed(rank_layers, "quantunev2", ctx_ref)
        r_nb, first, med = numba_times(repeats, rank_layers, "quantunev2", ctx_nb)
        res[scheme] = {"quantunev2_reference_s": t_ref, "quantunev2_numba_first_s": first, "quantunev2_numba_s": med,
                       "quantunev2_agreement": agreement(r_ref, r_nb), "quantunev2_top10": r_nb.top(10)}
        if scheme == "per-channel":
            loo_nb, res[scheme]["loo_numba_s"] = timed(rank_layers, "leave-one-out", ctx_nb)
            if reference_loo:
                loo_ref, res[scheme]["loo_reference_s"] = timed(rank_layers, "leave-one-out", ctx_ref)
                res[scheme]["loo_agreement"] = agreement(loo_ref, loo_nb)
    return res


def jit_times(name: str) -> dict:
    """Calibration + QuantuneV2 on the Numba evaluator in fresh processes: empty caches, then warm."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "QV2C_CACHE_DIR": os.path.join(tmp, "qv2c"), "NUMBA_CACHE_DIR": os.path.join(tmp, "numba")}
        for kind in ("cold", "warm"):
            proc = subprocess.run([sys.executable, __file__, "--child", name], env=env, capture_output=True, text=True,
                                  check=True)
            out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def child(name: str) -> None:
    _, module, data, batch = setup(name)
    nb = NumbaEvaluator()
    ranges, cal = timed(calibrate, module, data, batch, evaluator=nb)
    _, q = timed(rank_layers, "quantunev2", SensitivityContext(module, data, batch, ranges, QuantScheme(), evaluator=nb))
    print(json.dumps({"calibrate_s": cal, "quantunev2_s": q}))


def _agree_cell(agree: dict) -> str:
    ks = agree["k"]
    same = [str(k) for k, v in ks.items() if v["same"]]
    return ("all" if len(same) == len(ks) else ",".join(same) or "none") + (" (same order)" if agree["same_order"] else "")


def render(results: dict, jit: dict, repeats: int) -> str:
    lines = ["# Analysis on generated code: list times and ranking agreement\n",
             f"CPU: {cpu_model()} ({cpu_flags()}), {time.strftime('%Y-%m-%d')}. {CALIBRATION} calibration images "
             f"per model. Numba: median of {repeats} runs after a first run (program build; kernels from a warm "
             "cache); interpreter: one run. Two plain inferences: the fused fp32 and all-int8 (per-channel) programs "
             "over the calibration set. QuantuneV2 time is the list alone (calibration excluded). Measured once, on a "
             "2-core machine shared with two other developers' jobs: compare within a row, and rerun on a quiet "
             "machine for absolute figures.\n",
             "| model | layers | batch | 2 inferences s | calibrate numba s (first) | calibrate interp s | "
             "QuantuneV2 numba s (first) | QuantuneV2 interp s | QV2 / 2 inf | leave-one-out numba s | "
             "leave-one-out interp s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        pc = r["per-channel"]
        loo_ref = f"{pc['loo_reference_s']:.1f}" if "loo_reference_s" in pc else "not run"
        lines.append(f"| {name} | {r['layers']} | {r['batch']} | {r['two_inferences_s']:.3f} | "
                     f"{r['calibrate_numba_s']:.3f} ({r['calibrate_numba_first_s']:.2f}) | {r['calibrate_reference_s']:.2f} | "
                     f"{pc['quantunev2_numba_s']:.3f} ({pc['quantunev2_numba_first_s']:.2f}) | "
                     f"{pc['quantunev2_reference_s']:.2f} | {pc['quantunev2_numba_s'] / r['two_inferences_s']:.1f}x | "
                     f"{pc['loo_numba_s']:.1f} | {loo_ref} |")
    lines += ["", "## Agreement with the interpreter", "",
              "Each side calibrated (min-max) and ranked on its own evaluator. Top-k: the k for which the two top-k "
              "sets are equal.", "",
              "| model | ranges bit-equal | max rel. range diff | QuantuneV2 per-channel top-k | QuantuneV2 per-tensor "
              "top-k | leave-one-out per-channel top-k |", "|---|---|---|---|---|---|"]
    swaps = []
    for name, r in results.items():
        cells = []
        for scheme, key in (("per-channel", "quantunev2_agreement"), ("per-tensor", "quantunev2_agreement"),
                            ("per-channel", "loo_agreement")):
            agree = r[scheme].get(key)
            cells.append(_agree_cell(agree) if agree else "not run")
            for k, v in (agree or {"k": {}})["k"].items():
                for layer, (a, b) in v["swaps"].items():
                    swaps.append(f"| {name} | {scheme} {key.split('_')[0]} | {k} | {layer} | {a:.6g} | {b:.6g} |")
        rg = r["ranges"]
        lines.append(f"| {name} | {rg['equal']}/{rg['count']} | {rg['max_rel_diff']:.2g} | " + " | ".join(cells) + " |")
    if swaps:
        lines += ["", "Where a top-k set differs: the layers in only one of the two, with their score on each "
                  "(interpreter, Numba).", "", "| model | ranking | k | layer | score interp | score numba |",
                  "|---|---|---|---|---|---|", *swaps]
    if jit:
        lines += ["", "## Kernel JIT", "",
                  "Calibration and QuantuneV2 (per-channel) on the Numba evaluator in a fresh process: cold = empty "
                  "Numba and qv2c program caches, warm = the same caches again.", "",
                  "| model | cache | calibrate s | QuantuneV2 s |", "|---|---|---|---|"]
        for name, kinds in jit.items():
            for kind, t in kinds.items():
                lines.append(f"| {name} | {kind} | {t['calibrate_s']:.1f} | {t['quantunev2_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reference-loo", default="cifar10_resnet18v1,cifar10_vgg16",
                   help="models whose leave-one-out also runs on the interpreter")
    p.add_argument("--jit-model", default="cifar10_resnet18v1", help="'' to skip the cold/warm JIT runs")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child)
        return
    loo = set(filter(None, args.reference_loo.split(",")))
    results = {}
    for name in filter(None, args.models.split(",")):
        results[name] = measure(name, args.repeats, name in loo)
        print(name, json.dumps(results[name]), flush=True)
    jit = {args.jit_model: jit_times(args.jit_model)} if args.jit_model else {}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "analysis_speed.json").write_text(json.dumps({"results": results, "jit": jit}, indent=1))
    (RESULTS / "analysis_speed.md").write_text(render(results, jit, args.repeats))
    print(render(results, jit, args.repeats))


if __name__ == "__main__":
    main()
