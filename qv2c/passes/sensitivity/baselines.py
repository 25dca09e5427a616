"""The sensitivity methods QuantuneV2 is compared against, behind the same interface.

- `leave-one-out`: for each layer, run the all-int8 model with only that layer in
  fp32 and measure the network-output SQNR; the layer whose return to fp32 helps
  most is the most sensitive (N + 1 inferences: one fp32 reference, N mixed).
- `output-sqnr`: for each layer, quantize only that layer and measure the
  network-output SQNR (TensorRT-style layer-wise analysis; N + 1 inferences).
- `weight-sqnr`: weight SQNR alone (no inference).
- `first-last`: the first and last layers, then working inwards from both ends
  (Quantune v1 / TVM's default of keeping the first conv and last FC in fp32).
- `random`: a seeded random order.
"""

from __future__ import annotations

import random as _random
import time

from qv2c.passes.layers import layer_macs, layer_name, quantizable_layers
from qv2c.passes.sensitivity.metrics import normalise
from qv2c.passes.sensitivity.quantunev2 import _weight_metrics
from qv2c.passes.sensitivity.ranking import LayerRecord, Ranking, SensitivityContext
from qv2c.passes.sensitivity.runs import output_error, reference_outputs


def _ranking(method: str, ctx: SensitivityContext, scores: dict[str, float], metrics: dict[str, dict],
             inferences: int, start: float) -> Ranking:
    layers = quantizable_layers(ctx.module)
    records = [LayerRecord(layer_name(op), op.name, layer_macs(op), scores[layer_name(op)], metrics.get(layer_name(op), {}))
               for op in layers]
    records.sort(key=lambda r: -r.score)
    return Ranking(method, records, inferences, time.perf_counter() - start)


def rank_leave_one_out(ctx: SensitivityContext) -> Ranking:
    start = time.perf_counter()
    names = [layer_name(op) for op in quantizable_layers(ctx.module)]
    ref = reference_outputs(ctx)
    sqnr = {n: output_error(ctx, set(names) - {n}, ref).sqnr_db for n in names}
    metrics = {n: {"output_sqnr_db_without_layer": s} for n, s in sqnr.items()}
    return _ranking("leave-one-out", ctx, sqnr, metrics, len(names) + 1, start)


def rank_output_sqnr(ctx: SensitivityContext) -> Ranking:
    start = time.perf_counter()
    names = [layer_name(op) for op in quantizable_layers(ctx.module)]
    ref = reference_outputs(ctx)
    sqnr = {n: output_error(ctx, {n}, ref).sqnr_db for n in names}
    metrics = {n: {"output_sqnr_db_only_layer": s} for n, s in sqnr.items()}
    return _ranking("output-sqnr", ctx, {n: -s for n, s in sqnr.items()}, metrics, len(names) + 1, start)


def rank_weight_sqnr(ctx: SensitivityContext) -> Ranking:
    start = time.perf_counter()
    layers = quantizable_layers(ctx.module)
    metrics = {layer_name(op): _weight_metrics(op, ctx) for op in layers}
    names = list(metrics)
    scores = dict(zip(names, normalise([metrics[n]["weight_sqnr_db"] for n in names], higher_is_worse=False)))
    return _ranking("weight-sqnr", ctx, scores, metrics, 0, start)


def rank_first_last(ctx: SensitivityContext) -> Ranking:
    start = time.perf_counter()
    names = [layer_name(op) for op in quantizable_layers(ctx.module)]
    order, lo, hi = [], 0, len(names) - 1
    while lo <= hi:
        order.append(names[lo])
        if hi != lo:
            order.append(names[hi])
        lo, hi = lo + 1, hi - 1
    scores = {n: float(len(order) - i) for i, n in enumerate(order)}
    return _ranking("first-last", ctx, scores, {}, 0, start)


def rank_random(ctx: SensitivityContext) -> Ranking:
    start = time.perf_counter()
    names = [layer_name(op) for op in quantizable_layers(ctx.module)]
    order = names[:]
    _random.Random(ctx.seed).shuffle(order)
    scores = {n: float(len(order) - i) for i, n in enumerate(order)}
    return _ranking("random", ctx, scores, {}, 0, start)


# keep layer_macs importable from here for reports
__all__ = ["rank_leave_one_out", "rank_output_sqnr", "rank_weight_sqnr", "rank_first_last", "rank_random", "layer_macs"]
