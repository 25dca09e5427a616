"""What an analysis runs a module on: the `Evaluator` protocol and its reference implementation.

Calibration and the sensitivity methods run whole modules over the calibration set and look
at some of the tensors each run produces (every fp32 activation, or each layer's input and
output). They do that through an evaluator handed to them, so that the driver can run them
on generated code (`qv2c.analysis_backend.NumbaEvaluator`) while the passes import no backend
(DESIGN.md). The NumPy reference interpreter stays the default and the definition:

    evaluator.run(module, inputs, taps, observe)   # observe(value, array) once per tapped value

`taps` are values of `module`: inputs, op results (outputs included); never constants or values
inside a fused body. `observe` sees each tapped value's array of the whole batch (padding rows
included), once per run, in no promised order; it may keep the array but must not modify it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from qv2c.ir.core import Module, Value
from qv2c.ir.interpreter import evaluate

Observe = Callable[[Value, np.ndarray], None]


class Evaluator(Protocol):
    """Runs a module on one batch and shows the caller the tensors it asked for."""

    name: str

    def run(self, module: Module, inputs: dict[str, np.ndarray], taps: Sequence[Value], observe: Observe) -> None:
        ...


class ReferenceEvaluator:
    """The NumPy reference interpreter, streaming: each tapped value is observed as it is computed
    and dropped after its last use, so a run holds only the live tensors."""

    name = "reference"

    def run(self, module: Module, inputs: dict[str, np.ndarray], taps: Sequence[Value], observe: Observe) -> None:
        wanted = {id(v) for v in taps}
        for v in module.inputs:
            if id(v) in wanted:
                observe(v, inputs[v.name])

        def tap(v: Value, a: np.ndarray) -> None:
            if id(v) in wanted:
                observe(v, a)

        evaluate(module, inputs, observe=tap, free_dead=True)


def outputs_of(evaluator: Evaluator, module: Module, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The module's outputs on one batch (in `module.outputs` order)."""
    got: dict[int, np.ndarray] = {}

    def keep(v: Value, a: np.ndarray) -> None:
        got[id(v)] = a

    evaluator.run(module, inputs, module.outputs, keep)
    return [got[id(v)] for v in module.outputs]
