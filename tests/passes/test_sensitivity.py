"""Tests of the layer sensitivity methods (qv2c/passes/sensitivity/).

QuantuneV2 must cost exactly two inferences per calibration batch, report every metric
and order layers by score; a layer made hard to quantize per tensor must come first.
The baselines must cost what they claim (leave-one-out and output-SQNR N + 1
inferences), and the rule-based orders (first-last, seeded random) must be exact.
Models are the small CNN of tests/quant_models.py, ranked on a few random images.
"""

from __future__ import annotations

import numpy as np
import pytest
from quant_models import LAYERS, images, small_cnn

from qv2c.api import load_canonical
from qv2c.errors import ConfigError
from qv2c.ir import Builder, Module, TensorType, Value
from qv2c.passes.calibrate import calibrate
from qv2c.passes.calibration_data import make_calibration_set
from qv2c.passes.realize_quant import QuantScheme
from qv2c.passes.sensitivity import METHODS, SensitivityContext, rank_layers

METRICS = {"weight_sqnr_db", "weight_mse", "act_sqnr_db", "act_mse", "input_sqnr_db", "sqnr_drop_db"}


def context(count: int = 6, batch: int = 2, skewed: str | None = None, granularity: str = "per-channel",
            seed: int = 0, input_name: str = "x") -> SensitivityContext:
    """The small CNN imported at `batch`, calibrated (min-max) on `count` images."""
    module = load_canonical(small_cnn(skewed=skewed, input_name=input_name), batch)
    data = make_calibration_set(module, images(count))
    return SensitivityContext(module, data, batch, calibrate(module, data, batch), QuantScheme(granularity), seed)


# -- QuantuneV2 ---------------------------------------------------------------------------
def test_quantunev2_global_runs_two_inferences_per_batch(count_evaluations):
    ctx = context(count=5, batch=2)  # 3 batches, the last one padded
    ctx.evaluator = count_evaluations
    ranking = rank_layers("quantunev2-global", ctx)
    assert ranking.inferences == 2
    runs = count_evaluations.modules
    assert len(runs) == 2 * 3
    assert [m is ctx.module for m in runs] == [True, False] * 3  # one fp32 and one int8 run per batch
    assert len({id(m) for m in runs if m is not ctx.module}) == 1  # one int8 module, built once


def test_quantunev2_runs_fp32_once_and_each_int8_layer_once_per_batch(count_evaluations):
    """The default (local) variant runs, in one module per batch, the fp32 model and every int8
    layer once on the fp32 run's input: the work of one fp32 and one int8 inference, without
    chaining the int8 layers."""
    ctx = context(count=5, batch=2)
    ctx.evaluator = count_evaluations
    ops_before = len(ctx.module.ops)
    ranking = rank_layers("quantunev2", ctx)
    assert ranking.inferences == 2
    runs = count_evaluations.modules
    assert len(runs) == 3 and all(m is runs[0] for m in runs)  # built once, run once per batch
    combined = runs[0]
    int8_ops = [op for op in combined.ops if op.name in ("qv.qconv", "qv.qgemm")]
    fp32_ops = [op for op in combined.ops if op.name in ("qv.conv", "qv.gemm")]
    assert len(int8_ops) == len(fp32_ops) == len(ranking.records) == len(LAYERS)
    # each int8 layer reads an fp32 value quantized, never another layer's int8 output
    assert all(op.operands[0].owner.name == "qv.quantize" for op in int8_ops)
    assert all(op.operands[0].owner.operands[0].type.dtype == "f32" for op in int8_ops)
    # a copy: the analysed module itself is unchanged (one quantize per layer: no two share an input)
    assert len(ctx.module.ops) == ops_before and len(combined.ops) == ops_before + 2 * len(LAYERS)


def test_quantunev2_records_every_metric_and_orders_by_score():
    ranking = rank_layers("quantunev2", context())
    assert sorted(r.name for r in ranking.records) == sorted(LAYERS)
    for r in ranking.records:
        assert set(r.metrics) == METRICS, r.name
        assert r.metrics["sqnr_drop_db"] == pytest.approx(r.metrics["input_sqnr_db"] - r.metrics["act_sqnr_db"])
        assert r.op in ("qv.conv", "qv.gemm") and r.macs > 0
    scores = [r.score for r in ranking.records]
    assert scores == sorted(scores, reverse=True)
    assert ranking.top(2) == [r.name for r in ranking.records[:2]]
    # four metrics weighted 0.25, each normalised to [0, 1]
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_quantunev2_metrics_do_not_depend_on_the_batch():
    """3 images at batch 2 (one padded row) measure the same as at batch 3 (none): padding
    never counts in an activation statistic."""
    by_two = {r.name: r.metrics for r in rank_layers("quantunev2", context(count=3, batch=2)).records}
    at_once = {r.name: r.metrics for r in rank_layers("quantunev2", context(count=3, batch=3)).records}
    for name in LAYERS:
        for key in METRICS:
            assert by_two[name][key] == pytest.approx(at_once[name][key], rel=1e-6, abs=1e-9), (name, key)


@pytest.mark.parametrize("method", ["quantunev2", "quantunev2-global"])
def test_layer_hard_to_quantize_per_tensor_ranks_first(method):
    """conv3 with one output channel 1000x the others: per-tensor int8 rounds all its
    other weights to 0. Unskewed, conv3 is not the most sensitive layer."""
    assert rank_layers(method, context(skewed="conv3", granularity="per-tensor")).top(1) == ["conv3"]
    assert rank_layers(method, context(granularity="per-tensor")).top(1) != ["conv3"]


def test_quantunev2_with_an_input_name_that_prints_differently():
    """ONNX input "input:0" prints as %input_0; the first layer's input statistics must
    still be found (they were looked up by the ONNX name and raised KeyError)."""
    ranking = rank_layers("quantunev2", context(input_name="input:0"))
    conv1 = next(r for r in ranking.records if r.name == "conv1")
    assert 20.0 < conv1.metrics["input_sqnr_db"] < 200.0


# -- baselines ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["leave-one-out", "output-sqnr"])
def test_per_layer_baselines_run_n_plus_one_inferences(method, count_evaluations):
    ctx = context(count=4, batch=2)  # 2 batches
    ctx.evaluator = count_evaluations
    ranking = rank_layers(method, ctx)
    assert ranking.inferences == len(LAYERS) + 1
    assert len(count_evaluations.modules) == (len(LAYERS) + 1) * 2
    scores = [r.score for r in ranking.records]
    assert scores == sorted(scores, reverse=True) and sorted(ranking.top(4)) == sorted(LAYERS)


def test_leave_one_out_credits_the_layer_whose_return_to_fp32_helps_most():
    """With conv3 destroyed by per-tensor int8, only putting conv3 back in fp32 restores the output."""
    ranking = rank_layers("leave-one-out", context(skewed="conv3", granularity="per-tensor"))
    assert ranking.top(1) == ["conv3"]


def test_weight_sqnr_needs_no_inference(count_evaluations):
    ctx = context()
    ctx.evaluator = count_evaluations
    ranking = rank_layers("weight-sqnr", ctx)
    assert ranking.inferences == 0 and count_evaluations.modules == []
    sqnr = [r.metrics["weight_sqnr_db"] for r in ranking.records]
    assert sqnr == sorted(sqnr)  # lowest weight SQNR first


def chain_context(layers: int) -> SensitivityContext:
    """A chain of `layers` 1x1 convs named l0, l1, ... (rule-based methods only read the module)."""
    m = Module("chain")
    x = m.add_input(Value(TensorType((1, 2, 2, 2), "f32"), "x"))
    b = Builder(m)
    for i in range(layers):
        w = m.add_constant(np.full((2, 2, 1, 1), 0.5, np.float32), f"w{i}")
        x = b.op("qv.conv", [x, w], meta={"onnx_node": f"l{i}"})
    m.outputs = [x]
    return SensitivityContext(m, None, 1, {}, QuantScheme())


@pytest.mark.parametrize("n, order", [
    (1, ["l0"]),
    (4, ["l0", "l3", "l1", "l2"]),
    (5, ["l0", "l4", "l1", "l3", "l2"]),
])
def test_first_last_order(n, order, count_evaluations):
    ctx = chain_context(n)
    ctx.evaluator = count_evaluations
    ranking = rank_layers("first-last", ctx)
    assert ranking.top(n) == order
    assert ranking.inferences == 0 and count_evaluations.modules == []


def test_random_order_is_seeded_and_deterministic():
    def order(seed: int) -> list[str]:
        ctx = chain_context(6)
        ctx.seed = seed
        return rank_layers("random", ctx).top(6)

    assert order(3) == order(3)
    orders = {tuple(order(seed)) for seed in range(8)}
    assert len(orders) > 1
    assert all(sorted(o) == [f"l{i}" for i in range(6)] for o in orders)


# -- the report ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", sorted(METHODS))
def test_table_prints_every_layer(method):
    ranking = rank_layers(method, context(count=2, batch=2))
    lines = ranking.table().splitlines()
    assert len(lines) == len(LAYERS) + 1
    assert lines[0].split()[:4] == ["rank", "layer", "op", "score"]
    for i, record in enumerate(ranking.records):
        cells = lines[i + 1].split()
        assert cells[:3] == [str(i + 1), record.name, record.op]
        assert len(cells) == len(lines[0].split())  # every metric column filled
    for key in {k for r in ranking.records for k in r.metrics}:
        assert key in lines[0]


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown sensitivity method 'hessian'"):
        rank_layers("hessian", context(count=2))
