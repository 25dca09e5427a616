"""QuantuneV2 sensitivity: local metrics from exactly two inferences.

Inference 1 runs the fp32 model, inference 2 the model with every layer int8,
over the same calibration batches. For each layer we measure

- weight SQNR and MSE: fp32 weights vs their dequantized int8 version (no inference);
- activation SQNR and MSE: the layer's output in run 1 vs (dequantized) run 2;
- input SQNR: the layer's input in run 1 vs run 2, so `sqnr_drop = input SQNR -
  output SQNR` is the noise the layer *adds* rather than the noise it inherits.

Each metric is min-max normalised across layers to [0, 1] (1 = most sensitive;
MSEs on a log scale because they span orders of magnitude between layers), and the
score is a weighted sum. Two variants:

- `local` (method "quantunev2", the default): weights 0.25 each on weight SQNR,
  weight MSE, activation SQNR and activation MSE, where inference 2 runs each int8
  layer on the fp32 run's (quantized) input instead of chaining the int8 model, so a
  layer's activation error is the error it adds, not the error it inherits. The
  compute is still one fp32 and one int8 pass over the calibration set.
- `global` (method "quantunev2-global", the paper's formulation): the same four
  metrics and weights, with inference 2 the chained all-int8 model.

Why local is the default (benchmarks/results/accuracy.md): on per-tensor MobileNetV2
(fp32 80.33 %, all-int8 8.58 %) the chained run hides the first depthwise conv, whose
error is drowned by everything downstream: global reaches only 18.1 % with 10 fp32
layers, local puts that conv in its top 2 and is within 1 point of fp32 at k = 3.

Known weakness (benchmarks/results/metric_agreement.md, method_stability.md): both variants
score a layer by the error at its own output, not by what that error does to the network's
output. Leave-one-out, which measures the latter, puts the network's first or last layer among
its first six on 14 of 21 model x scheme pairs; the local score does on 4. A layer's own output
error does not say how much later layers amplify it, or whether a later pool averages it away;
and the MSE terms follow the scale of a layer's activations, not the harm its error does. On 8
of 10 CIFAR-10 model x scheme runs, first-last's first five layers in fp32 reproduce the fp32
logits better than QuantuneV2's five in every calibration draw. The opt-in variant
`quantunev2-referred` (referred.py) weights each layer's error by its measured gain to the
output: it keeps the fp32 logits closer than this score in 27 of 50 CIFAR-10 (run, k) cells
and behind in 16 (9 of those on ResNet50), but is not ahead by top-1 (behind in 18, ahead
in 18), so it is not the default (results/method_stability.md).

All work after the two inferences is O(number of layers).
"""

from __future__ import annotations

import math
import time

import numpy as np

from qv2c.ir import quant_math
from qv2c.ir.builder import Builder
from qv2c.ir.clone import clone_module
from qv2c.ir.core import Module, Value
from qv2c.ir.printer import value_names
from qv2c.passes.layers import layer_macs, layer_name, quantizable_layers
from qv2c.passes.realize_quant import Realized, _layer_weights, realize_quant
from qv2c.passes.sensitivity.metrics import ErrorStats, normalise, weight_error
from qv2c.passes.sensitivity.ranking import LayerRecord, Ranking, SensitivityContext
from qv2c.passes.sensitivity.runs import as_float

#: metric -> (weight, higher_is_worse); MSE metrics are compared as log10
WEIGHTS = {
    "global": {"weight_sqnr_db": (0.25, False), "weight_mse": (0.25, True),
               "act_sqnr_db": (0.25, False), "act_mse": (0.25, True)},
    "local": {"weight_sqnr_db": (0.25, False), "weight_mse": (0.25, True),
              "act_sqnr_db": (0.25, False), "act_mse": (0.25, True)},
}


def all_int8(ctx: SensitivityContext) -> tuple[list, list[str], Realized, dict[str, dict[str, float]]]:
    """What every two-inference variant starts from: the layers, their names, the all-int8
    model and each layer's weight metrics (which need no inference)."""
    layers = quantizable_layers(ctx.module)
    names = [layer_name(op) for op in layers]
    realized = realize_quant(ctx.module, set(names), ctx.ranges, ctx.scheme)
    return layers, names, realized, {n: _weight_metrics(op, ctx) for n, op in zip(names, layers)}


def rank_quantunev2(ctx: SensitivityContext, variant: str = "local") -> Ranking:
    start = time.perf_counter()
    layers, names, realized, metrics = all_int8(ctx)

    # keyed by printed name, as `realized` names the fp32 values: an input called "input:0"
    # prints as "input_0", so its ONNX name would never be found
    fp32_names = value_names(ctx.module)
    wanted_f32 = {realized.layer_outputs[n][0] for n in names} | {realized.layer_inputs[n][0] for n in names}
    f32_taps = [v for v in top_level_values(ctx.module) if fp32_names[id(v)] in wanted_f32]
    if variant == "local":  # both inferences in one module: the fp32 model and each int8 layer on its input
        combined, mapping, int_out = with_isolated_layers(ctx.module, realized, names)
        f32_of = {id(mapping[id(v)]): fp32_names[id(v)] for v in f32_taps}
        int_in: dict[str, Value] = {}  # a layer's int8 input is its fp32 input quantized, computed below
        runs = [(combined, [mapping[id(v)] for v in f32_taps] + list(int_out.values()))]
    else:  # inference 1: fp32; inference 2: the chained all-int8 model
        f32_of = {id(v): fp32_names[id(v)] for v in f32_taps}
        int_out = {n: realized.layer_outputs[n][1] for n in names}
        int_in = {n: realized.layer_inputs[n][1] for n in names}
        runs = [(ctx.module, f32_taps), (realized.module, list({id(v): v for v in (*int_in.values(), *int_out.values())}.values()))]
    out_stats = {n: ErrorStats() for n in names}
    in_stats = {n: ErrorStats() for n in names}
    for inputs, valid in ctx.data.batches(ctx.batch):
        ref: dict[str, np.ndarray] = {}
        got: dict[int, np.ndarray] = {}

        def keep(v, a, valid=valid, ref=ref, got=got):
            if id(v) in f32_of:
                ref[f32_of[id(v)]] = a[:valid]
            else:
                got[id(v)] = as_float(v, a[:valid])

        for module, taps in runs:
            ctx.evaluator.run(module, inputs, taps, keep)
        for n in names:
            in_name, in_val = realized.layer_inputs[n]
            out_name, _ = realized.layer_outputs[n]
            x = ref[in_name]
            out_stats[n].update(ref[out_name], got[id(int_out[n])])
            xq = got[id(int_in[n])] if n in int_in else as_float(
                in_val, quant_math.quantize(x, in_val.type.quant, in_val.type.dtype))
            in_stats[n].update(x, xq)

    for n in names:
        metrics[n].update(
            act_sqnr_db=out_stats[n].sqnr_db,
            act_mse=out_stats[n].mse,
            input_sqnr_db=in_stats[n].sqnr_db,
            sqnr_drop_db=in_stats[n].sqnr_db - out_stats[n].sqnr_db,
        )
    scores = combine(names, metrics, WEIGHTS[variant])
    records = [LayerRecord(n, op.name, layer_macs(op), scores[n], metrics[n]) for n, op in zip(names, layers)]
    records.sort(key=lambda r: -r.score)
    return Ranking("quantunev2" if variant == "local" else f"quantunev2-{variant}", records, 2,
                   time.perf_counter() - start)


def top_level_values(module: Module) -> list[Value]:
    """The inputs and every top-level op result of `module`, in program order."""
    return [*module.inputs, *(r for op in module.ops for r in op.results)]


def with_isolated_layers(module: Module, realized: Realized,
                         names: list[str]) -> tuple[Module, dict[int, Value], dict[str, Value]]:
    """A copy of the fp32 `module` that also runs every int8 layer of `realized` on its own,
    reading its fp32 input quantized: the layer's own quantization error, none inherited from
    earlier layers. Returns the copy, the map from `module`'s values to the copy's
    (`ir.clone.clone_module`) and each layer's int8 output (added to the copy's outputs).
    One run of it is the work of an fp32 and an int8 inference.

        %x = ...                                     # the fp32 model, unchanged
        %x_q = qv.quantize(%x) : u8[..]{..}          # once per distinct layer input
        %y = qv.qconv(%x_q, %w, %b) {act = "relu"}  # the realized layer's attrs and constants
        output %logits, %y, ...
    """
    copy, mapping = clone_module(module)
    printed = value_names(module)
    fp32 = {printed[id(v)]: v for v in top_level_values(module)}
    b = Builder(copy)
    quantized: dict[str, Value] = {}
    outputs: dict[str, Value] = {}
    for n in names:
        in_name, in_val = realized.layer_inputs[n]
        layer = realized.layer_outputs[n][1].owner
        if in_name not in quantized:
            quantized[in_name] = b.create("qv.quantize", [mapping[id(fp32[in_name])]], result_types=[in_val.type]).result
        consts = [copy.add_constant(c.data, c.name, c.type) for c in layer.operands[1:]]
        outputs[n] = b.create(layer.name, [quantized[in_name], *consts], result_types=[layer.result.type],
                              meta=layer.meta, **layer.attrs).result
    copy.outputs += outputs.values()
    return copy, mapping, outputs


def _weight_metrics(op, ctx: SensitivityContext) -> dict[str, float]:
    w, _ = _layer_weights(op)
    wq, params = quant_math.quantize_weights(w, ctx.scheme.weight_granularity, axis=0, scale_kind=ctx.scheme.scale_kind)
    stats = weight_error(w, quant_math.dequantize(wq, params))
    return {"weight_sqnr_db": stats.sqnr_db, "weight_mse": stats.mse}


def combine(names: list[str], metrics: dict[str, dict[str, float]], weights: dict[str, tuple[float, bool]]) -> dict[str, float]:
    """Weighted sum of min-max normalised metrics (MSE metrics on a log10 scale)."""
    scores = dict.fromkeys(names, 0.0)
    for key, (weight, higher_is_worse) in weights.items():
        raw = [metrics[n][key] for n in names]
        if key.endswith("mse"):
            raw = [math.log10(max(x, 1e-30)) for x in raw]
        for n, s in zip(names, normalise(raw, higher_is_worse)):
            scores[n] += weight * s
    return scores
