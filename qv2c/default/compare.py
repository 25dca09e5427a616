"""What `qv2c-run` does with no model: compile the embedded CIFAR-10 CNN three ways and compare.

fp32, every layer int8, and QuantuneV2 mixed precision (the `fp32_layers` most sensitive layers
kept fp32) are compiled from `qv2c/default/model.onnx`, calibrated on the embedded training
images and scored on the embedded test images: top-1, how often the top-1 class is the fp32
program's (quantization changes some predictions even where top-1 barely moves), the median
latency of one image, and the bytes of constants each program holds. The sensitivity ranking follows, with the layers kept
fp32 marked. When onnxruntime is installed, its fp32 session and its own int8 model
(`quantize_static`, QDQ, per-channel s8 weights, u8 activations, min-max on the same
calibration images) stand beside them as the peer.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qv2c.default import MODEL, load_sample

#: layers the mixed model keeps fp32 when `qv2c-run` is not given --fp32-layers
DEFAULT_FP32_LAYERS = 2


@dataclass(frozen=True)
class Row:
    """One line of the comparison."""

    name: str
    top1: float
    #: percent of the images whose top-1 class is the one qv2c's fp32 program predicts
    agreement: float
    latency_ms: float
    size_bytes: int


def compare(*, fp32_layers: int = DEFAULT_FP32_LAYERS, eval_count: int | None = None, calibration_count: int | None = None,
            runs: int = 20, method: str = "quantunev2", weight_granularity: str = "per-channel",
            scale_kind: str = "float", calibration_method: str = "minmax", analysis_backend: str = "numba",
            target: str | None = None, threads: int = 1, out=None) -> list[Row]:
    """Compile, evaluate and print the comparison; returns its rows.

    qv2c's kernels and onnxruntime both run on `threads` threads (capped at Numba's), one by default:
    at one image, a layer of a model this small is too little work to share between cores, and on a
    machine whose cores are busy a parallel kernel waits for its second thread to be scheduled."""
    import numba

    threads = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        return _compare(fp32_layers, eval_count, calibration_count, runs, method, weight_granularity, scale_kind,
                        calibration_method, analysis_backend, target, threads, out or sys.stdout)
    finally:
        numba.set_num_threads(previous)


def _compare(fp32_layers, eval_count, calibration_count, runs, method, weight_granularity, scale_kind,
             calibration_method, analysis_backend, target, threads, out) -> list[Row]:
    import qv2c
    from qv2c.datasets import top1

    start = time.perf_counter()
    say = lambda text="": print(text, file=out, flush=True)
    calib, _ = load_sample("calib", calibration_count)
    x, y = load_sample("eval", eval_count)
    scheme = f"{weight_granularity} weights, {scale_kind} scales, {calibration_method} ranges"
    say(f"qv2c-run with no model: the embedded CIFAR-10 CNN ({MODEL.name}, depthwise + pointwise convs, ReLU6; "
        f"trained for qv2c),\n{len(x)} CIFAR-10 test images to score on and {len(calib)} training images to "
        f"calibrate on (qv2c/default/README.md). int8: {scheme}.\n")
    options = dict(weight_granularity=weight_granularity, scale_kind=scale_kind, calibration_method=calibration_method,
                   analysis_backend=analysis_backend, target=target)
    models = {}
    for name, kwargs in (("qv2c fp32", dict(precision="fp32", target=target)),
                         ("qv2c int8", dict(precision="int8", **options)),
                         (f"qv2c mixed, {fp32_layers} fp32", dict(precision="mixed", fp32_layers=fp32_layers,
                                                                  method=method, **options))):
        t = time.perf_counter()
        models[name] = qv2c.compile(str(MODEL), None if kwargs["precision"] == "fp32" else calib, **kwargs)
        models[name](x[:1])  # builds the program: code generation and the kernels' JIT belong to compiling
        say(f"compiled {name} in {time.perf_counter() - t:.1f} s")
    logits = {name: m(x) for name, m in models.items()}
    reference = np.argmax(logits["qv2c fp32"], axis=1)
    agree = lambda z: float(np.mean(np.argmax(z, axis=1) == reference) * 100.0)
    rows = [Row(name, top1(logits[name], y), agree(logits[name]), _latency_ms(lambda m=m: m(x[:1]), runs),
                _constant_bytes(m)) for name, m in models.items()]
    rows += _onnxruntime_rows(calib, x, y, runs, say, agree, threads)
    say()
    say(_table(rows, runs, threads))
    mixed = models[rows[2].name]
    if mixed.sensitivity is not None:
        r = mixed.sensitivity
        say(f"\nper-layer sensitivity ({r.method}, {r.inferences} inferences, {r.seconds:.1f} s), most sensitive "
            f"first; '*' marks the {fp32_layers} kept fp32:")
        say(_marked(r.table(), [rec.name for rec in r.records], mixed.precision))
    say(f"\ndone in {time.perf_counter() - start:.1f} s. Your own model: qv2c-run model.onnx --calibration "
        f"samples.npy (see --help)")
    return rows


def _latency_ms(run: Callable[[], object], runs: int) -> float:
    """Median milliseconds of `runs` calls after two warm-up calls (nan when `runs` is 0)."""
    if runs < 1:
        return float("nan")
    run(), run()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def _constant_bytes(model) -> int:
    """Bytes of the constants (weights, biases, quantization parameters) the compiled program reads."""
    return sum(c.data.nbytes for c in model.module.constants if c.uses)


def _onnxruntime_rows(calib: np.ndarray, x: np.ndarray, y: np.ndarray, runs: int, say, agree,
                      threads: int) -> list[Row]:
    """onnxruntime fp32 and its own per-channel QDQ int8 model, or nothing when it is not installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        say("(onnxruntime is not installed: `pip install onnxruntime` adds it to the comparison)")
        return []
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from qv2c.datasets import top1

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        int8_path = os.path.join(tmp, "int8.onnx")
        t = time.perf_counter()
        root = logging.getLogger()  # the quantizer warns on the root logger ("consider pre-processing")
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_static(str(MODEL), int8_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        say(f"quantized with onnxruntime in {time.perf_counter() - t:.1f} s")
        for name, path in (("onnxruntime fp32", str(MODEL)), ("onnxruntime int8 (QDQ)", int8_path)):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.log_severity_level = 3  # errors only
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            run = lambda i, s=session: s.run(None, {"input": x[i:i + 1]})[0]
            logits = np.concatenate([run(i) for i in range(len(x))])
            size = sum(onnx.numpy_helper.to_array(t).nbytes for t in onnx.load(path).graph.initializer)
            rows.append(Row(name, top1(logits, y), agree(logits), _latency_ms(lambda run=run: run(0), runs), size))
    return rows


def _table(rows: list[Row], runs: int, threads: int) -> str:
    fp32 = rows[0].top1
    head = ("", "top-1", "vs fp32", "same class as fp32", f"latency, 1 image, {threads} thread{'s' * (threads > 1)} (median of {runs})", "weights")
    body = [(r.name, f"{r.top1:.2f} %", f"{r.top1 - fp32:+.2f}", f"{r.agreement:.1f} %", f"{r.latency_ms:.3f} ms",
             f"{r.size_bytes / 1e3:.1f} kB") for r in rows]
    widths = [max(len(row[c]) for row in (head, *body)) for c in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths)))
                     for row in (head, *body))


def _marked(table: str, names: list[str], precision: dict[str, str]) -> str:
    """`table` (a header line, then one line per layer in `names` order) with a first column that
    marks the layers kept fp32."""
    head, *lines = table.splitlines()
    return "\n".join([f"  {head}", *(f"{'*' if precision.get(n) == 'fp32' else ' '} {line}"
                                     for n, line in zip(names, lines))])
