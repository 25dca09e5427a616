"""QuantuneV2 with output-referred noise: the error each layer's int8 version adds, where it lands.

The paper's two inferences: inference 1 runs the fp32 model, inference 2 the all-int8
model, over the same calibration batches. From them, for each layer:

1. *The error that goes away if this layer alone returns to fp32.* Not all of the error
   its int8 output shows: its input is still rounded by the int8 layer before it, and its
   output is still rounded for the int8 layer after it. What goes away is its weight
   rounding, plus its input rounding when its producer is fp32 (the network input) and its
   output rounding when no int8 layer reads its output on the same grid (a classifier, a
   residual branch's last conv before the add, a last conv before global average pooling). Rounding with step
   `s` adds noise of variance `s^2 / 12` per element; the weight rounding `dW` of output
   channel `o` adds `sum_i dW[o, i]^2 * P[i]` per output element, with `P[i]` the mean
   square of input channel `i` in inference 1 (its expectation over independent rounding
   errors). A fused ReLU passes the fraction of elements it lets through in inference 1.
   No tensor is needed beyond what the two inferences record.
2. *How much of it reaches the output.* The noise gain from the layer's output to the
   network output, estimated from inference 2 (`noise_gain.py`, with how it was validated
   and where it is off).

`referred_sqnr_db` is the output's signal energy over (removable error x gain): the output
SQNR the all-int8 model would have if this layer's removable error were its only one.
The score is the paper's combination with it in place of the local activation SQNR and
MSE (they measure the error where it happens, this where it lands): weight SQNR 0.25,
weight MSE 0.25, output-referred SQNR 0.5.

Status: an opt-in variant (`method="quantunev2-referred"`), not the default. It was built to
fix the local score's known weakness, that it underrates the first and last layers. On the
21 model x scheme pairs it puts the first or last layer among its first six on 18 (local: 4),
and its order agrees better with leave-one-out's (Spearman's rho +0.26 at the median, local
+0.10; results/metric_agreement.md). Its top-1 in accuracy.py is no better than the local
score's (within 0.3 of leave-one-out on 14 of 19 pairs, local 16); over calibration draws it
keeps the fp32 logits closer than the local score more often than not, but not its top-1
(results/method_stability.md).
"""

from __future__ import annotations

import time

import numpy as np

from qv2c.ir import quant_math
from qv2c.ir.printer import value_names
from qv2c.passes.layers import layer_macs
from qv2c.passes.realize_quant import _INT_PASSTHROUGH, _layer_weights
from qv2c.passes.sensitivity.metrics import sqnr_db
from qv2c.passes.sensitivity.noise_gain import ChannelStats, PassFractions, by_channel, output_noise_gains
from qv2c.passes.sensitivity.quantunev2 import all_int8, combine, top_level_values
from qv2c.passes.sensitivity.ranking import LayerRecord, Ranking, SensitivityContext
from qv2c.passes.sensitivity.runs import as_float

WEIGHTS = {"weight_sqnr_db": (0.25, False), "weight_mse": (0.25, True), "referred_sqnr_db": (0.5, False)}


def rank_referred(ctx: SensitivityContext) -> Ranking:
    start = time.perf_counter()
    layers, names, realized, metrics = all_int8(ctx)
    fp32_names = value_names(ctx.module)

    fractions = PassFractions(ctx.module)
    input_power = {n: ChannelStats() for n in names}
    noise_energy: dict[int, float] = {}
    output_energy, samples = 0.0, 0
    f32_taps = top_level_values(ctx.module)
    int_taps = [v for v in top_level_values(realized.module) if id(v) in realized.sources]
    for inputs, valid in ctx.data.batches(ctx.batch):
        ref: dict[str, np.ndarray] = {}

        def keep(v, a, valid=valid, ref=ref):
            fractions.observe(v, a[:valid])
            ref[fp32_names[id(v)]] = a[:valid]

        def compare(v, a, valid=valid, ref=ref):
            source = realized.sources[id(v)]
            if source in ref:
                err = as_float(v, a[:valid]).astype(np.float64) - ref[source]
                noise_energy[id(v)] = noise_energy.get(id(v), 0.0) + float(np.vdot(err, err))

        ctx.evaluator.run(ctx.module, inputs, f32_taps, keep)  # inference 1: fp32
        output_energy += sum(float(np.vdot(ref[fp32_names[id(v)]], ref[fp32_names[id(v)]])) for v in ctx.module.outputs)
        for n in names:
            x = by_channel(ref[realized.layer_inputs[n][0]].astype(np.float64))
            input_power[n].add(np.einsum("ij,ij->i", x, x), x.shape[1])
        ctx.evaluator.run(realized.module, inputs, int_taps, compare)  # inference 2: all int8
        samples += valid

    noise = {k: e / samples for k, e in noise_energy.items()}
    passing = {n: _pass_fraction(op, realized.layer_outputs[n][1], fractions) for n, op in zip(names, layers)}
    weight_noise = {n: _weight_noise(op, ctx, input_power[n].mean, passing[n]) for n, op in zip(names, layers)}
    gains = output_noise_gains(realized.module, noise)

    signal = output_energy / samples
    for n, op in zip(names, layers):
        removable = weight_noise[n] + _boundary_rounding(op, realized, n, passing[n])
        out = realized.layer_outputs[n][1]
        metrics[n].update(referred_sqnr_db=sqnr_db(signal, removable * gains.get(id(out), 0.0)),
                          removable_noise=removable, output_gain=gains.get(id(out), 0.0), int8_noise=noise.get(id(out), 0.0))
    scores = combine(names, metrics, WEIGHTS)
    records = [LayerRecord(n, op.name, layer_macs(op), scores[n], metrics[n]) for n, op in zip(names, layers)]
    records.sort(key=lambda r: -r.score)
    return Ranking("quantunev2-referred", records, 2, time.perf_counter() - start)


def _pass_fraction(op, int_out, fractions: PassFractions) -> np.ndarray:
    """Per output channel, the share of the layer's noise its fused activation lets through."""
    channels = op.result.type.shape[1]
    if int_out.owner.attrs.get("act", "none") == "none":
        return np.ones(channels)
    return fractions.fraction(op.result, channels)


def _elements_per_channel(v) -> int:
    return int(np.prod(v.type.shape[2:])) if len(v.type.shape) > 2 else 1


def _rounding_noise(v, passing: np.ndarray) -> float:
    """Noise energy per sample of rounding `v` to its grid: variance scale^2 / 12 per element,
    on the `passing` share of each channel (an activation zeroes the rest exactly)."""
    scale = float(v.type.quant.scale[0])
    return scale * scale / 12.0 * _elements_per_channel(v) * float(passing.sum())


def _weight_noise(op, ctx: SensitivityContext, power: np.ndarray, passing: np.ndarray) -> float:
    """Expected noise energy per sample that rounding the layer's weights adds at its output."""
    w, _ = _layer_weights(op)
    wq, params = quant_math.quantize_weights(w, ctx.scheme.weight_granularity, axis=0, scale_kind=ctx.scheme.scale_kind)
    dw = quant_math.dequantize(wq, params).astype(np.float64) - w
    per_channel = _through_weights(dw, power, int(op.attrs.get("group", 1)))
    return _elements_per_channel(op.result) * float(np.dot(per_channel, passing))


def _through_weights(w: np.ndarray, power: np.ndarray, group: int) -> np.ndarray:
    """Per output channel, sum_i w[o, i, ...]^2 * power[i] over the input channels of o's group."""
    w2 = (w.astype(np.float64) ** 2).reshape(w.shape[0], w.shape[1], -1).sum(axis=2)  # [M, C/group]
    m, cg = w2.shape
    per_group = power.reshape(group, cg)
    return np.einsum("gmc,gc->gm", w2.reshape(group, m // group, cg), per_group).reshape(m)


def _boundary_rounding(op, realized, name: str, passing: np.ndarray) -> float:
    """Rounding that goes away with the layer: its input's, when the int8 model quantizes an fp32
    value for it (the network input), and its output's, when no int8 layer reads it."""
    _, xq = realized.layer_inputs[name]
    _, out = realized.layer_outputs[name]
    total = 0.0
    if xq.owner is not None and xq.owner.name == "qv.quantize":
        scale = float(xq.type.quant.scale[0])
        w, _ = _layer_weights(op)
        flat = np.full(op.operands[0].type.shape[1], scale * scale / 12.0)
        total += _elements_per_channel(op.result) * float(np.dot(_through_weights(w, flat, int(op.attrs.get("group", 1))),
                                                                 passing))
    if not _reaches_int8_layer(out):
        total += _rounding_noise(out, passing)
    return total


#: integer ops that keep their input's grid: a value passed through them is still rounded on
#: that grid when an int8 layer reads it, whether or not its producer is int8 (a pad that reads an
#: int8 value runs on its codes: `realize_quant._int_pad`)
SAME_GRID = (*_INT_PASSTHROUGH, "qv.qclip", "qv.concat", "qv.pad")


def _reaches_int8_layer(value) -> bool:
    """Whether an int8 layer reads `value` on its own grid: directly, or through ops that keep
    the grid (max-pool, reshape, ReLU, concat of unified ranges). Only then does its rounding
    stay when the layer producing it returns to fp32. A dequantize hands it to fp32; an add,
    an average pool or a requantize rounds onto a grid of its own, and with the producer in
    fp32 that op runs fp32 and only its own rounding stays (the next int8 layer quantizes its
    output). Examples of rounding that goes away: a classifier's, a residual branch's last
    conv before the add, a last conv before global average pooling."""
    pending, seen = [value], set()
    while pending:
        v = pending.pop()
        for user in v.users:
            if user.name in ("qv.qconv", "qv.qgemm"):
                return True
            if user.name in SAME_GRID and id(user) not in seen:
                seen.add(id(user))
                pending.extend(user.results)
    return False
