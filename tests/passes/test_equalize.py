"""`equalize` (cross-layer equalization): a golden pair, what ends a pair, and Hypothesis over random
conv chains (grouped, depthwise, with and without ReLU and bias): the fp32 outputs stay within 1e-5
relative, and an isolated pair comes out with equal channel ranges."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pass_golden import check_golden, check_pass
from quant_models import images, small_cnn

import qv2c
from qv2c.ir import Builder, Module, TensorType, Value, parse
from qv2c.passes import run_pipeline
from qv2c.passes.equalize import _input_channel_ranges

_CONV = "{{dilations = [1, 1], group = 1, pads = [0, 0, 0, 0], strides = [1, 1]}}"

PAIR = f"""\
module @pair {{{{
  input %x : f32[1,1,2,2]
  const %w1 : f32[2,1,1,1] = [4.0, 0.25]
  const %b1 : f32[2] = [2.0, 0.5]
  const %w2 : f32[1,2,1,1] = [1.0, 4.0]
  %a = qv.conv(%x, %w1, %b1) {_CONV} : f32[1,2,2,2]
  %r = qv.{{act}}(%a) : f32[1,2,2,2]
  %y = qv.conv(%r, %w2) {_CONV} : f32[1,1,2,2]
  output %y
}}}}
"""

# s = sqrt(r1 / r2) = [sqrt(4 / 1), sqrt(0.25 / 4)] = [2, 0.25]: W1 / s, b1 / s, W2 * s
PAIR_EQUALIZED = f"""\
module @pair {{{{
  input %x : f32[1,1,2,2]
  const %w1_eq : f32[2,1,1,1] = [2.0, 1.0]
  const %b1_eq : f32[2] = [1.0, 2.0]
  const %w2_eq : f32[1,2,1,1] = [2.0, 1.0]
  %a = qv.conv(%x, %w1_eq, %b1_eq) {_CONV} : f32[1,2,2,2]
  %r = qv.{{act}}(%a) : f32[1,2,2,2]
  %y = qv.conv(%r, %w2_eq) {_CONV} : f32[1,1,2,2]
  output %y
}}}}
"""


def test_pair_through_relu_is_balanced():
    check_golden(PAIR.format(act="relu"), ["equalize", "dce"], PAIR_EQUALIZED.format(act="relu"))


def test_relu6_result_read_twice_and_module_output_end_a_pair():
    relu6 = PAIR.format(act="relu").replace("qv.relu(%a)", "qv.clip(%a) {max = 6.0, min = 0.0}")
    check_golden(relu6, ["equalize", "dce"], str(parse(relu6)))
    twice = PAIR.format(act="relu").replace("output %y", "output %y, %r")
    check_golden(twice, ["equalize", "dce"], str(parse(twice)))


@st.composite
def conv_chains(draw):
    """A chain of 2-4 convs (1x1 or 3x3, grouped or depthwise), each followed by a ReLU or nothing, with
    channel ranges skewed by up to 1000x."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    c = draw(st.sampled_from([2, 4, 6]))
    m = Module("chain")
    v = m.add_input(Value(TensorType((1, c, 5, 5), "f32"), "x"))
    b = Builder(m)
    for i in range(draw(st.integers(2, 4))):
        kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
        groups = {"dense": 1, "grouped": 2, "depthwise": c}[kind]
        oc = c if kind == "depthwise" else groups * draw(st.integers(1, 3))
        oc += oc % 2  # every channel count even, so a grouped conv (2 groups) can follow anything
        k = draw(st.sampled_from([1, 3]))
        w = rng.standard_normal((oc, c // groups, k, k)) * np.exp(rng.uniform(-3.5, 3.5, (oc, 1, 1, 1)))
        ops = [v, m.add_constant(w.astype(np.float32), f"w{i}")]
        if draw(st.booleans()):
            ops.append(m.add_constant(rng.standard_normal(oc).astype(np.float32), f"b{i}"))
        v = b.op("qv.conv", ops, strides=[1, 1], pads=[k // 2] * 4, dilations=[1, 1], group=groups)
        if draw(st.booleans()):
            v = b.op("qv.relu", [v])
        c = oc
    m.outputs = [v]
    return m


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(module=conv_chains(), seed=st.integers(0, 2**31))
def test_equalized_chain_computes_the_same_function(module, seed):
    check_pass(module, "equalize", None, rtol=1e-5, seed=seed % 1000)


def test_isolated_pair_has_equal_ranges_after():
    rng = np.random.default_rng(1)
    m = Module("pair")
    x = m.add_input(Value(TensorType((1, 3, 4, 4), "f32"), "x"))
    w1 = (rng.standard_normal((6, 3, 3, 3)) * np.logspace(-2, 2, 6)[:, None, None, None]).astype(np.float32)
    w2 = rng.standard_normal((4, 3, 1, 1)).astype(np.float32)  # two groups of 3 input channels
    b = Builder(m)
    a = b.op("qv.conv", [x, m.add_constant(w1, "w1")], strides=[1, 1], pads=[1] * 4, dilations=[1, 1], group=1)
    m.outputs = [b.op("qv.conv", [b.op("qv.relu", [a]), m.add_constant(w2, "w2")], strides=[1, 1], pads=[0] * 4,
                      dilations=[1, 1], group=2)]
    run_pipeline(m, ["equalize"])
    first, second = (op for op in m.ops if op.name == "qv.conv")
    r1 = np.abs(first.operands[1].data).reshape(6, -1).max(axis=1)
    r2 = _input_channel_ranges(second.operands[1].data, 2)
    np.testing.assert_allclose(r1, r2, rtol=1e-6)
    before = np.abs(w1).reshape(6, -1).max(axis=1)
    assert r1.max() / r1.min() < before.max() / before.min() / 10  # the spread of channel ranges shrank


def test_compile_with_equalize_keeps_fp32_and_repairs_a_skewed_per_tensor_layer():
    """`qv2c.compile(..., equalize=True)`: the fp32 model computes the same outputs (1e-5 relative), and on
    the small CNN whose conv2 has one output channel 1000x larger (`quant_models.small_cnn(skewed=...)`),
    per-tensor int8 outputs move closer to fp32: mean error at most 0.6x (over seeds 0-3 with conv1 or conv2
    skewed it was 0.19-0.56x; this is seed 2, conv2, 0.44x)."""
    path, x = small_cnn(seed=2, skewed="conv2"), images(16, seed=3)

    def compiled(**options):
        return qv2c.compile(path, x, batch_size=16, backend="reference", **options)(x)

    fp32, fp32_eq = compiled(precision="fp32"), compiled(precision="fp32", equalize=True)
    np.testing.assert_allclose(fp32_eq, fp32, rtol=0, atol=1e-5 * np.abs(fp32).max())
    errors = [np.abs(compiled(precision="int8", weight_granularity="per-tensor", equalize=eq) - fp32).mean()
              for eq in (False, True)]
    assert errors[1] < 0.6 * errors[0], errors
