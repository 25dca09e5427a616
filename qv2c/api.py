"""`qv2c.compile()`: the one call that turns an ONNX model into a runnable program.

    model = qv2c.compile("resnet18.onnx", calibration_images, fp32_layers=3)
    logits = model(images)
    print(model.sensitivity.table())   # why those three layers stay fp32

Steps (each in its own module; this file only wires them together):
1. import the ONNX file (`qv2c.frontend`) and canonicalize it (`qv2c.passes`);
2. calibrate activation ranges on the calibration set (`passes/calibrate.py`);
3. rank layers by sensitivity (`passes/sensitivity/`, QuantuneV2 by default); both run their
   inferences on the evaluator `analysis_backend` names (`analysis_backend.py`: the generated
   code, or the NumPy interpreter);
4. choose the fp32 layers (`passes/assign_precision.py`);
5. rewrite the model into mixed int8/fp32 (`passes/realize_quant.py`) and, with the
   default placement "boundary+fuse", group each conv/gemm with its epilogue (`passes/fuse.py`);
6. wrap it in a `CompiledModel` that runs on the chosen backend: "numba" (generated
   code over the kernels of `qv2c/runtime/`, built on first use) or "reference" (the
   NumPy interpreter).
Analysis runs on a copy of the model imported at a batch size suited to the
calibration set; the returned program is imported at the user's `batch_size`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qv2c.datasets.models import top1
from qv2c.errors import ConfigError, InputError, ShapeError
from qv2c.ir.core import Module
from qv2c.ir.interpreter import interpret
from qv2c.passes.assign_precision import PrecisionRequest, assign_precision
from qv2c.passes.calibrate import Ranges, calibrate
from qv2c.passes.calibration_data import make_calibration_set
from qv2c.passes.canonicalize import CANONICALIZE
from qv2c.passes.evaluator import Evaluator, ReferenceEvaluator
from qv2c.passes.layers import layer_name, quantizable_layers
from qv2c.passes.manager import run_pipeline
from qv2c.passes.observers import OBSERVERS
from qv2c.passes.realize_quant import PLACEMENTS, QuantScheme, realize_quant
from qv2c.passes.sensitivity import METHODS, Ranking, SensitivityContext, rank_layers
from qv2c.runtime.kernels.target import TargetSpec, host_features, runnable

PRECISIONS = ("mixed", "int8", "fp32")
BACKENDS = ("numba", "reference")
#: what calibration and the sensitivity runs execute on (`passes/evaluator.py`, `qv2c/analysis_backend.py`)
ANALYSIS_BACKENDS = ("numba", "reference")
#: "boundary+fuse" is realize-quant's "boundary" placement followed by the `fuse` pass
API_PLACEMENTS = ("boundary+fuse", *PLACEMENTS)


@dataclass
class CompiledModel:
    """A compiled program: call it on inputs; inspect `.ir`, `.precision`, `.sensitivity`."""

    module: Module
    #: layer name -> "int8" or "fp32"
    precision: dict[str, str] = field(default_factory=dict)
    sensitivity: Ranking | None = None
    ranges: Ranges | None = None
    backend: str = "reference"
    #: what the Numba backend's kernels are generated for (None: `QV2C_TARGET` or the host's best)
    target: TargetSpec | None = None
    #: how the int8 layers were quantized (None for a fp32 model)
    scheme: QuantScheme | None = None
    _executable: Any = field(default=None, init=False, repr=False, compare=False)

    def save(self, path) -> None:
        """Write this model to one file that `qv2c.load(path)` reads back (`qv2c/saved.py`)."""
        from qv2c.saved import save

        save(self, path)

    def export_onnx(self, path) -> None:
        """Write this model as a standard ONNX QDQ graph onnxruntime runs (`qv2c/export_onnx.py`)."""
        from qv2c.export_onnx import export_onnx

        export_onnx(self.module, path)

    @property
    def ir(self) -> str:
        return str(self.module)

    @property
    def executable(self):
        """The Numba program (`qv2c.runtime.executable.Executable`, built by `qv2c.backend`) on first use."""
        if self._executable is None:
            from qv2c.backend import build_executable

            self._executable = build_executable(self.module, target=self.target)
        return self._executable

    @property
    def source(self) -> str:
        """The generated Python source the "numba" backend runs (one kernel call per line)."""
        return self.executable.source

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.module.inputs]

    @property
    def batch_size(self) -> int:
        return self.module.inputs[0].type.shape[0]

    def run(self, inputs: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for `inputs` (an array for a one-input model, or a dict).

        Any number of samples is accepted: they run in chunks of the compiled batch
        size (the last chunk padded), and the outputs are concatenated."""
        feeds = {k: np.asarray(a) for k, a in self._as_dict(inputs).items()}
        b = self.batch_size
        ranks = {v.name: v.type.rank for v in self.module.inputs}
        if set(feeds) != set(ranks) or any(a.ndim != ranks[k] for k, a in feeds.items()):
            return self._execute(feeds)  # let the backend report the name/shape error
        counts = sorted({a.shape[0] for a in feeds.values()})
        if len(counts) > 1:
            raise InputError(f"inputs hold different numbers of samples {counts}; give every input the same count")
        n = counts[0]
        if n == 0:
            raise InputError("got 0 samples; pass at least one")  # there would be no chunk to take shapes from
        if n == b:
            return self._execute(feeds)
        chunks: list[dict[str, np.ndarray]] = []
        for start in range(0, n, b):
            idx = np.minimum(np.arange(start, start + b), n - 1)
            chunks.append({k: v[:min(b, n - start)] for k, v in self._execute({k: a[idx] for k, a in feeds.items()}).items()})
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def _execute(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One batch on the chosen backend."""
        if self.backend == "numba":
            return self.executable.run(feeds)
        return interpret(self.module, feeds)

    def __call__(self, inputs):
        """Like `run`, but a one-output model returns the array itself."""
        outs = self.run(inputs)
        return next(iter(outs.values())) if len(outs) == 1 else outs

    def _as_dict(self, inputs) -> dict[str, np.ndarray]:
        if isinstance(inputs, dict):
            return inputs
        if len(self.module.inputs) != 1:
            raise InputError(f"this model has inputs {self.input_names}: pass a dict {{name: array}}")
        return {self.module.inputs[0].name: np.asarray(inputs)}


def load_canonical(model: Any, batch_size: int, dump_dir=None, equalize: bool = False) -> Module:
    """Import `model` at `batch_size` and canonicalize it (fold BN, constants, identities); with `equalize`,
    then cross-layer equalization (`passes/equalize.py`), which leaves the fp32 function as it was."""
    from qv2c.frontend import import_onnx

    module = import_onnx(model, batch_size=batch_size)
    run_pipeline(module, CANONICALIZE + (["equalize", "dce"] if equalize else []), dump_dir=dump_dir)
    return module


def compile(  # noqa: A001 - the public name the project promises
    model: Any,
    calibration: Any = None,
    *,
    precision: str = "mixed",
    method: str = "quantunev2",
    fp32_layers: int | None = None,
    max_accuracy_drop: float | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    label_offset: int = 0,
    calibration_method: str = "minmax",
    weight_granularity: str = "per-channel",
    scale_kind: str = "float",
    keep_fp32: tuple[str, ...] | list[str] = (),
    force_int8: tuple[str, ...] | list[str] = (),
    batch_size: int = 1,
    placement: str = "boundary+fuse",
    backend: str = "numba",
    analysis_backend: str = "reference",
    analysis_batch: int | None = None,
    seed: int = 0,
    target: str | None = None,
    equalize: bool = False,
) -> CompiledModel:
    """Compile an ONNX model (path, bytes or ModelProto) into a `CompiledModel`.

    precision: "fp32" (no quantization), "int8" (every layer int8 except `keep_fp32`)
    or "mixed" (the `fp32_layers` most sensitive layers by `method` stay fp32, or the
    fewest that keep top-1 on `validation=(inputs, labels)` within
    `max_accuracy_drop` points of fp32). `calibration`: input samples (array, list of
    arrays or dicts) used to calibrate ranges and to rank layers.  `target`: the instruction set the
    Numba backend generates kernels for ("generic", "avx2", "avx512", "avx512-vnni"; default
    `QV2C_TARGET` or the best this CPU has; one this CPU lacks still runs, emulated where needed).
    `analysis_backend`: what calibration and the sensitivity inferences run on: "reference" (the
    NumPy interpreter, which defines every op) or "numba" (the generated code, with taps on the
    tensors an analysis reads; fp32 sums differ in rounding from the interpreter's). The default
    stays "reference" until benchmarks/analysis_speed.py shows "numba" faster on every model.
    `equalize`: cross-layer equalization of conv -> [ReLU] -> conv pairs before calibration
    (`passes/equalize.py`: the fp32 function is unchanged, per-channel weight ranges are balanced).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    _check_choice("backend", backend, BACKENDS)
    _check_choice("analysis_backend", analysis_backend, ANALYSIS_BACKENDS)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, not {batch_size!r}")
    scheme = QuantScheme(weight_granularity, scale_kind)
    _check_choice("method", method, METHODS)  # before any work, and even where the option goes unused
    _check_choice("calibration_method", calibration_method, OBSERVERS)
    _check_choice("placement", placement, API_PLACEMENTS)
    kernel_target = runnable(target.lower(), host_features(), "target") if target is not None else None
    request = PrecisionRequest(precision, fp32_layers, max_accuracy_drop, _layer_names(keep_fp32), _layer_names(force_int8))
    runtime = load_canonical(model, batch_size, equalize=equalize)
    layers = [layer_name(op) for op in quantizable_layers(runtime)]
    request.check(layers, validation)  # also for "fp32", so a misspelt keep_fp32 never passes silently
    if precision == "fp32":
        return CompiledModel(_placed(runtime, placement), dict.fromkeys(layers, "fp32"), backend=backend,
                             target=kernel_target)

    probe = make_calibration_set(runtime, calibration)
    batch = analysis_batch or _analysis_batch(probe.count, runtime)
    analysis = runtime
    if batch != batch_size:
        try:
            analysis = load_canonical(model, batch, equalize=equalize)
        except ShapeError:
            if analysis_batch is not None:
                raise
            batch = batch_size  # the graph pins its batch (e.g. Reshape to [1, -1]): analyse at the user's
    # `probe` already holds the samples (the analysis module differs only in batch size); building
    # the set again from `calibration` would find a generator empty the second time
    data = probe
    evaluator = _evaluator(analysis_backend, kernel_target)
    ranges = calibrate(analysis, data, batch, calibration_method, evaluator)
    ranking = None
    if precision == "mixed" and request.needs_ranking:
        ranking = rank_layers(method, SensitivityContext(analysis, data, batch, ranges, scheme, seed, evaluator))

    def build(int8_layers: set[str]) -> CompiledModel:
        mixed = realize_quant(runtime, int8_layers, ranges, scheme, placement.removesuffix("+fuse")).module
        _placed(mixed, placement)
        precision_map = {n: ("int8" if n in int8_layers else "fp32") for n in layers}
        return CompiledModel(mixed, precision_map, ranking, ranges, backend, kernel_target, scheme)

    fp32_model, score = None, None
    if max_accuracy_drop is not None:
        inputs, labels = validation
        fp32_model = CompiledModel(runtime, backend=backend, target=kernel_target)

        def score(model: CompiledModel) -> float:
            return top1(model(inputs), labels, label_offset)
    int8_layers = assign_precision(request, layers, ranking, build, fp32_model, score)
    return build(int8_layers)


def _evaluator(analysis_backend: str, target: TargetSpec | None) -> Evaluator:
    """The evaluator the analyses run on (`analysis_backend` was checked)."""
    if analysis_backend == "reference":
        return ReferenceEvaluator()
    from qv2c.analysis_backend import NumbaEvaluator

    return NumbaEvaluator(target)


def _placed(module: Module, placement: str) -> Module:
    """`module` after the `fuse` pass when `placement` asks for it (in place; returns it)."""
    return run_pipeline(module, ["fuse"]) if placement.endswith("+fuse") else module


def _layer_names(names) -> tuple[str, ...] | str:
    """`names` as a tuple; a bare string is passed on untouched so `PrecisionRequest.check`
    rejects it (`tuple("conv1")` would become five unknown one-letter layer names)."""
    return names if isinstance(names, str) else tuple(names)


def _check_choice(option: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {option} {value!r}; choose one of {sorted(choices)}")


def _analysis_batch(count: int, module: Module) -> int:
    """Batch size for calibration/sensitivity runs through the NumPy interpreter.

    Measured on the reference interpreter: small (CIFAR-sized) inputs run 2-3x faster
    per image at batch 8-32 than at batch 1, while 224x224 inputs are fastest at
    batch 1 (larger batches overflow the caches in im2col)."""
    per_sample = max(v.type.size // max(v.type.shape[0], 1) for v in module.inputs)
    cap = 16 if per_sample <= 4096 else 1
    return max(1, min(count, cap))
