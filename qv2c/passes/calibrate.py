"""Calibration (an analysis): the value range of every fp32 activation.

Runs the fp32 module over the calibration set on an evaluator (evaluator.py: the
reference interpreter unless the driver hands in a faster one), feeding each activation
to an observer (`minmax`, `percentile`, `entropy`; see
observers.py), and returns `{printed value name: (lo, hi)}`. Keys are printed names,
not Value objects, so ranges computed on an analysis module (imported with a large
batch) apply to the same model imported at another batch size.
"""

from __future__ import annotations

from qv2c.errors import ConfigError
from qv2c.ir.core import Module
from qv2c.ir.printer import value_names
from qv2c.passes.calibration_data import CalibrationSet
from qv2c.passes.evaluator import Evaluator, ReferenceEvaluator
from qv2c.passes.observers import OBSERVERS

Ranges = dict[str, tuple[float, float]]


def calibrate(module: Module, data: CalibrationSet, batch: int, method: str = "minmax",
              evaluator: Evaluator | None = None) -> Ranges:
    """Observed range of every f32 input and op result of `module` over `data`."""
    evaluator = evaluator or ReferenceEvaluator()
    if method not in OBSERVERS:
        raise ConfigError(f"unknown calibration_method {method!r}; choose one of {sorted(OBSERVERS)}")
    names = value_names(module)
    taps = [*module.inputs, *(r for op in module.ops for r in op.results if r.type.dtype == "f32")]
    observers = {id(v): OBSERVERS[method]() for v in taps}
    for inputs, valid in data.batches(batch):

        def observe(value, array, valid=valid):
            observers[id(value)].update(array[:valid] if array.ndim and array.shape[0] == batch else array)

        evaluator.run(module, inputs, taps, observe)
    return {names[k]: obs.range() for k, obs in observers.items()}
