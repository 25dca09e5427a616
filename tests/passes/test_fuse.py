"""Golden and numeric tests of `fuse` (qv2c/passes/fuse.py) and of `fused_parts`.

Golden tests: a small mixed int8/fp32 module in IR text, the `fuse` pass through the
PassManager (verified before and after), the expected text, and outputs on a random
input that are bit-identical to the unfused module's (`rtol=0`).
Pattern tests: what must not be absorbed (the kernels could not run it).
Numeric tests: every int8/fp32 assignment of a small residual net, and the CIFAR-10
ResNet-18 with its first conv fp32, fused and run against the unfused module.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from functools import cache

import numpy as np
import pytest
from pass_golden import check_golden, check_pass, random_inputs
from test_realize_quant import NET_LAYERS, random_net

import qv2c
from qv2c.ir import Module, interpret, parse
from qv2c.ir.fused import ELEMENTWISE, fused_parts, is_anchor
from qv2c.passes import run_pipeline
from qv2c.passes.calibrate import calibrate
from qv2c.passes.calibration_data import CalibrationSet
from qv2c.passes.canonicalize import CANONICALIZE
from qv2c.passes.layers import layer_name, quantizable_layers
from qv2c.passes.realize_quant import PLACEMENTS, QuantScheme, realize_quant

CONV = "{dilations = [1, 1], group = 1, pads = [0, 0, 0, 0], strides = [1, 1]}"
QCONV = '{{act = "{act}", dilations = [1, 1], group = 1, pads = [0, 0, 0, 0], requant = "float", strides = [1, 1]}}'
POOL = "{ceil_mode = 0, dilations = [1, 1], kernel = [2, 2], pads = [0, 0, 0, 0], strides = [2, 2]}"
W = "const %w : f32[2,2,1,1] = [1.0, -0.5, 0.25, 2.0]"
WA = "const %wa : i8[2,2,1,1]{axis = 0, scale = [0.0078125, 0.015625], zp = [0, 0]} = [127, -64, 32, 127]"
WA_TYPE = "i8[2,2,1,1]{axis = 0, scale = [0.0078125, 0.015625], zp = [0, 0]}"
WB = "const %wb : i8[2,2,1,1]{axis = 0, scale = [0.015625, 0.0078125], zp = [0, 0]} = [-127, 32, 127, 0]"
XQ = "%x_q = qv.quantize(%x) : u8[1,2,2,2]{scale = 0.0078125, zp = 128}"
XQ_TYPE = "u8[1,2,2,2]{scale = 0.0078125, zp = 128}"


def fused(module: Module) -> list:
    """The `qv.fused` ops of `module`, in program order."""
    return [op for op in module.ops if op.name == "qv.fused"]


def golden(text: str, expected: str) -> Module:
    """Fuse `text`, compare with `expected`, check bit-identical outputs and that the text parses back."""
    m = check_golden(text, "fuse", expected, rtol=0.0)
    assert str(parse(expected)) == expected
    return m


# -- fp32 anchors ----------------------------------------------------------------------
CONV_RELU = f"""\
module @conv_relu {{
  input %x : f32[1,2,2,2]
  {W}
  const %b : f32[2] = [0.5, -1.0]
  %c = qv.conv(%x, %w, %b) {CONV} : f32[1,2,2,2] loc("conv1")
  %r = qv.relu(%c) : f32[1,2,2,2] loc("relu1")
  output %r
}}
"""

# the fused op takes the relu's name (and place as the module output) and the conv's ONNX node
CONV_RELU_FUSED = f"""\
module @conv_relu {{
  input %x : f32[1,2,2,2]
  {W}
  const %b : f32[2] = [0.5, -1.0]
  %r = qv.fused(%x, %w, %b) {{pattern = "qv.conv+qv.relu"}} : f32[1,2,2,2] loc("conv1") {{
    ^(%x.in : f32[1,2,2,2], %w.in : f32[2,2,1,1], %b.in : f32[2]):
    %c = qv.conv(%x.in, %w.in, %b.in) {CONV} : f32[1,2,2,2] loc("conv1")
    %r.out = qv.relu(%c) : f32[1,2,2,2] loc("relu1")
    yield %r.out
  }}
  output %r
}}
"""


def test_conv_relu():
    m = golden(CONV_RELU, CONV_RELU_FUSED)
    parts = fused_parts(fused(m)[0])
    assert parts.anchor is parts.ops[0] and parts.anchor.name == "qv.conv"
    assert (parts.pattern, parts.anchor_act, parts.residual) == ("qv.conv+qv.relu", "none", None)
    assert (parts.activation, parts.bounds, parts.boundary) == ("relu", (0.0, math.inf), "none")
    assert parts.result_type == m.outputs[0].type


RESNET_BLOCK = f"""\
module @block {{
  input %x : f32[1,2,2,2]
  const %w1 : f32[2,2,1,1] = [1.0, -0.5, 0.25, 2.0]
  const %w2 : f32[2,2,1,1] = [0.5, 1.0, -1.0, 0.75]
  const %b2 : f32[2] = [0.5, -1.0]
  %c1 = qv.conv(%x, %w1) {CONV} : f32[1,2,2,2] loc("conv1")
  %r1 = qv.relu(%c1) : f32[1,2,2,2]
  %c2 = qv.conv(%r1, %w2, %b2) {CONV} : f32[1,2,2,2] loc("conv2")
  %s = qv.add(%c2, %x) : f32[1,2,2,2] loc("add")
  %r2 = qv.relu(%s) : f32[1,2,2,2]
  output %r2
}}
"""

# %x feeds both groups; the printer keeps body names unique, so the second body's input is %x.in_1
RESNET_BLOCK_FUSED = f"""\
module @block {{
  input %x : f32[1,2,2,2]
  const %w1 : f32[2,2,1,1] = [1.0, -0.5, 0.25, 2.0]
  const %w2 : f32[2,2,1,1] = [0.5, 1.0, -1.0, 0.75]
  const %b2 : f32[2] = [0.5, -1.0]
  %r1 = qv.fused(%x, %w1) {{pattern = "qv.conv+qv.relu"}} : f32[1,2,2,2] loc("conv1") {{
    ^(%x.in : f32[1,2,2,2], %w1.in : f32[2,2,1,1]):
    %c1 = qv.conv(%x.in, %w1.in) {CONV} : f32[1,2,2,2] loc("conv1")
    %r1.out = qv.relu(%c1) : f32[1,2,2,2]
    yield %r1.out
  }}
  %r2 = qv.fused(%r1, %w2, %b2, %x) {{pattern = "qv.conv+qv.add+qv.relu"}} : f32[1,2,2,2] loc("conv2") {{
    ^(%r1.in : f32[1,2,2,2], %w2.in : f32[2,2,1,1], %b2.in : f32[2], %x.in_1 : f32[1,2,2,2]):
    %c2 = qv.conv(%r1.in, %w2.in, %b2.in) {CONV} : f32[1,2,2,2] loc("conv2")
    %s = qv.add(%c2, %x.in_1) : f32[1,2,2,2] loc("add")
    %r2.out = qv.relu(%s) : f32[1,2,2,2]
    yield %r2.out
  }}
  output %r2
}}
"""


def test_conv_add_relu_resnet_block():
    m = golden(RESNET_BLOCK, RESNET_BLOCK_FUSED)
    parts = fused_parts(fused(m)[1])
    assert (parts.residual, parts.activation, parts.boundary) == (3, "relu", "none")
    assert parts.ops[1].name == "qv.add" and parts.ops[1].operands[1] is fused(m)[1].body.inputs[3]


RELU6_QUANTIZE = f"""\
module @relu6_quantize {{
  input %x : f32[1,2,2,2]
  {W}
  {WA}
  %c = qv.conv(%x, %w) {CONV} : f32[1,2,2,2] loc("conv1")
  %y = qv.clip(%c) {{max = 6.0, min = 0.0}} : f32[1,2,2,2]
  %y_q = qv.quantize(%y) : u8[1,2,2,2]{{scale = 0.03125, zp = 0}}
  %z = qv.qconv(%y_q, %wa) {QCONV.format(act="none")} : u8[1,2,2,2]{{scale = 0.0625, zp = 128}} loc("conv2")
  %z_1 = qv.dequantize(%z) : f32[1,2,2,2]
  output %z_1
}}
"""

# an fp32 layer writing int8 for the int8 layer after it; that one writes fp32 at the output
RELU6_QUANTIZE_FUSED = f"""\
module @relu6_quantize {{
  input %x : f32[1,2,2,2]
  {W}
  {WA}
  %y_q = qv.fused(%x, %w) {{pattern = "qv.conv+qv.clip+qv.quantize"}} : u8[1,2,2,2]{{scale = 0.03125, zp = 0}} loc("conv1") {{
    ^(%x.in : f32[1,2,2,2], %w.in : f32[2,2,1,1]):
    %c = qv.conv(%x.in, %w.in) {CONV} : f32[1,2,2,2] loc("conv1")
    %y = qv.clip(%c) {{max = 6.0, min = 0.0}} : f32[1,2,2,2]
    %y_q.out = qv.quantize(%y) : u8[1,2,2,2]{{scale = 0.03125, zp = 0}}
    yield %y_q.out
  }}
  %z_1 = qv.fused(%y_q, %wa) {{pattern = "qv.qconv+qv.dequantize"}} : f32[1,2,2,2] loc("conv2") {{
    ^(%y_q.in : u8[1,2,2,2]{{scale = 0.03125, zp = 0}}, %wa.in : {WA_TYPE}):
    %z = qv.qconv(%y_q.in, %wa.in) {QCONV.format(act="none")} : u8[1,2,2,2]{{scale = 0.0625, zp = 128}} loc("conv2")
    %z_1.out = qv.dequantize(%z) : f32[1,2,2,2]
    yield %z_1.out
  }}
  output %z_1
}}
"""


def test_conv_clip_quantize_feeding_an_int8_layer():
    m = golden(RELU6_QUANTIZE, RELU6_QUANTIZE_FUSED)
    first, second = (fused_parts(op) for op in fused(m))
    assert (first.activation, first.bounds, first.boundary) == ("relu6", (0.0, 6.0), "quantize")
    assert first.result_type.dtype == "u8" and first.result_type.quant.scale == (0.03125,)
    assert (second.anchor.name, second.boundary, second.activation) == ("qv.qconv", "dequantize", "none")


GEMM_QUANTIZE = f"""\
module @gemm_quantize {{
  input %x : f32[1,3]
  const %w : f32[2,3] = [1.0, 0.5, -1.0, 0.25, 2.0, -1.5]
  const %c : f32[2] = [0.25, -0.5]
  {WA.replace("[2,2,1,1]", "[2,2]")}
  %y = qv.gemm(%x, %w, %c) {{alpha = 1.0, beta = 1.0, trans_a = 0, trans_b = 1}} : f32[1,2] loc("fc1")
  %y_q = qv.quantize(%y) : u8[1,2]{{scale = 0.03125, zp = 128}}
  %z = qv.qgemm(%y_q, %wa) {{act = "relu", requant = "float"}} : u8[1,2]{{scale = 0.03125, zp = 0}} loc("fc2")
  %z_1 = qv.dequantize(%z) : f32[1,2]
  output %z_1
}}
"""

GEMM_QUANTIZE_FUSED = f"""\
module @gemm_quantize {{
  input %x : f32[1,3]
  const %w : f32[2,3] = [1.0, 0.5, -1.0, 0.25, 2.0, -1.5]
  const %c : f32[2] = [0.25, -0.5]
  {WA.replace("[2,2,1,1]", "[2,2]")}
  %y_q = qv.fused(%x, %w, %c) {{pattern = "qv.gemm+qv.quantize"}} : u8[1,2]{{scale = 0.03125, zp = 128}} loc("fc1") {{
    ^(%x.in : f32[1,3], %w.in : f32[2,3], %c.in : f32[2]):
    %y = qv.gemm(%x.in, %w.in, %c.in) {{alpha = 1.0, beta = 1.0, trans_a = 0, trans_b = 1}} : f32[1,2] loc("fc1")
    %y_q.out = qv.quantize(%y) : u8[1,2]{{scale = 0.03125, zp = 128}}
    yield %y_q.out
  }}
  %z_1 = qv.fused(%y_q, %wa) {{pattern = "qv.qgemm+qv.dequantize"}} : f32[1,2] loc("fc2") {{
    ^(%y_q.in : u8[1,2]{{scale = 0.03125, zp = 128}}, %wa.in : {WA_TYPE.replace("[2,2,1,1]", "[2,2]")}):
    %z = qv.qgemm(%y_q.in, %wa.in) {{act = "relu", requant = "float"}} : u8[1,2]{{scale = 0.03125, zp = 0}} loc("fc2")
    %z_1.out = qv.dequantize(%z) : f32[1,2]
    yield %z_1.out
  }}
  output %z_1
}}
"""


def test_gemm_quantize():
    m = golden(GEMM_QUANTIZE, GEMM_QUANTIZE_FUSED)
    first, second = (fused_parts(op) for op in fused(m))
    assert (first.anchor.name, first.activation, first.boundary) == ("qv.gemm", "none", "quantize")
    # the qgemm's own relu is an attribute, applied before the dequantize
    assert (second.anchor_act, second.activation, second.boundary) == ("relu", "none", "dequantize")


# -- int8 anchors ----------------------------------------------------------------------
QCONV_ALONE = f"""\
module @qconv_alone {{
  input %x : f32[1,2,2,2]
  {WA}
  {XQ}
  %a = qv.qconv(%x_q, %wa) {QCONV.format(act="relu")} : u8[1,2,2,2]{{scale = 0.015625, zp = 0}} loc("conv_a")
  %p = qv.maxpool(%a) {POOL} : u8[1,2,1,1]{{scale = 0.015625, zp = 0}}
  %p_1 = qv.dequantize(%p) : f32[1,2,1,1]
  output %p_1
}}
"""

# a lone anchor is wrapped too (one op kind for codegen); the lone quantize, maxpool and
# dequantize at the boundaries stay as they are
QCONV_ALONE_FUSED = f"""\
module @qconv_alone {{
  input %x : f32[1,2,2,2]
  {WA}
  {XQ}
  %a = qv.fused(%x_q, %wa) {{pattern = "qv.qconv"}} : u8[1,2,2,2]{{scale = 0.015625, zp = 0}} loc("conv_a") {{
    ^(%x_q.in : {XQ_TYPE}, %wa.in : {WA_TYPE}):
    %a.out = qv.qconv(%x_q.in, %wa.in) {QCONV.format(act="relu")} : u8[1,2,2,2]{{scale = 0.015625, zp = 0}} loc("conv_a")
    yield %a.out
  }}
  %p = qv.maxpool(%a) {POOL} : u8[1,2,1,1]{{scale = 0.015625, zp = 0}}
  %p_1 = qv.dequantize(%p) : f32[1,2,1,1]
  output %p_1
}}
"""


def test_qconv_alone_is_a_group_of_one():
    m = golden(QCONV_ALONE, QCONV_ALONE_FUSED)
    parts = fused_parts(fused(m)[0])
    assert (parts.pattern, parts.anchor_act, parts.activation, parts.boundary) == ("qv.qconv", "relu", "none", "none")


QCONV_QADD = f"""\
module @qconv_qadd {{
  input %x : f32[1,2,2,2]
  {WA}
  {WB}
  {XQ}
  %a = qv.qconv(%x_q, %wa) {QCONV.format(act="none")} : u8[1,2,2,2]{{scale = 0.015625, zp = 128}} loc("conv_a")
  %b = qv.qconv(%x_q, %wb) {QCONV.format(act="none")} : u8[1,2,2,2]{{scale = 0.0078125, zp = 128}} loc("conv_b")
  %r = qv.qadd(%a, %b) {{act = "relu"}} : u8[1,2,2,2]{{scale = 0.015625, zp = 0}} loc("add")
  %r_1 = qv.dequantize(%r) : f32[1,2,2,2]
  output %r_1
}}
"""

# conv_a absorbs the qadd (it comes first); conv_b, defined before the qadd, is its residual,
# so the group takes the qadd's place after conv_b's own group
QCONV_QADD_FUSED = f"""\
module @qconv_qadd {{
  input %x : f32[1,2,2,2]
  {WA}
  {WB}
  {XQ}
  %b = qv.fused(%x_q, %wb) {{pattern = "qv.qconv"}} : u8[1,2,2,2]{{scale = 0.0078125, zp = 128}} loc("conv_b") {{
    ^(%x_q.in : {XQ_TYPE}, %wb.in : i8[2,2,1,1]{{axis = 0, scale = [0.015625, 0.0078125], zp = [0, 0]}}):
    %b.out = qv.qconv(%x_q.in, %wb.in) {QCONV.format(act="none")} : u8[1,2,2,2]{{scale = 0.0078125, zp = 128}} loc("conv_b")
    yield %b.out
  }}
  %r = qv.fused(%x_q, %wa, %b) {{pattern = "qv.qconv+qv.qadd"}} : u8[1,2,2,2]{{scale = 0.015625, zp = 0}} loc("conv_a") {{
    ^(%x_q.in_1 : {XQ_TYPE}, %wa.in : {WA_TYPE}, %b.in : u8[1,2,2,2]{{scale = 0.0078125, zp = 128}}):
    %a = qv.qconv(%x_q.in_1, %wa.in) {QCONV.format(act="none")} : u8[1,2,2,2]{{scale = 0.015625, zp = 128}} loc("conv_a")
    %r.out = qv.qadd(%a, %b.in) {{act = "relu"}} : u8[1,2,2,2]{{scale = 0.015625, zp = 0}} loc("add")
    yield %r.out
  }}
  %r_1 = qv.dequantize(%r) : f32[1,2,2,2]
  output %r_1
}}
"""


def test_qconv_qadd():
    m = golden(QCONV_QADD, QCONV_QADD_FUSED)
    parts = fused_parts(fused(m)[1])
    assert (parts.residual, parts.anchor_act, parts.activation, parts.bounds) == (2, "none", "relu", (0.0, math.inf))
    assert parts.anchor.result.type.quant.zero_point == (128,) and parts.result_type.quant.zero_point == (0,)


QCONV_DEQUANTIZE_ADD_RELU = f"""\
module @qconv_dequantize_add_relu {{
  input %x : f32[1,2,2,2]
  {WA}
  {XQ}
  %a = qv.qconv(%x_q, %wa) {QCONV.format(act="none")} : u8[1,2,2,2]{{scale = 0.015625, zp = 128}} loc("conv_a")
  %a_dq = qv.dequantize(%a) : f32[1,2,2,2]
  %s = qv.add(%x, %a_dq) : f32[1,2,2,2] loc("add")
  %r = qv.relu(%s) : f32[1,2,2,2]
  output %r
}}
"""

QCONV_DEQUANTIZE_ADD_RELU_FUSED = f"""\
module @qconv_dequantize_add_relu {{
  input %x : f32[1,2,2,2]
  {WA}
  {XQ}
  %r = qv.fused(%x_q, %wa, %x) {{pattern = "qv.qconv+qv.dequantize+qv.add+qv.relu"}} : f32[1,2,2,2] loc("conv_a") {{
    ^(%x_q.in : {XQ_TYPE}, %wa.in : {WA_TYPE}, %x.in : f32[1,2,2,2]):
    %a = qv.qconv(%x_q.in, %wa.in) {QCONV.format(act="none")} : u8[1,2,2,2]{{scale = 0.015625, zp = 128}} loc("conv_a")
    %a_dq = qv.dequantize(%a) : f32[1,2,2,2]
    %s = qv.add(%x.in, %a_dq) : f32[1,2,2,2] loc("add")
    %r.out = qv.relu(%s) : f32[1,2,2,2]
    yield %r.out
  }}
  output %r
}}
"""


def test_qconv_dequantize_add_relu():
    m = golden(QCONV_DEQUANTIZE_ADD_RELU, QCONV_DEQUANTIZE_ADD_RELU_FUSED)
    parts = fused_parts(fused(m)[0])
    assert (parts.residual, parts.activation, parts.boundary) == (2, "relu", "dequantize")
    assert parts.result_type.dtype == "f32" and parts.result_type.quant is None


# -- what is not absorbed ----------------------------------------------------------------
TWO_USERS = f"""\
module @two_users {{
  input %x : f32[1,2,2,2]
  {W}
  %c = qv.conv(%x, %w) {CONV} : f32[1,2,2,2] loc("conv1")
  %r = qv.relu(%c) : f32[1,2,2,2]
  %s = qv.add(%c, %r) : f32[1,2,2,2]
  output %s
}}
"""

# the relu is not the conv result's only reader: the conv is a group of one, the relu stays
TWO_USERS_FUSED = f"""\
module @two_users {{
  input %x : f32[1,2,2,2]
  {W}
  %c = qv.fused(%x, %w) {{pattern = "qv.conv"}} : f32[1,2,2,2] loc("conv1") {{
    ^(%x.in : f32[1,2,2,2], %w.in : f32[2,2,1,1]):
    %c.out = qv.conv(%x.in, %w.in) {CONV} : f32[1,2,2,2] loc("conv1")
    yield %c.out
  }}
  %r = qv.relu(%c) : f32[1,2,2,2]
  %s = qv.add(%c, %r) : f32[1,2,2,2]
  output %s
}}
"""


def test_result_with_two_users_absorbs_no_epilogue():
    golden(TWO_USERS, TWO_USERS_FUSED)


INTERMEDIATE_OUTPUT = f"""\
module @intermediate_output {{
  input %x : f32[1,2,2,2]
  {W}
  %c = qv.conv(%x, %w) {CONV} : f32[1,2,2,2] loc("conv1")
  %r = qv.relu(%c) : f32[1,2,2,2]
  output %c, %r
}}
"""

# %c is a module output, so the relu (its only reader) cannot move into a body
INTERMEDIATE_OUTPUT_FUSED = f"""\
module @intermediate_output {{
  input %x : f32[1,2,2,2]
  {W}
  %c = qv.fused(%x, %w) {{pattern = "qv.conv"}} : f32[1,2,2,2] loc("conv1") {{
    ^(%x.in : f32[1,2,2,2], %w.in : f32[2,2,1,1]):
    %c.out = qv.conv(%x.in, %w.in) {CONV} : f32[1,2,2,2] loc("conv1")
    yield %c.out
  }}
  %r = qv.relu(%c) : f32[1,2,2,2]
  output %c, %r
}}
"""


def test_intermediate_module_output_ends_the_group():
    golden(INTERMEDIATE_OUTPUT, INTERMEDIATE_OUTPUT_FUSED)


CHAINS = f"""\
module @chains {{
  input %x : f32[1,2,2,2]
  %r = qv.relu(%x) : f32[1,2,2,2]
  %y = qv.clip(%r) {{max = 1.0, min = -1.0}} : f32[1,2,2,2]
  {XQ}
  %k = qv.qclip(%x_q) {{max = 0.5, min = 0.0}} : {XQ_TYPE}
  %p = qv.maxpool(%k) {POOL} : u8[1,2,1,1]{{scale = 0.0078125, zp = 128}}
  %d = qv.dequantize(%p) : f32[1,2,1,1]
  %s = qv.sigmoid(%x) : f32[1,2,2,2]
  output %y, %d, %s
}}
"""

# two chains of two become groups (named after their last result, no anchor and no ONNX
# node); the lone dequantize and sigmoid and the maxpool stay
CHAINS_FUSED = f"""\
module @chains {{
  input %x : f32[1,2,2,2]
  %y = qv.fused(%x) {{pattern = "qv.relu+qv.clip"}} : f32[1,2,2,2] {{
    ^(%x.in : f32[1,2,2,2]):
    %r = qv.relu(%x.in) : f32[1,2,2,2]
    %y.out = qv.clip(%r) {{max = 1.0, min = -1.0}} : f32[1,2,2,2]
    yield %y.out
  }}
  %k = qv.fused(%x) {{pattern = "qv.quantize+qv.qclip"}} : {XQ_TYPE} {{
    ^(%x.in_1 : f32[1,2,2,2]):
    {XQ.replace("(%x)", "(%x.in_1)")}
    %k.out = qv.qclip(%x_q) {{max = 0.5, min = 0.0}} : {XQ_TYPE}
    yield %k.out
  }}
  %p = qv.maxpool(%k) {POOL} : u8[1,2,1,1]{{scale = 0.0078125, zp = 128}}
  %d = qv.dequantize(%p) : f32[1,2,1,1]
  %s = qv.sigmoid(%x) : f32[1,2,2,2]
  output %y, %d, %s
}}
"""


def test_elementwise_chains_of_two_or_more():
    m = golden(CHAINS, CHAINS_FUSED)
    for op in fused(m):
        parts = fused_parts(op)
        assert parts.anchor is None and parts.residual is None and parts.boundary == "none"
        assert [o.name for o in parts.ops] == parts.pattern.split("+")


def fused_patterns(text: str) -> list[str]:
    """Top-level op names after `fuse` (a `qv.fused` op as its pattern), outputs bit-identical."""
    m = check_pass(parse(text), "fuse", None, rtol=0.0)
    return [op.attrs["pattern"] if op.name == "qv.fused" else op.name for op in m.ops]


def _replace(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    return text


NOT_ABSORBED = {
    # the kernel clamps once, after the residual: a qconv with its own relu keeps its clamp before the add
    "anchor act before a dequantized residual": (
        _replace(QCONV_DEQUANTIZE_ADD_RELU, ('"none", dilations', '"relu", dilations')),
        ["qv.quantize", "qv.qconv+qv.dequantize", "qv.add", "qv.relu"]),
    # ... but an activation right after the dequantize is fine (one activation step)
    "anchor act then fp32 activations": (
        _replace(QCONV_DEQUANTIZE_ADD_RELU, ('"none", dilations', '"relu", dilations'),
                 ("%s = qv.add(%x, %a_dq)", "%s = qv.clip(%a_dq) {max = 1.0, min = -1.0}")),
        ["qv.quantize", "qv.qconv+qv.dequantize+qv.clip", "qv.relu"]),
    # the kernels requantize in float only
    "shift requantization": (
        _replace(QCONV_ALONE, ('requant = "float"', 'requant = "shift"')),
        ["qv.quantize", "qv.qconv", "qv.maxpool", "qv.dequantize"]),
    # the kernels read A row-major
    "gemm with trans_a": (
        _replace(GEMM_QUANTIZE, ("input %x : f32[1,3]", "input %x : f32[3,1]"), ("trans_a = 0", "trans_a = 1")),
        ["qv.gemm", "qv.quantize", "qv.qgemm+qv.dequantize"]),
    # weights are packed at compile time
    "runtime weight": (
        _replace(CONV_RELU, ("  const %w : f32[2,2,1,1] = [1.0, -0.5, 0.25, 2.0]\n", "  input %w : f32[2,2,1,1]\n")),
        ["qv.conv", "qv.relu"]),
    # the kernel reads the residual at the output's index: no broadcasting
    "broadcast residual": (
        _replace(RESNET_BLOCK, ("  input %x : f32[1,2,2,2]\n", "  input %x : f32[1,2,2,2]\n  const %t : f32[1,2,1,1] = [1.0, 2.0]\n"),
                 ("qv.add(%c2, %x)", "qv.add(%c2, %t)")),
        ["qv.conv+qv.relu", "qv.conv", "qv.add", "qv.relu"]),
    # epilogue order is residual, activation, quantize: a relu before the add ends the group
    "activation before the residual": (
        _replace(RESNET_BLOCK, ("  %s = qv.add(%c2, %x)", "  %c3 = qv.relu(%c2) : f32[1,2,2,2]\n  %s = qv.add(%c3, %x)")),
        ["qv.conv+qv.relu", "qv.conv+qv.relu", "qv.add", "qv.relu"]),
    # the kernel quantizes with one scale and zero point (quantize + dequantize is then a chain)
    "per-channel quantize": (
        _replace(CONV_RELU, ('loc("relu1")\n  output %r', 'loc("relu1")\n'
                             '  %q = qv.quantize(%r) : u8[1,2,2,2]{axis = 1, scale = [0.03125, 0.0625], zp = [0, 0]}\n'
                             '  %d = qv.dequantize(%q) : f32[1,2,2,2]\n  output %d')),
        ["qv.conv+qv.relu", "qv.quantize+qv.dequantize"]),
}


@pytest.mark.parametrize("case", NOT_ABSORBED)
def test_what_the_kernels_cannot_run_is_not_absorbed(case):
    text, expected = NOT_ABSORBED[case]
    assert fused_patterns(text) == expected


def test_clip_activation_bounds():
    text = _replace(CONV_RELU, ('%r = qv.relu(%c) : f32[1,2,2,2] loc("relu1")', "%r = qv.clip(%c) {max = 1.5, min = -0.5} : f32[1,2,2,2]"))
    m = check_pass(parse(text), "fuse", None, rtol=0.0)
    parts = fused_parts(fused(m)[0])
    assert (parts.activation, parts.bounds) == ("clip", (-0.5, 1.5))


def test_fuse_is_idempotent_and_fused_parts_rejects_other_ops():
    m = parse(RESNET_BLOCK)
    run_pipeline(m, ["fuse"])
    once = str(m)
    run_pipeline(m, ["fuse"])
    assert str(m) == once
    with pytest.raises(ValueError, match="qv.fused"):
        fused_parts(fused(m)[0].body.ops[0])


# -- numerics -------------------------------------------------------------------------
def _check_groups(before: Module, after: Module) -> None:
    """Every kernel-runnable anchor of `before` heads exactly one group of `after`; no group
    holds an anchor elsewhere; every op outside a group is a lone op the rules keep."""
    anchors = [op.meta.get("onnx_node") for op in before.ops if is_anchor(op)]
    heads = [fused_parts(op).anchor for op in fused(after)]
    assert sorted(a.meta.get("onnx_node") for a in heads if a is not None) == sorted(anchors)
    for op in fused(after):
        assert not any(is_anchor(inner) for inner in op.body.ops[1:])
    assert not any(is_anchor(op) for op in after.ops)


@pytest.fixture(scope="module")
def calibrated_net():
    m = random_net()
    rng = np.random.default_rng(1)
    return m, calibrate(m, CalibrationSet({"x": rng.random((8, 3, 8, 8), dtype=np.float32)}), batch=2)


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("scale_kind", ["float", "power-of-2"])
def test_every_assignment_of_a_residual_net_fuses_without_changing_a_bit(calibrated_net, placement, scale_kind):
    """All 16 int8/fp32 assignments of conv1..3 and fc of `random_net` (residual add, concat,
    pooling, gemm), both quantize placements and both scale kinds (power-of-2 layers requantize
    by shifts; the kernels take shifts too, so their anchors are grouped like float ones)."""
    m, ranges = calibrated_net
    inputs = random_inputs(m, seed=3)
    for k in range(len(NET_LAYERS) + 1):
        for int8 in itertools.combinations(NET_LAYERS, k):
            q = realize_quant(m, set(int8), ranges, QuantScheme(scale_kind=scale_kind), placement).module
            before = str(q)
            want = interpret(q, inputs)
            run_pipeline(q, ["fuse"])
            got = interpret(q, inputs)
            assert all(np.array_equal(got[name], want[name]) for name in want), (int8, placement)
            _check_groups(parse(before), q)
            int8_heads = [op for op in fused(q) if fused_parts(op).anchor
                          and fused_parts(op).anchor.name in ("qv.qconv", "qv.qgemm")]
            assert len(int8_heads) == len(int8)  # every int8 layer heads its own group


# -- a real model ------------------------------------------------------------------------
@cache
def _resnet18_calibrated() -> tuple[Module, dict]:
    """CIFAR-10 ResNet-18, canonicalized, and its ranges on 8 random inputs. Called from test
    bodies, so an unset QV2C_DATA fails the test (with ConfigError's message) instead of erroring."""
    from qv2c.datasets.paths import data_file

    m = qv2c.import_onnx(str(data_file(None, "cifar10_zoo", "resnet18v1.onnx")))
    run_pipeline(m, CANONICALIZE)
    rng = np.random.default_rng(0)
    return m, calibrate(m, CalibrationSet({"input": rng.standard_normal((8, 3, 32, 32), dtype=np.float32)}), batch=1)


def _resnet18_mixed() -> Module:
    """A fresh mixed module: the first conv fp32, every other layer int8."""
    m, ranges = _resnet18_calibrated()
    return realize_quant(m, {layer_name(op) for op in quantizable_layers(m)[1:]}, ranges).module


RESNET18_PATTERNS = {
    "qv.conv+qv.relu+qv.quantize": 1,  # conv1 (fp32) writes int8 for the first block
    "qv.qconv+qv.qadd": 8,  # the second conv of each basic block, with its residual add and relu
    "qv.qconv": 11,  # the first conv of each block (relu as act) and the 3 shortcut convs
    "qv.qgemm+qv.dequantize": 1,  # the classifier writes the fp32 logits
}


def test_resnet18_mixed_precision_fuses_into_one_group_per_layer():
    mixed, m = _resnet18_mixed(), _resnet18_mixed()
    inputs = {"input": np.random.default_rng(5).standard_normal((1, 3, 32, 32), dtype=np.float32)}
    want = interpret(m, inputs)
    run_pipeline(m, ["fuse"])
    assert Counter(op.attrs["pattern"] for op in fused(m)) == RESNET18_PATTERNS
    assert Counter(op.name for op in m.ops if op.name != "qv.fused") == {"qv.qglobal_avgpool": 1, "qv.reshape": 1}
    # quantize / dequantize outside groups only at the model's boundaries
    for op in m.ops:
        assert op.name != "qv.quantize" or op.operands[0] in m.inputs
        assert op.name != "qv.dequantize" or op.result in m.outputs
    _check_groups(mixed, m)
    got = interpret(m, inputs)
    assert list(got) == ["logits"] and np.array_equal(got["logits"], want["logits"])
    assert str(parse(str(m))) == str(m)
    assert set(ELEMENTWISE).isdisjoint(op.name for op in m.ops)
