"""Golden and numeric tests of `fold-batchnorm` (conv, gemm with and without
trans_b, the mul/add decomposition, and batch norms that must be left alone)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pass_golden import check_golden, check_pass

from qv2c.ir import Builder, Module, TensorType, Value

# epsilon = 0 and var = 1 / s^2 keep every folded number exact, so each value in the
# expected text can be checked by hand: s = gamma / sqrt(var) = [1/0.5, 3/1] = [2, 3].
BN_PARAMS = """\
  const %gamma : f32[2] = [1.0, 3.0]
  const %beta : f32[2] = [0.5, -1.0]
  const %mean : f32[2] = [1.0, 2.0]
  const %var : f32[2] = [0.25, 1.0]
"""

CONV_BN = f"""\
module @conv_bn {{
  input %x : f32[1,2,4,4]
{BN_PARAMS}\
  const %w : f32[2,1,1,1] = [1.0, 2.0]
  const %b : f32[2] = [0.0, 4.0]
  %c = qv.conv(%x, %w, %b) {{dilations = [1, 1], group = 2, pads = [0, 0, 0, 0], strides = [1, 1]}} : f32[1,2,4,4] loc("conv1")
  %y = qv.batchnorm(%c, %gamma, %beta, %mean, %var) {{epsilon = 0.0}} : f32[1,2,4,4] loc("bn1")
  %r = qv.relu(%y) : f32[1,2,4,4]
  output %r
}}
"""

# w' = w * s = [2, 6]; b' = (b - mean) * s + beta = [-1.5, 5]; old constants stay for dce
CONV_BN_FOLDED = f"""\
module @conv_bn {{
  input %x : f32[1,2,4,4]
{BN_PARAMS}\
  const %w : f32[2,1,1,1] = [1.0, 2.0]
  const %b : f32[2] = [0.0, 4.0]
  const %w_bnfolded : f32[2,1,1,1] = [2.0, 6.0]
  const %b_bnfolded : f32[2] = [-1.5, 5.0]
  %c = qv.conv(%x, %w_bnfolded, %b_bnfolded) {{dilations = [1, 1], group = 2, pads = [0, 0, 0, 0], strides = [1, 1]}} : f32[1,2,4,4] loc("conv1")
  %r = qv.relu(%c) : f32[1,2,4,4]
  output %r
}}
"""


def test_conv_with_bias():
    check_golden(CONV_BN, "fold-batchnorm", CONV_BN_FOLDED)


CONV_NO_BIAS = f"""\
module @conv_nobias {{
  input %x : f32[1,2,4,4]
{BN_PARAMS}\
  const %w : f32[2,1,1,1] = [1.0, 2.0]
  %c = qv.conv(%x, %w) {{dilations = [1, 1], group = 2, pads = [0, 0, 0, 0], strides = [1, 1]}} : f32[1,2,4,4]
  %y = qv.batchnorm(%c, %gamma, %beta, %mean, %var) {{epsilon = 0.0}} : f32[1,2,4,4]
  output %y
}}
"""

# the conv gains a bias (-mean * s + beta = [-1.5, -7]) and, as the new producer of
# the module output, the output's name %y
CONV_NO_BIAS_FOLDED = f"""\
module @conv_nobias {{
  input %x : f32[1,2,4,4]
{BN_PARAMS}\
  const %w : f32[2,1,1,1] = [1.0, 2.0]
  const %w_bnfolded : f32[2,1,1,1] = [2.0, 6.0]
  const %w_bnfolded_bias : f32[2] = [-1.5, -7.0]
  %y = qv.conv(%x, %w_bnfolded, %w_bnfolded_bias) {{dilations = [1, 1], group = 2, pads = [0, 0, 0, 0], strides = [1, 1]}} : f32[1,2,4,4]
  output %y
}}
"""


def test_conv_without_bias_gets_one_and_the_output_keeps_its_name():
    check_golden(CONV_NO_BIAS, "fold-batchnorm", CONV_NO_BIAS_FOLDED)


GEMM_BN = """\
module @gemm_bn {{
  input %x : f32[1,3]
{params}\
  const %w : f32[{wshape}] = [{w}]
  const %c : f32[2] = [1.0, -1.0]
  %g = qv.gemm(%x, %w, %c) {{alpha = 1.0, beta = 2.0, trans_a = 0, trans_b = {trans_b}}} : f32[1,2]
  %y = qv.batchnorm(%g, %gamma, %beta, %mean, %var) {{epsilon = 0.0}} : f32[1,2]
  %r = qv.relu(%y) : f32[1,2]
  output %r
}}
"""

# B' scales output column j by s[j]; the gemm's beta = 2 moves into the bias:
# c' = (2 * c - mean) * s + beta = [2.5, -13]
GEMM_BN_FOLDED = """\
module @gemm_bn {{
  input %x : f32[1,3]
{params}\
  const %w : f32[{wshape}] = [{w}]
  const %c : f32[2] = [1.0, -1.0]
  const %w_bnfolded : f32[{wshape}] = [{w_folded}]
  const %c_bnfolded : f32[2] = [2.5, -13.0]
  %g = qv.gemm(%x, %w_bnfolded, %c_bnfolded) {{alpha = 1.0, beta = 1.0, trans_a = 0, trans_b = {trans_b}}} : f32[1,2]
  %r = qv.relu(%g) : f32[1,2]
  output %r
}}
"""

GEMM_CASES = {
    # trans_b = 1: B is [N, K], rows are output channels
    1: dict(wshape="2,3", w="1.0, 2.0, 3.0, 4.0, 5.0, 6.0", w_folded="2.0, 4.0, 6.0, 12.0, 15.0, 18.0"),
    # trans_b = 0: B is [K, N], columns are output channels
    0: dict(wshape="3,2", w="1.0, 4.0, 2.0, 5.0, 3.0, 6.0", w_folded="2.0, 12.0, 4.0, 15.0, 6.0, 18.0"),
}


def test_gemm_both_layouts():
    for trans_b, case in GEMM_CASES.items():
        check_golden(GEMM_BN.format(trans_b=trans_b, params=BN_PARAMS, **case), "fold-batchnorm",
                     GEMM_BN_FOLDED.format(trans_b=trans_b, params=BN_PARAMS, **case))


SHARED_CONV = f"""\
module @shared {{
  input %x : f32[1,2,4,4]
{BN_PARAMS}\
  const %w : f32[2,1,1,1] = [1.0, 2.0]
  %c = qv.conv(%x, %w) {{dilations = [1, 1], group = 2, pads = [0, 0, 0, 0], strides = [1, 1]}} : f32[1,2,4,4]
  %y = qv.batchnorm(%c, %gamma, %beta, %mean, %var) {{epsilon = 0.0}} : f32[1,2,4,4] loc("bn1")
  %s = qv.add(%c, %y) : f32[1,2,4,4]   // a second reader of %c: the conv cannot change
  output %s
}}
"""

# x * s + (beta - mean * s) with [1, C, 1, 1] constants: s = [2, 3], shift = [-1.5, -7]
SHARED_CONV_DECOMPOSED = f"""\
module @shared {{
  input %x : f32[1,2,4,4]
{BN_PARAMS}\
  const %w : f32[2,1,1,1] = [1.0, 2.0]
  const %y_bnscale : f32[1,2,1,1] = [2.0, 3.0]
  const %y_bnshift : f32[1,2,1,1] = [-1.5, -7.0]
  %c = qv.conv(%x, %w) {{dilations = [1, 1], group = 2, pads = [0, 0, 0, 0], strides = [1, 1]}} : f32[1,2,4,4]
  %y_bnscaled = qv.mul(%c, %y_bnscale) : f32[1,2,4,4] loc("bn1")
  %y = qv.add(%y_bnscaled, %y_bnshift) : f32[1,2,4,4] loc("bn1")
  %s = qv.add(%c, %y) : f32[1,2,4,4]
  output %s
}}
"""


def test_batchnorm_after_a_shared_conv_is_decomposed():
    check_golden(SHARED_CONV, "fold-batchnorm", SHARED_CONV_DECOMPOSED)


INPUT_BN = f"""\
module @input_bn {{
  input %x : f32[2,2]
{BN_PARAMS}\
  %y = qv.batchnorm(%x, %gamma, %beta, %mean, %var) {{epsilon = 0.0}} : f32[2,2]
  output %y
}}
"""

# rank 2: the per-channel constants are [1, C]
INPUT_BN_DECOMPOSED = f"""\
module @input_bn {{
  input %x : f32[2,2]
{BN_PARAMS}\
  const %y_bnscale : f32[1,2] = [2.0, 3.0]
  const %y_bnshift : f32[1,2] = [-1.5, -7.0]
  %y_bnscaled = qv.mul(%x, %y_bnscale) : f32[2,2]
  %y = qv.add(%y_bnscaled, %y_bnshift) : f32[2,2]
  output %y
}}
"""


def test_batchnorm_on_a_graph_input_is_decomposed():
    check_golden(INPUT_BN, "fold-batchnorm", INPUT_BN_DECOMPOSED)


RUNTIME_PARAMS = """\
module @dynamic {
  input %x : f32[1,2,4,4]
  input %gamma : f32[2]
  const %beta : f32[2] = [0.5, -1.0]
  const %mean : f32[2] = [1.0, 2.0]
  const %var : f32[2] = [0.25, 1.0]
  const %w : f32[2,1,1,1] = [1.0, 2.0]
  %c = qv.conv(%x, %w) {dilations = [1, 1], group = 2, pads = [0, 0, 0, 0], strides = [1, 1]} : f32[1,2,4,4]
  %y = qv.batchnorm(%c, %gamma, %beta, %mean, %var) {epsilon = 1e-05} : f32[1,2,4,4]
  output %y
}
"""


def test_batchnorm_with_runtime_parameters_is_left_alone():
    check_golden(RUNTIME_PARAMS, "fold-batchnorm", RUNTIME_PARAMS)


def _bn_params(m: Module, rng: np.random.Generator, channels: int) -> list[Value]:
    """Random inference batch-norm parameters (positive scale and variance)."""
    arrays = [rng.uniform(0.5, 2.0, channels), rng.standard_normal(channels), rng.standard_normal(channels),
              rng.uniform(0.01, 3.0, channels)]
    return [m.add_constant(a.astype(np.float32), n) for a, n in zip(arrays, ["gamma", "beta", "mean", "var"])]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cin_per_group=st.integers(1, 3), cout_per_group=st.integers(1, 3),
       group=st.integers(1, 2), kernel=st.integers(1, 3), stride=st.integers(1, 2), with_bias=st.booleans())
def test_conv_fold_is_numerically_equivalent(seed, cin_per_group, cout_per_group, group, kernel, stride, with_bias):
    rng = np.random.default_rng(seed)
    cin, cout = cin_per_group * group, cout_per_group * group
    m = Module("random")
    x = m.add_input(Value(TensorType((2, cin, 6, 6), "f32"), "x"))
    w = m.add_constant(rng.standard_normal((cout, cin_per_group, kernel, kernel)).astype(np.float32), "w")
    operands = [x, w] + ([m.add_constant(rng.standard_normal(cout).astype(np.float32), "b")] if with_bias else [])
    b = Builder(m)
    c = b.op("qv.conv", operands, group=group, strides=[stride, stride], pads=[1, 0, 1, 0], result_names=["c"])
    m.outputs = [b.op("qv.batchnorm", [c, *_bn_params(m, rng, cout)], result_names=["y"])]
    check_pass(m, "fold-batchnorm", None, seed=seed)
    assert [op.name for op in m.ops] == ["qv.conv"]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), trans_b=st.sampled_from([0, 1]), alpha=st.sampled_from([1.0, 0.5]),
       beta=st.sampled_from([1.0, 3.0]), bias_shape=st.sampled_from([None, (4,), (1, 4), (3, 4), (3, 1)]))
def test_gemm_fold_is_numerically_equivalent(seed, trans_b, alpha, beta, bias_shape):
    rng = np.random.default_rng(seed)
    m = Module("random")
    x = m.add_input(Value(TensorType((3, 5), "f32"), "x"))
    w = m.add_constant(rng.standard_normal((4, 5) if trans_b else (5, 4)).astype(np.float32), "w")
    operands = [x, w]
    if bias_shape is not None:
        operands.append(m.add_constant(rng.standard_normal(bias_shape).astype(np.float32), "c"))
    b = Builder(m)
    g = b.op("qv.gemm", operands, trans_b=trans_b, alpha=alpha, beta=beta, result_names=["g"])
    m.outputs = [b.op("qv.batchnorm", [g, *_bn_params(m, rng, 4)], result_names=["y"])]
    check_pass(m, "fold-batchnorm", None, seed=seed)
    assert [op.name for op in m.ops] == ["qv.gemm"]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_decomposition_is_numerically_equivalent(seed):
    rng = np.random.default_rng(seed)
    m = Module("random")
    x = m.add_input(Value(TensorType((2, 3, 4, 4), "f32"), "x"))
    p = Builder(m).op("qv.maxpool", [x], kernel=[2, 2], strides=[2, 2], result_names=["p"])
    m.outputs = [Builder(m).op("qv.batchnorm", [p, *_bn_params(m, rng, 3)], result_names=["y"])]
    check_pass(m, "fold-batchnorm", None, seed=seed)
    assert [op.name for op in m.ops] == ["qv.maxpool", "qv.mul", "qv.add"]
