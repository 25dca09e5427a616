"""Inference helpers shared by the sensitivity methods.

Each function here is one inference over the calibration set (batch by batch, on
`ctx.evaluator`, holding only one batch of tensors at a time).
"""

from __future__ import annotations

import numpy as np

from qv2c.ir import quant_math
from qv2c.ir.core import Module
from qv2c.passes.evaluator import outputs_of
from qv2c.passes.realize_quant import realize_quant
from qv2c.passes.sensitivity.metrics import ErrorStats
from qv2c.passes.sensitivity.ranking import SensitivityContext


def as_float(value, array: np.ndarray) -> np.ndarray:
    """An integer tensor dequantized to what it represents; fp32 tensors unchanged."""
    if value.type.quant is None or value.type.dtype == "f32":
        return array
    return quant_math.dequantize(array, value.type.quant)


def reference_outputs(ctx: SensitivityContext) -> list[list[np.ndarray]]:
    """fp32 network outputs of every calibration batch (one inference)."""
    outs = []
    for inputs, valid in ctx.data.batches(ctx.batch):
        outs.append([a[:valid] for a in outputs_of(ctx.evaluator, ctx.module, inputs)])
    return outs


def output_error(ctx: SensitivityContext, int8_layers: set[str], reference: list[list[np.ndarray]]) -> ErrorStats:
    """Error of the network outputs when exactly `int8_layers` run int8 (one inference)."""
    mixed: Module = realize_quant(ctx.module, int8_layers, ctx.ranges, ctx.scheme).module
    stats = ErrorStats()
    for (inputs, valid), ref in zip(ctx.data.batches(ctx.batch), reference):
        for a, r in zip(outputs_of(ctx.evaluator, mixed, inputs), ref):
            stats.update(r, a[:valid])
    return stats
