"""Mixed-precision accuracy experiment (issue: QuantuneV2 and its baselines).

    QV2C_DATA=../shared/data python benchmarks/accuracy.py [--models a,b] [--schemes per-channel/float,...]
    ... --models cifar10_resnet18v1,... --cifar-eval 10000 --out accuracy_cifar10k   # all CIFAR-10 test images

For every model and quantization scheme: fp32 top-1, full-int8 top-1, onnxruntime's
`quantize_static` (QDQ, same scheme, same calibration images) top-1, and for every
sensitivity method the top-1 with k = 1, 2, 3, 5, 10 layers kept in fp32, the
smallest k within 1 point of fp32, the wall time to produce the method's list and
its number of inferences over the calibration set.

Data: ImageNet models calibrate on the last 100 images of imagenet_val_1300 and are
evaluated on the first 1200; CIFAR-10 models calibrate on 100 training images (every
500th) and are evaluated on `--cifar-eval` test images spread evenly over the test set (every
5th by default: the set is stored class by class). Sensitivity
analyses (calibration, rankings, leave-one-out's N+1 inferences) run through qv2c's
NumPy reference interpreter, so every method's list time is measured on the same
engine; the top-1 evaluations run the compiled program on the Numba backend
(`boundary+fuse`). Its int8 layers are bit-identical to the interpreter's; its fp32 layers sum
in another order than NumPy's BLAS, which can move a value at the next fp32 -> int8 boundary by
one step and so flip a borderline image (SqueezeNet per-channel with Conv#7 in fp32: 68.58 here,
68.83 on the interpreter, of 1200 images). Results are cached per configuration in
benchmarks/results/accuracy_cache/<model>.json (one file per model, so models can run
in parallel processes), so an interrupted run resumes; a run over all models whose
results are cached only rebuilds benchmarks/results/accuracy.{md,json} (or `--out`'s name).
Every new top-1 also caches which images it got right, so the report can say, for a method
that trails another, whether the gap is more than chance (exact McNemar test over the images
only one of the two gets right); `--backfill` reruns cached top-1s that predate this and
checks that they reproduce. onnxruntime
quantizes the BN-free `_folded` export of each CIFAR model (the same fp32 function),
because its quantizer does not fold BatchNormalization nodes itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from accuracy_checks import VARIANTS, must_show, within  # noqa: E402 (benchmarks/ is a folder of scripts, not a package)
from common import (  # noqa: E402
    RESULTS,
    calibration_images,
    cpu_model,
    mcnemar,
    onnxruntime_model_path,
    onnxruntime_quantized,
    onnxruntime_session,
)

from qv2c.api import load_canonical
from qv2c.backend import build_executable
from qv2c.datasets import load_eval_set, model_info, model_path, top1
from qv2c.passes import run_pipeline
from qv2c.passes.calibrate import calibrate
from qv2c.passes.calibration_data import make_calibration_set
from qv2c.passes.layers import layer_name, quantizable_layers
from qv2c.passes.realize_quant import QuantScheme, realize_quant
from qv2c.passes.sensitivity import METHODS, SensitivityContext, rank_layers

CACHE_DIR = RESULTS / "accuracy_cache"
KS = (1, 2, 3, 5, 10)
MAX_K_SEARCH = 15
ALL_MODELS = ["mobilenetv2", "squeezenet1.1", "cifar10_resnet18v1", "cifar10_resnet50v1", "cifar10_squeezenet1_1",
              "cifar10_vgg16", "cifar10_mobilenetv2"]
SCHEMES = ["per-channel/float", "per-tensor/float"]


class Missing(Exception):
    """A result the cache does not hold, asked for by a report-only run."""


class Cache:
    def __init__(self, path: Path, frozen: bool = False):
        self.path = path
        self.frozen = frozen  # report only: never compute, raise Missing instead
        self.data = json.loads(path.read_text()) if path.exists() else {}

    def get(self, key: str, compute):
        if key not in self.data and self.frozen:
            raise Missing(key)
        if key not in self.data:
            self.put(key, compute())
        return self.data[key]

    def put(self, key: str, value) -> None:
        """Store `value` and write the file at once (atomically), so an interrupted run keeps it."""
        self.data[key] = value
        self.path.parent.mkdir(exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        tmp.replace(self.path)


def run_batches(module, x: np.ndarray) -> np.ndarray:
    """Outputs of `module` (fixed batch b) over all rows of x, padding the last batch, run as a
    fused Numba program (the `fuse` pass rewrites `module` in place)."""
    b = module.inputs[0].type.shape[0]
    name, out = module.inputs[0].name, module.outputs[0].name
    exe = build_executable(run_pipeline(module, ["fuse"]))
    outs = []
    for start in range(0, len(x), b):
        idx = np.minimum(np.arange(start, start + b), len(x) - 1)
        outs.append(exe.run({name: x[idx]})[out][: min(b, len(x) - start)])
    return np.concatenate(outs)


def onnxruntime_int8_logits(path: str, calib: np.ndarray, scheme: str, x: np.ndarray, batch: int) -> np.ndarray:
    """Logits of onnxruntime's `quantize_static` model (QDQ, `scheme`'s weight granularity), one thread."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "q.onnx")
        onnxruntime_quantized(path, out, calib, per_channel=scheme.startswith("per-channel"))
        session = onnxruntime_session(out, threads=1)
        return np.concatenate([session.run(None, {"input": x[i:i + batch]})[0] for i in range(0, len(x), batch)])


class Scorer:
    """Top-1 of a run's logits, cached under `key`; the images it got right are cached beside it
    (`key|right`, packed bits in hex) so two runs on the same images can be compared image by
    image (`paired`). Results cached before this existed have no `|right` entry."""

    def __init__(self, cache: Cache, y: np.ndarray, label_offset: int, backfill: bool = False):
        self.cache, self.y, self.label_offset = cache, y, label_offset
        self.backfill = backfill  # rerun cached results that have no per-image entry yet

    def top1(self, key: str, logits_of) -> float:
        def compute():
            logits = logits_of()
            right = np.argmax(logits, axis=1) - self.label_offset == self.y
            self.cache.data[f"{key}|right"] = np.packbits(right).tobytes().hex()
            return top1(logits, self.y, self.label_offset)
        data = self.cache.data
        if self.backfill and not self.cache.frozen and key in data and f"{key}|right" not in data:
            cached, fresh = data[key], compute()
            if fresh != cached:  # the rerun must reproduce the cached figure; say so loudly if not
                print(f"MISMATCH {key}: cached {cached}, rerun {fresh}", flush=True)
            self.cache.put(key, fresh)
        return self.cache.get(key, compute)

    def right(self, key: str) -> np.ndarray | None:
        bits = self.cache.data.get(f"{key}|right")
        if bits is None:
            return None
        return np.unpackbits(np.frombuffer(bytes.fromhex(bits), np.uint8))[: len(self.y)].astype(bool)


def experiment(name: str, schemes: list[str], methods: list[str], cifar_eval: int, report_only: bool = False,
               backfill: bool = False) -> dict:
    """One model's row; `report_only` builds it from the cache alone, leaving out what is not there;
    `backfill` reruns cached top-1s that lack per-image results (and checks they reproduce)."""
    cache = Cache(CACHE_DIR / f"{name}.json", frozen=report_only)
    info = model_info(name)
    path = str(model_path(name))
    ort_path = str(onnxruntime_model_path(name))
    calib = calibration_images(name, 100)
    if info.dataset == "imagenet":
        x, y = load_eval_set(name, indices=slice(0, 1200))
        analysis_batch, eval_batch = 1, 1
    else:
        # every (10000 / cifar_eval)-th test image: the test set is stored class by class, so its first
        # 2000 images would be two classes only
        x, y = load_eval_set(name, indices=range(0, 10000, 10000 // cifar_eval))
        analysis_batch, eval_batch = 20, 50
    analysis = load_canonical(path, analysis_batch)
    runtime = load_canonical(path, eval_batch)
    data = make_calibration_set(analysis, calib)
    calibrated: dict = {}

    def ranges():
        if not calibrated:
            start = time.perf_counter()
            calibrated["ranges"] = calibrate(analysis, data, analysis_batch, "minmax")
            calibrated["seconds"] = time.perf_counter() - start
        return calibrated["ranges"]
    layers = [layer_name(op) for op in quantizable_layers(runtime)]
    prefix = f"{name}|{len(y)}"
    scorer = Scorer(cache, y, info.label_offset, backfill)
    fp32 = scorer.top1(f"{prefix}|fp32", lambda: run_batches(load_canonical(path, eval_batch), x))
    row = {"model": name, "layers": len(layers), "eval_images": len(y), "calibration_images": len(calib),
           "fp32_top1": fp32, "schemes": {}}
    print(f"{name}: {len(layers)} layers, fp32 {fp32:.2f}", flush=True)
    for scheme_name in schemes:
        granularity, scale_kind = scheme_name.split("/")
        scheme = QuantScheme(granularity, scale_kind)

        def mixed_key(fp32_layers: frozenset, scheme_name=scheme_name) -> str:
            return f"{prefix}|{scheme_name}|" + ",".join(sorted(fp32_layers))

        def mixed_top1(fp32_layers: frozenset, scheme=scheme) -> float:
            return scorer.top1(mixed_key(fp32_layers), lambda: run_batches(
                realize_quant(runtime, set(layers) - fp32_layers, ranges(), scheme).module, x))

        try:
            entry = {"int8_top1": mixed_top1(frozenset()), "methods": {}}
        except Missing:
            continue
        if scale_kind == "float":
            entry["onnxruntime_int8_top1"] = scorer.top1(
                f"{prefix}|{scheme_name}|onnxruntime",
                lambda scheme_name=scheme_name: onnxruntime_int8_logits(ort_path, calib, scheme_name, x,
                                                                        eval_batch if info.dataset == "cifar10" else 1))
        print(f"  {scheme_name}: int8 {entry['int8_top1']:.2f} ort {entry.get('onnxruntime_int8_top1')}", flush=True)
        for method in methods:
            try:
                ranking = cache.get(f"{name}|{scheme_name}|ranking|{method}", lambda method=method, scheme=scheme: _ranking(
                    method, SensitivityContext(analysis, data, analysis_batch, ranges(), scheme)))
                order = ranking["order"]
                by_k = {k: mixed_top1(frozenset(order[:k])) for k in KS if k <= len(order)}
                smallest = smallest_k(lambda k, order=order: within(mixed_top1(frozenset(order[:k])), fp32, 1.0),
                                      min(MAX_K_SEARCH, len(order)))
            except Missing:
                continue
            entry["methods"][method] = {"top1_by_k": by_k, "smallest_k_within_1pt": smallest,
                                        "seconds": ranking["seconds"], "inferences": ranking["inferences"],
                                        "order": order[:10]}
            print(f"    {method}: {by_k} smallest k {smallest} ({ranking['seconds']:.1f} s, "
                  f"{ranking['inferences']} inferences)", flush=True)
        entry["paired"] = paired(entry["methods"], lambda order, k: scorer.right(mixed_key(frozenset(order[:k]))))
        row["schemes"][scheme_name] = entry
    return row


def paired(methods: dict, right_of) -> dict:
    """For each QuantuneV2 variant, each other method and each k of the table: the images only the
    variant / only the other method gets right and the exact McNemar p-value (`common.mcnemar`),
    where both runs' per-image results are cached. Keyed "variant|method|k"."""
    out = {}
    for variant in VARIANTS:
        if variant not in methods:
            continue
        for other, m in methods.items():
            if other == variant:
                continue
            for k in KS:
                a, b = right_of(methods[variant]["order"], k), right_of(m["order"], k)
                if a is not None and b is not None:
                    out[f"{variant}|{other}|{k}"] = mcnemar(a, b)
    return out


def smallest_k(good, limit: int) -> int | None:
    """Smallest k in 0..limit with good(k), or None.

    Evaluates the k of the table first (0 and KS, which are computed anyway), then
    bisects the gap below the first good one, so a method costs a few extra
    evaluations instead of one per k. Assumes accuracy does not fall as k grows
    past the first good k in the gap (it is a search aid; every reported k was
    itself evaluated and is good)."""
    probes = [0, *[k for k in KS if k <= limit]]
    if limit not in probes:
        probes.append(limit)
    prev = -1
    for k in probes:
        if good(k):
            lo, hi = prev + 1, k  # good(hi) holds; find the first good in [lo, hi]
            while lo < hi:
                mid = (lo + hi) // 2
                if good(mid):
                    hi = mid
                else:
                    lo = mid + 1
            return hi
        prev = k
    return None


def _ranking(method: str, ctx: SensitivityContext) -> dict:
    r = rank_layers(method, ctx)
    return {"order": [rec.name for rec in r.records], "seconds": r.seconds, "inferences": r.inferences,
            "records": [rec.as_dict() for rec in r.records]}


def write_report(rows: list[dict], methods: list[str], stem: str = "accuracy") -> None:
    """`results/<stem>.md` (tables, then the must-show checks) and `results/<stem>.json`."""
    meta = {"cpu": cpu_model(), "date": time.strftime("%Y-%m-%d"), "engine": "rankings: qv2c reference interpreter; top-1: qv2c Numba backend (boundary+fuse)"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    per_image = "; ".join(sorted({f"{100 / row['eval_images']:.3g} points on {row['eval_images']} images"
                                  for row in rows}))
    lines = [f"# Mixed-precision accuracy: QuantuneV2 vs baselines\n\nCPU: {meta['cpu']}, {meta['date']}. "
             "Top-1 in %. `k` = layers kept in fp32. `k<=1pt` = smallest k within 1 point of fp32 "
             f"(searched up to {MAX_K_SEARCH}). Time = wall seconds to produce the ranking; inf = inferences "
             "over the calibration set (calibration itself, common to all, excluded). One image is "
             f"{per_image}: where full int8 loses under a point, "
             "differences between methods of a few tenths are a handful of images. List times were measured "
             "on a 2-core machine shared with other jobs (tests, a CI run) during parts of the sweep, so "
             "compare them within a model and scheme, not across. A table lists the methods run for it; "
             "the date is the report's, the cache (`accuracy_cache/`) keeps every result with its inputs.\n"]
    for row in rows:
        lines.append(f"\n## {row['model']} ({row['layers']} layers, {row['eval_images']} eval images, "
                     f"{row['calibration_images']} calibration images)\n")
        for scheme, e in row["schemes"].items():
            ort = e.get("onnxruntime_int8_top1")
            ort_text = f"{ort:.2f}" if ort is not None else "n/a"
            lines.append(f"\n### {scheme}: fp32 {row['fp32_top1']:.2f}, qv2c int8 {e['int8_top1']:.2f}, "
                         f"onnxruntime int8 {ort_text}\n")
            lines.append("| method | " + " | ".join(f"k={k}" for k in KS) + " | k<=1pt | time s | inf |")
            lines.append("|---|" + "---|" * (len(KS) + 3))
            for method in methods:
                m = e["methods"].get(method)
                if m is None:
                    continue
                cells = [f"{m['top1_by_k'].get(str(k), m['top1_by_k'].get(k, float('nan'))):.2f}" for k in KS]
                sk = m["smallest_k_within_1pt"]
                lines.append(f"| {method} | " + " | ".join(cells) +
                             f" | {sk if sk is not None else '>' + str(MAX_K_SEARCH)} | {m['seconds']:.1f} | {m['inferences']} |")
    lines += must_show(rows)
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default=",".join(ALL_MODELS))
    p.add_argument("--schemes", default=",".join(SCHEMES))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--cifar-eval", type=int, default=2000)
    p.add_argument("--report-only", action="store_true", help="write the report from the cache, computing nothing")
    p.add_argument("--out", default="accuracy", help="report name: results/<out>.md and .json")
    p.add_argument("--backfill", action="store_true",
                   help="rerun cached top-1s that lack per-image results (for paired tests); reports any that differ")
    args = p.parse_args()
    methods = args.methods.split(",")
    rows = []
    for name in args.models.split(","):
        rows.append(experiment(name, args.schemes.split(","), methods, args.cifar_eval, args.report_only,
                               args.backfill))
        write_report(rows, methods, args.out)


if __name__ == "__main__":
    main()
