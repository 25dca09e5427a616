"""Tests of the output-referred QuantuneV2 variant (sensitivity/referred.py, noise_gain.py).

It must cost the paper's two inferences per batch (fp32, then the all-int8 model), report
its metrics, put a layer destroyed by per-tensor int8 first, and pass the noise gains
exactly as its docstring states: 1 at the outputs, the measured noise ratio of each op
multiplied back along the graph, summed where a value feeds two ops.
"""

from __future__ import annotations

import numpy as np
import pytest
from quant_models import LAYERS
from test_sensitivity import context

import qv2c.passes.sensitivity.referred as referred
from qv2c.ir import Builder, Module, TensorType, Value
from qv2c.passes.realize_quant import realize_quant
from qv2c.passes.sensitivity import rank_layers
from qv2c.passes.sensitivity.noise_gain import output_noise_gains

METRICS = {"weight_sqnr_db", "weight_mse", "referred_sqnr_db", "removable_noise", "output_gain", "int8_noise"}


def test_referred_runs_the_fp32_and_the_all_int8_model_once_per_batch(count_evaluations):
    calls = count_evaluations.modules
    ctx = context(count=5, batch=2)  # 3 batches, the last one padded
    ctx.evaluator = count_evaluations
    ranking = rank_layers("quantunev2-referred", ctx)
    assert ranking.inferences == 2
    assert len(calls) == 6
    assert [m is ctx.module for m in calls] == [True, False] * 3
    assert len({id(m) for m in calls if m is not ctx.module}) == 1  # one int8 module, built once


def test_referred_records_its_metrics_and_orders_by_score():
    ranking = rank_layers("quantunev2-referred", context())
    assert sorted(r.name for r in ranking.records) == sorted(LAYERS)
    for r in ranking.records:
        assert set(r.metrics) == METRICS, r.name
        assert r.metrics["removable_noise"] > 0 and r.metrics["output_gain"] > 0
    scores = [r.score for r in ranking.records]
    assert scores == sorted(scores, reverse=True)
    # the classifier's int8 output is only dequantized into the module output: gain exactly 1
    fc = next(r for r in ranking.records if r.name == "fc")
    assert fc.metrics["output_gain"] == 1.0


def test_referred_metrics_do_not_depend_on_the_batch():
    by_two = {r.name: r.metrics for r in rank_layers("quantunev2-referred", context(count=3, batch=2)).records}
    at_once = {r.name: r.metrics for r in rank_layers("quantunev2-referred", context(count=3, batch=3)).records}
    for name in LAYERS:
        for key in METRICS:
            assert by_two[name][key] == pytest.approx(at_once[name][key], rel=1e-6, abs=1e-12), (name, key)


def test_layer_hard_to_quantize_per_tensor_ranks_first():
    assert rank_layers("quantunev2-referred", context(skewed="conv3", granularity="per-tensor")).top(1) == ["conv3"]
    assert rank_layers("quantunev2-referred", context(granularity="per-tensor")).top(1) != ["conv3"]


def test_removable_noise_counts_output_rounding_only_where_it_goes_away(monkeypatch):
    """fc's and conv3's outputs reach no int8 layer on their own grid (fc: the module output;
    conv3: a global average pool, which rounds on its own grid), so returning either to fp32
    removes its output rounding too; conv1's and conv2's outputs are read by the next conv, so
    only their weight rounding counts. Forcing "rounding stays" must lower exactly the first
    two, by exactly their rounding noise."""
    ctx = context()
    realized = realize_quant(ctx.module, set(LAYERS), ctx.ranges, ctx.scheme)
    counted = {r.name: r.metrics["removable_noise"] for r in rank_layers("quantunev2-referred", ctx).records}
    monkeypatch.setattr(referred, "_reaches_int8_layer", lambda value: True)
    without = {r.name: r.metrics["removable_noise"] for r in rank_layers("quantunev2-referred", ctx).records}
    for name in ("conv1", "conv2"):
        assert counted[name] == without[name]
    fc_out = realized.layer_outputs["fc"][1]
    assert counted["fc"] - without["fc"] == pytest.approx(float(fc_out.type.quant.scale[0]) ** 2 / 12 * 10)
    assert counted["conv3"] > without["conv3"] > 0


def _gain_module():
    """x -> a = relu(x) -> s = add(a, x) -> y = relu(s): x feeds two ops."""
    m = Module("gains")
    x = m.add_input(Value(TensorType((1, 2, 1, 1), "f32"), "x"))
    b = Builder(m)
    a = b.op("qv.relu", [x])
    s = b.op("qv.add", [a, x])
    y = b.op("qv.relu", [s])
    m.outputs = [y]
    return m, x, a, s, y


def test_noise_gains_multiply_measured_ratios_back_from_the_output():
    m, x, a, s, y = _gain_module()
    noise = {id(x): 2.0, id(a): 1.0, id(s): 4.0, id(y): 3.0}
    gains = output_noise_gains(m, noise)
    assert gains[id(y)] == 1.0
    assert gains[id(s)] == pytest.approx(3.0 / 4.0)
    # the add passes 4 of the 1 + 2 it receives, to both operands alike
    assert gains[id(a)] == pytest.approx(3.0 / 4.0 * 4.0 / 3.0)
    # x reaches the output through the add directly and through relu -> add: the gains add
    assert gains[id(x)] == pytest.approx(gains[id(a)] + (1.0 / 2.0) * gains[id(a)])


def test_noiseless_values_get_no_gain():
    m, x, a, s, y = _gain_module()
    gains = output_noise_gains(m, {id(s): 1.0, id(y): 1.0})
    assert id(a) not in gains and id(x) not in gains
    assert np.isfinite(gains[id(s)])


def test_output_rounding_stays_only_where_an_int8_layer_reads_the_same_grid():
    """conv1's output reaches conv2 through ReLU (fused) only; conv3's goes through a global
    average pool, which rounds on a grid of its own before fc reads it."""
    ctx = context()
    realized = realize_quant(ctx.module, set(LAYERS), ctx.ranges, ctx.scheme)
    reaches = {n: referred._reaches_int8_layer(realized.layer_outputs[n][1]) for n in LAYERS}
    assert reaches == {"conv1": True, "conv2": True, "conv3": False, "fc": False}
