"""`qv2c-run`: compile a model, show what was decided, and measure it.

    qv2c-run                                             # the CNN and images embedded in qv2c
    qv2c-run cifar10_resnet18v1 --fp32-layers 2          # a model from QV2C_DATA by name
    qv2c-run path/to/model.onnx --calibration calib.npy --precision int8 --dump-ir out/

MODEL is an ONNX path or a name from `qv2c.datasets.MODELS` (which also tells the
command which labelled images to calibrate and evaluate on). For an arbitrary ONNX
file, pass calibration samples as a .npy array [n, ...] (float32, preprocessed).
Prints the precision of every layer, the sensitivity ranking, the latency of one
batch (median of `--runs`; `--profile` adds the slowest kernels), and (for named
models) top-1 of fp32 and of the compiled program on the evaluation images.
`--show-source` prints the generated program (Numba backend), `--show-ir` the IR.
`--save FILE.qv2c` keeps the compiled model (`qv2c.load`); `qv2c-run FILE.qv2c` runs a
saved one without the ONNX file or calibration data (latency on `--calibration` samples,
or on random inputs). `--export-onnx FILE.onnx` writes it as an ONNX QDQ graph.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from qv2c.errors import ConfigError, QV2CError


def build_parser() -> argparse.ArgumentParser:
    from qv2c.api import ANALYSIS_BACKENDS, API_PLACEMENTS, BACKENDS, PRECISIONS
    from qv2c.passes.calibrate import OBSERVERS
    from qv2c.passes.realize_quant import GRANULARITIES, SCALE_KINDS
    from qv2c.passes.sensitivity import METHODS
    from qv2c.runtime.kernels.target import TARGETS

    p = argparse.ArgumentParser(prog="qv2c-run", description="Compile an ONNX CNN to a mixed int8/fp32 program.")
    p.add_argument("model", nargs="?", help="ONNX file, a model name known to qv2c.datasets (e.g. cifar10_resnet18v1), "
                                            "or a .qv2c file written by --save / model.save(); none: compare fp32, int8 "
                                            "and mixed on the CNN and CIFAR-10 images embedded in qv2c (qv2c/default)")
    p.add_argument("--data", help="data root (default: $QV2C_DATA)")
    p.add_argument("--calibration", help=".npy file of preprocessed float32 samples [n, ...] (ONNX-path models)")
    p.add_argument("--calibration-count", type=int, default=64, help="calibration images for named models")
    p.add_argument("--eval-count", type=int, help="evaluation images for named models (default 500; 0: skip), "
                                                  "or of the embedded ones (default all 1000)")
    p.add_argument("--precision", choices=PRECISIONS, default="mixed")
    p.add_argument("--method", choices=sorted(METHODS), default="quantunev2")
    p.add_argument("--fp32-layers", type=int, help="keep the k most sensitive layers in fp32")
    p.add_argument("--max-accuracy-drop", type=float, help="fewest fp32 layers within this many top-1 points")
    p.add_argument("--calibration-method", choices=sorted(OBSERVERS), default="minmax")
    p.add_argument("--equalize", action="store_true",
                   help="cross-layer equalization of conv -> [relu] -> conv pairs before calibration")
    p.add_argument("--weight-granularity", choices=GRANULARITIES, default="per-channel")
    p.add_argument("--scale-kind", choices=SCALE_KINDS, default="float")
    p.add_argument("--placement", choices=API_PLACEMENTS, default="boundary+fuse")
    p.add_argument("--backend", choices=BACKENDS, default="numba")
    p.add_argument("--analysis-backend", choices=ANALYSIS_BACKENDS, default="reference",
                   help="what calibration and the sensitivity runs execute on (numba: the generated code)")
    p.add_argument("--target", choices=sorted(TARGETS),
                   help="instruction set the kernels are generated for (default: $QV2C_TARGET or this CPU's best)")
    p.add_argument("--keep-fp32", nargs="*", default=[], metavar="LAYER")
    p.add_argument("--force-int8", nargs="*", default=[], metavar="LAYER")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--dump-ir", metavar="DIR", help="write the IR after every pass and the final IR here")
    p.add_argument("--show-ir", action="store_true", help="print the final IR")
    p.add_argument("--show-source", action="store_true", help="print the generated program (numba backend)")
    p.add_argument("--runs", type=int, default=20, help="timed runs of one batch (0: skip timing)")
    p.add_argument("--profile", action="store_true", help="per-kernel timings of one batch (numba backend)")
    p.add_argument("--save", metavar="FILE", help="write the compiled model here (a .qv2c file qv2c.load reads)")
    p.add_argument("--export-onnx", metavar="FILE", help="write the compiled model as an ONNX QDQ graph")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except QV2CError as e:
        print(f"qv2c-run: error: {e}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace) -> None:
    import qv2c
    from qv2c.datasets import MODELS, load_eval_set, model_path, spread_indices, top1

    if args.model is None:
        from qv2c.default.compare import compare

        compare(**_default_options(args))
        return
    args.eval_count = 500 if args.eval_count is None else args.eval_count
    if _is_saved_model(args.model):
        _run_saved(args)
        return
    named = args.model in MODELS
    if named:
        info = MODELS[args.model]
        path = str(model_path(args.model, args.data))
        # CIFAR-10: training images spread over all classes (the zip stores them class by class);
        # ImageNet: the last images of the folder, which evaluation (the first ones) never uses
        calib_split = "train" if info.dataset == "cifar10" else None
        calib_idx = (spread_indices(args.model, args.calibration_count, args.data, "train")
                     if info.dataset == "cifar10" else slice(-args.calibration_count, None))
        calibration, _ = load_eval_set(args.model, args.data, indices=calib_idx, split=calib_split)
    else:
        path = args.model
        if args.precision != "fp32" and not args.calibration:
            raise ConfigError("an ONNX path needs --calibration samples.npy (or use a named model; see --help)")
        calibration = _load_npy(args.calibration) if args.calibration else None
    start = time.perf_counter()
    model = qv2c.compile(
        path, calibration, precision=args.precision, method=args.method, fp32_layers=args.fp32_layers,
        calibration_method=args.calibration_method, weight_granularity=args.weight_granularity,
        scale_kind=args.scale_kind, keep_fp32=args.keep_fp32, force_int8=args.force_int8,
        batch_size=args.batch_size, placement=args.placement, backend=args.backend, target=args.target,
        analysis_backend=args.analysis_backend, equalize=args.equalize,
        **_accuracy_target(args, named),
    )
    print(f"compiled {path} in {time.perf_counter() - start:.1f} s ({args.precision}, {args.method})")
    sample = np.repeat(np.asarray(calibration[:1], np.float32), args.batch_size, axis=0) if calibration is not None \
        else None
    _show(args, model, sample)
    if named and args.eval_count:
        x, y = load_eval_set(args.model, args.data, indices=spread_indices(args.model, args.eval_count, args.data))
        reference = qv2c.compile(path, precision="fp32", batch_size=args.batch_size)
        print(f"\ntop-1 on {len(y)} evaluation images: fp32 {top1(reference(x), y, info.label_offset):.2f} %, "
              f"compiled {top1(model(x), y, info.label_offset):.2f} %")


def _show(args: argparse.Namespace, model, sample: np.ndarray | None) -> None:
    """What every run prints and writes: precision, ranking, IR/source, latency, profile, saved files."""
    fp32 = [n for n, p in model.precision.items() if p == "fp32"]
    print(f"{len(model.precision)} layers: {len(model.precision) - len(fp32)} int8, {len(fp32)} fp32 {fp32}")
    if model.sensitivity is not None:
        r = model.sensitivity
        print(f"\nsensitivity ({r.method}, {r.inferences} inferences, {r.seconds:.1f} s), most sensitive first:")
        print(r.table())
    if args.dump_ir:
        Path(args.dump_ir).mkdir(parents=True, exist_ok=True)
        (Path(args.dump_ir) / "final.qvir").write_text(model.ir)
    if args.show_ir:
        print(model.ir)
    if args.show_source:
        if args.backend != "numba":
            raise ConfigError("--show-source needs --backend numba (the reference backend generates no code)")
        print(model.source)
    if sample is not None and args.runs > 0:
        _report_latency(model, sample, args.runs)
    if sample is not None and args.profile:
        _report_profile(model, sample, args.backend)
    if args.save:
        model.save(args.save)
        print(f"\nsaved the compiled model to {args.save} (run it with: qv2c-run {args.save})")
    if args.export_onnx:
        model.export_onnx(args.export_onnx)
        print(f"\nwrote the ONNX QDQ graph to {args.export_onnx}")


def _is_saved_model(model: str) -> bool:
    """A file written by `model.save()`: named *.qv2c, or any zip archive (ONNX files are protobuf, never zips)."""
    path = Path(model)
    if path.suffix == ".qv2c":
        return True
    try:
        with path.open("rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _run_saved(args: argparse.Namespace) -> None:
    import qv2c

    model = qv2c.load(args.model, backend=args.backend)
    print(f"loaded {args.model} (saved by qv2c; no ONNX file or calibration data needed)")
    if args.calibration:
        sample = _load_npy(args.calibration)[: model.batch_size].astype(np.float32)
    else:
        shape = model.module.inputs[0].type.shape
        sample = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    _show(args, model, sample)


def _report_latency(model, x: np.ndarray, runs: int) -> None:
    model.run(x)  # the first run builds the program (and loads the kernels)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.run(x)
        times.append(time.perf_counter() - t)
    from qv2c.runtime.kernels.target import selected_target

    where = f", kernels for {(model.target or selected_target()).label}" if model.backend == "numba" else ""
    print(f"\nlatency of one batch of {len(x)}: median {statistics.median(times) * 1e3:.2f} ms over {runs} runs "
          f"({model.backend} backend{where})")


def _report_profile(model, x: np.ndarray, backend: str, top: int = 10) -> None:
    if backend != "numba":
        raise ConfigError("--profile needs --backend numba")
    _, times = model.executable.run({model.input_names[0]: x}, profile=True)
    total = sum(t.seconds for t in times)
    print(f"\nslowest kernels of one run ({total * 1e3:.2f} ms in {len(times)} kernel calls):")
    for t in sorted(times, key=lambda t: -t.seconds)[:top]:
        print(f"  {t.seconds * 1e3:8.3f} ms {t.seconds / total:6.1%}  {t.kernel.split(':')[1]:<28} {t.label}")


def _default_options(args: argparse.Namespace) -> dict:
    """The options of the no-model comparison (`qv2c.default.compare`) from the command line; a flag
    that only means something for one compiled model is an error rather than silently ignored."""
    from qv2c.default.compare import DEFAULT_FP32_LAYERS

    single = [flag for flag, value in (("--calibration", args.calibration), ("--max-accuracy-drop", args.max_accuracy_drop),
                                       ("--save", args.save), ("--export-onnx", args.export_onnx), ("--dump-ir", args.dump_ir),
                                       ("--show-ir", args.show_ir), ("--show-source", args.show_source),
                                       ("--profile", args.profile)) if value not in (None, False)]
    if single:
        raise ConfigError(f"{', '.join(single)} need a MODEL; without one, qv2c-run compares fp32, int8 and mixed "
                          f"on the embedded CNN")

    return dict(fp32_layers=DEFAULT_FP32_LAYERS if args.fp32_layers is None else args.fp32_layers,
                eval_count=args.eval_count, calibration_count=args.calibration_count, runs=args.runs,
                method=args.method, weight_granularity=args.weight_granularity, scale_kind=args.scale_kind,
                calibration_method=args.calibration_method, analysis_backend=args.analysis_backend, target=args.target)


def _accuracy_target(args: argparse.Namespace, named: bool) -> dict:
    if args.max_accuracy_drop is None:
        return {}
    if not named:
        raise ConfigError("--max-accuracy-drop needs a named model (its labelled images are the validation set)")
    from qv2c.datasets import MODELS, load_eval_set, spread_indices

    info = MODELS[args.model]
    split = "train" if info.dataset == "cifar10" else None
    # CIFAR-10: 300 training images over all classes, one past each calibration-style index
    idx = ([i + 1 for i in spread_indices(args.model, 300, args.data, "train")] if info.dataset == "cifar10"
           else slice(1000, 1200))
    return {"max_accuracy_drop": args.max_accuracy_drop, "validation": load_eval_set(args.model, args.data, indices=idx, split=split),
            "label_offset": info.label_offset}


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read calibration samples from {path}: {e}") from None


if __name__ == "__main__":
    sys.exit(main())
