"""Helpers the benchmark scripts share: the machine's CPU model, the evaluation data of a
model, and onnxruntime (the peer) sessions, quantized with `quantize_static` (QDQ)."""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from qv2c.datasets import load_eval_set, model_info, model_path

RESULTS = Path(__file__).parent / "results"


def interleaved_medians(runs: dict, rounds: int, untimed: int = 2, timed: int = 10) -> dict[str, float]:
    """Median milliseconds of each engine's `runs[name]()` over `rounds` interleaved rounds (in each, every
    engine after a short pause: `untimed` warm-up calls, then `timed` timed ones)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            time.sleep(0.05)
            times[name] += timed_runs(run, untimed, timed)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def timed_runs(run, untimed: int = 2, timed: int = 10) -> list[float]:
    """Seconds of each of `timed` calls of `run()`, after `untimed` calls that warm it up."""
    for _ in range(untimed):
        run()
    out = []
    for _ in range(timed):
        t = time.perf_counter()
        run()
        out.append(time.perf_counter() - t)
    return out


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (benchmarks quote it with every figure)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def cpu_flags() -> str:
    """The vector-ISA flags of the CPU (what decides qv2c's target), e.g. "avx2 fma avx512f avx512_vnni",
    and the target qv2c generates for on it (`QV2C_TARGET` or the host's best)."""
    from qv2c.runtime.kernels.target import selected_target

    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni")
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return " ".join(f for f in wanted if f in have) + f"; qv2c target {selected_target().label}"
    return f"unknown; qv2c target {selected_target().label}"


def calibration_images(name: str, count: int = 100) -> np.ndarray:
    """The calibration set of the experiments: ImageNet models take the last images of
    imagenet_val_1300 (1300 - count .. 1299), CIFAR-10 models every (50000 // count)-th
    training image."""
    if model_info(name).dataset == "imagenet":
        return load_eval_set(name, indices=slice(1300 - count, 1300))[0]
    return load_eval_set(name, split="train", indices=range(0, 50000, 50000 // count))[0]


def onnxruntime_model_path(name: str) -> Path:
    """The ONNX file onnxruntime quantizes for model `name`: the BN-free `_folded` export for the
    CIFAR-10 zoo (the same fp32 function; onnxruntime's quantizer does not fold BatchNormalization
    itself), the model itself otherwise."""
    return model_path(f"{name}_folded") if model_info(name).dataset == "cifar10" else model_path(name)


def with_node_labels(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy an ONNX model, naming every unnamed node `<op_type>#<index>`: the label qv2c gives
    it (`frontend.context.Node.label`), so a qv2c layer name can go in `nodes_to_exclude`."""
    model = onnx.load(str(src))
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}#{i}"
    onnx.save(model, str(dst))


def onnxruntime_quantized(src: str | os.PathLike, dst: str | os.PathLike, calib: np.ndarray, *,
                          per_channel: bool = True, exclude: tuple[str, ...] = (), input_name: str = "input") -> None:
    """`quantize_static` (QDQ, u8 activations, s8 weights, min-max calibration over `calib` one image
    at a time) of `src` into `dst`, with the nodes named in `exclude` left fp32."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{input_name: calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        named = os.path.join(tmp, "named.onnx")
        with_node_labels(src, named)
        quantize_static(named, str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(exclude))


def onnxruntime_session(path: str | os.PathLike | bytes, threads: int, config: dict[str, str] | None = None,
                        optimized: str | os.PathLike | None = None):
    """An onnxruntime CPU session with `threads` intra-op threads (all graph optimisations on) on
    an ONNX file or serialized model, with the session config entries `config` (e.g.
    {"session.disable_quant_qdq": "1"}: keep QDQ graphs unfused instead of fused integer kernels);
    `optimized`: also write the graph onnxruntime runs after its optimizations there."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: quantized models make it warn about every unused initializer
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def mcnemar(a_right: np.ndarray, b_right: np.ndarray) -> dict:
    """Images only a gets right, only b gets right, and the exact two-sided McNemar p-value (a
    binomial test of that split against 1/2): how likely a gap between two classifiers evaluated on
    the same images is under chance alone."""
    a_only, b_only = int(np.sum(a_right & ~b_right)), int(np.sum(b_right & ~a_right))
    n = a_only + b_only
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1)) / 2 ** n)
    return {"a_only": a_only, "b_only": b_only, "p": p}
