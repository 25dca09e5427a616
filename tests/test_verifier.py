"""The verifier: one broken module per invariant, each error naming the op and its ONNX node."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from qv2c.errors import QV2CError, VerificationError
from qv2c.ir import Builder, Graph, Module, Op, QuantParams, TensorType, Value, parse, verify

CONV = r"qv\.conv \(ONNX node 'conv1'\)"
RELU = r"qv\.relu \(ONNX node 'relu1'\)"


def f32(*shape: int) -> TensorType:
    return TensorType(shape, "f32")


def small():
    """x -> conv1 -> relu1 -> output, with a 3x2x3x3 weight constant."""
    m = Module("t")
    x = m.add_input(Value(f32(1, 2, 4, 4), "x"))
    w = m.add_constant(np.ones((3, 2, 3, 3), np.float32), "w")
    b = Builder(m)
    conv = b.create("qv.conv", [x, w], pads=[1, 1, 1, 1], meta={"onnx_node": "conv1"})
    relu = b.create("qv.relu", [conv.result], meta={"onnx_node": "relu1"})
    m.outputs = [relu.result]
    return m, conv, relu


def fused_module(body_ops=None):
    """x -> fused1{relu} -> output; `body_ops(body, a)` may replace the body contents."""
    m = Module("f")
    x = m.add_input(Value(f32(2, 3), "x"))
    body = Graph([Value(x.type, "a")])
    inner = Builder(body)
    relu = inner.create("qv.relu", [body.inputs[0]], meta={"onnx_node": "inner_relu"})
    body.outputs = [relu.result]
    fused = Builder(m).create("qv.fused", [x], result_types=[x.type], body=body, meta={"onnx_node": "fused1"})
    m.outputs = [fused.result]
    return m, fused, relu


def fails(m: Module, *patterns: str) -> str:
    with pytest.raises(VerificationError) as info:
        verify(m)
    message = str(info.value)
    assert "\n" not in message, message
    assert isinstance(info.value, QV2CError)
    for p in patterns:
        assert re.search(p, message), f"{p!r} not in {message!r}"
    return message


# -- valid modules ----------------------------------------------------------------
def test_valid_modules_pass():
    m, _, _ = small()
    verify(m)
    m.verify()
    verify(parse(str(m)))
    verify(fused_module()[0])


def test_quant_in_result_types_is_ignored_and_free_dtype_allowed():
    m, conv, relu = small()
    b = Builder(m)
    q8 = TensorType(relu.result.type.shape, "i8", QuantParams((0.1,), (0,)))
    q = b.op("qv.quantize", [relu.result], result_types=[q8], meta={"onnx_node": "q1"})
    # a float result annotated with quant params: quant is not compared with the rule
    relu.results[0].type = TensorType(relu.result.type.shape, "f32", QuantParams((1.0,), (0,)))
    m.outputs = [q]
    verify(m)


# -- SSA ----------------------------------------------------------------------------
def test_operand_not_defined():
    m, _, relu = small()
    relu.set_operand(0, Value(f32(1, 3, 4, 4), "ghost"))
    fails(m, RELU, r"operand 0 \(%ghost\) is not defined in this graph")


def test_use_before_definition():
    m, conv, relu = small()
    m.ops.reverse()
    fails(m, RELU, rf"operand 0 \(%\d\) is used before its definition by {CONV}", "order ops")


def test_cycle_is_a_use_before_definition():
    m, conv, relu = small()
    b = Builder(m)
    add = b.create("qv.add", [relu.result, relu.result], meta={"onnx_node": "add1"})
    relu2 = b.create("qv.relu", [add.result], meta={"onnx_node": "relu2"})
    add.set_operand(1, relu2.result)
    m.outputs = [relu2.result]
    fails(m, r"qv\.add \(ONNX node 'add1'\)", r"used before its definition by qv\.relu \(ONNX node 'relu2'\)",
          "cycle")


def test_body_cannot_read_outer_values():
    m, fused, relu = fused_module()
    relu.set_operand(0, m.inputs[0])
    fails(m, r"qv\.relu \(ONNX node 'inner_relu'\) in the body of qv\.fused \(ONNX node 'fused1'\)",
          r"operand 0 \(%x\) is defined outside the body", "pass it to the qv.fused op as an operand")


def test_value_defined_twice_by_two_ops():
    m, conv, relu = small()
    relu2 = Builder(m).create("qv.relu", [conv.result], meta={"onnx_node": "relu2"})
    relu2.results[0] = relu.result
    fails(m, r"qv\.relu \(ONNX node 'relu2'\)", r"result 0 \(%\d\) is already defined elsewhere")


def test_op_inserted_twice():
    m, conv, relu = small()
    m.ops.append(relu)
    fails(m, RELU, "appears twice in the module")


def test_input_and_constant_share_a_value():
    m, conv, relu = small()
    m.add_input(m.constants[0])
    fails(m, r"module @t", r"constant %w\S* is defined twice")


def test_result_owner_and_parent():
    m, conv, relu = small()
    relu.result.index = 3
    fails(m, RELU, "owner/index pointing elsewhere")
    relu.result.index = 0
    relu.parent = None
    fails(m, RELU, r"\.parent is not the graph that holds it")


def test_outputs_defined():
    m, _, _ = small()
    m.outputs = [Value(f32(1), "ghost")]
    fails(m, r"module @t: output 0 \(%ghost\) is not defined in the module")
    m, fused, relu = fused_module()
    fused.body.outputs = [Value(f32(2, 3), "lost")]
    fails(m, r"qv\.fused \(ONNX node 'fused1'\): body output 0 \(%lost\) is not defined in the body")


# -- use lists ----------------------------------------------------------------------
def test_operand_missing_from_use_list():
    m, conv, relu = small()
    relu._operands[0] = m.inputs[0]  # bypasses Op.set_operand
    fails(m, RELU, r"operand 0 \(%x\) does not list this op in its uses", "Op.set_operand")


def test_use_list_names_the_wrong_operand():
    m, conv, relu = small()
    m.inputs[0].uses.append((relu, 0))
    fails(m, RELU, r"%x lists operand 0 of this op as a use, but that operand is another value")


def test_use_list_entry_twice():
    m, conv, relu = small()
    conv.result.uses.append((relu, 0))
    fails(m, RELU, r"operand 0 is listed twice in the uses of %0")


def test_use_list_names_an_op_outside_the_module():
    m, conv, relu = small()
    stale = Builder(m).create("qv.relu", [conv.result], meta={"onnx_node": "stale"})
    m.ops.remove(stale)  # not Graph.erase, so conv's result still lists it
    fails(m, r"qv\.relu \(ONNX node 'stale'\): is not in the module", "Graph.erase")


# -- op names, operands, attributes, results ---------------------------------------------
def test_unknown_op_name():
    m, conv, relu = small()
    m.outputs = [Builder(m).op("qv.bogus", [relu.result], result_types=[relu.result.type],
                               meta={"onnx_node": "mystery"})]
    fails(m, r"qv\.bogus \(ONNX node 'mystery'\): unknown op name 'qv\.bogus'", "@op_def")


def test_fused_needs_a_body():
    m, fused, _ = fused_module()
    fused.body = None
    fails(m, r"qv\.fused \(ONNX node 'fused1'\): has no body")


def test_fused_body_inputs_match_operands():
    m, fused, _ = fused_module()
    fused.body.add_input(Value(f32(1), "extra"))
    fails(m, r"qv\.fused \(ONNX node 'fused1'\): has 1 operands but its body has 2 inputs")
    m, fused, _ = fused_module()
    fused.body.inputs[0].type = f32(3, 2)
    fails(m, r"qv\.fused \(ONNX node 'fused1'\): operand 0 has type f32\[2,3\] but body input 0 has type f32\[3,2\]")


def test_fused_results_match_body_outputs():
    m, fused, relu = fused_module()
    fused.results[0].type = TensorType((2, 3), "u8", QuantParams((0.1,), (0,)))
    fails(m, r"qv\.fused \(ONNX node 'fused1'\): result 0 has type u8\[2,3\]\{scale = 0\.1, zp = 0\} "
             r"but the body yields f32\[2,3\]")
    m, fused, relu = fused_module()
    fused.body.outputs = [relu.result, relu.result]
    fails(m, r"qv\.fused \(ONNX node 'fused1'\): has 1 results but its body yields 2 values")


def test_only_fused_has_a_body():
    m, conv, relu = small()
    relu.body = Graph()
    fails(m, RELU, "only qv.fused may have one")


@pytest.mark.parametrize("count", [0, 2])
def test_operand_count(count):
    m, conv, relu = small()
    x = m.inputs[0]
    bad = Op("qv.relu", [x] * count, [x.type], meta={"onnx_node": "r"})
    m.append(bad)
    fails(m, r"qv\.relu \(ONNX node 'r'\)", rf"has {count} operands but takes 1")


def test_operand_count_range():
    m, conv, relu = small()
    conv._operands.pop()  # keep the use list honest so the count check is what fires
    m.constants[0].uses.clear()
    fails(m, CONV, "has 1 operands but takes 2 to 3")


def test_missing_attribute():
    m, conv, relu = small()
    del conv.attrs["group"]
    fails(m, CONV, r"is missing attribute 'group' \(int\)", "Builder")


@pytest.mark.parametrize("key, value, expected", [
    ("group", True, "int"),
    ("group", 1.0, "int"),
    ("group", np.int64(1), "int"),
    ("strides", (1, 1), "list"),
])
def test_attribute_types(key, value, expected):
    m, conv, relu = small()
    conv.attrs[key] = value
    fails(m, CONV, rf"attribute {key} = .* is a \w+, not a {expected}", f"store a Python {expected}")


def test_float_attribute_rejects_int():
    m = Module()
    x = m.add_input(Value(f32(2, 3), "x"))
    w = m.add_constant(np.ones((3, 4), np.float32), "w")
    gemm = Builder(m).create("qv.gemm", [x, w], meta={"onnx_node": "fc"})
    m.outputs = [gemm.result]
    verify(m)
    gemm.attrs["alpha"] = 1
    fails(m, r"qv\.gemm \(ONNX node 'fc'\)", "attribute alpha = 1 is a int, not a float")


def test_unprintable_attribute():
    m, conv, relu = small()
    relu.attrs["table"] = np.zeros(3)
    fails(m, RELU, "attribute table = .* of type ndarray cannot be printed")


def test_result_count():
    m, conv, relu = small()
    x = m.inputs[0]
    m.append(Op("qv.relu", [x], [x.type, x.type], meta={"onnx_node": "r2"}))
    fails(m, r"qv\.relu \(ONNX node 'r2'\): has 2 results but the shape rule gives 1")


def test_result_shape_and_dtype():
    m, conv, relu = small()
    relu.results[0].type = f32(1, 3, 4, 5)
    fails(m, RELU, r"result 0 \(%1\) has type f32\[1,3,4,5\] but the shape rule gives f32\[1,3,4,4\]")
    relu.results[0].type = TensorType((1, 3, 4, 4), "f64")
    fails(m, RELU, r"has type f64\[1,3,4,4\] but the shape rule gives f32\[1,3,4,4\]")


def test_free_result_dtype_still_checks_shape():
    m, conv, relu = small()
    q = Builder(m).create("qv.quantize", [relu.result], meta={"onnx_node": "q1"},
                          result_types=[TensorType((1, 3, 2, 2), "i8", QuantParams((0.1,), (0,)))])
    m.outputs = [q.result]
    fails(m, r"qv\.quantize \(ONNX node 'q1'\)", r"the shape rule gives shape \[1, 3, 4, 4\]")


def test_shape_rule_failures_become_verification_errors():
    m, conv, relu = small()
    conv.attrs["group"] = 2
    fails(m, CONV, "shape rule fails: qv.conv: input channels 2 do not match")
    conv.attrs["group"] = 1
    conv.attrs["strides"] = [1]
    fails(m, CONV, "shape rule raised ValueError", "check the attribute values")


# -- types and constants ----------------------------------------------------------------
@pytest.mark.parametrize("data, problem", [
    (None, r"has no array in \.data"),
    (np.ones((3, 2, 3), np.float32), r"has data of shape \[3, 2, 3\] but type f32\[3,2,3,3\]"),
    (np.ones((3, 2, 3, 3), np.float64), r"has data of dtype float64 but type f32\[3,2,3,3\]"),
])
def test_constant_data_matches_type(data, problem):
    m, conv, relu = small()
    m.constants[0].data = data
    fails(m, rf"constant %w \(read by {CONV}\) {problem}")


def test_per_channel_quant_fits_the_type():
    m, conv, relu = small()
    w = m.constants[0]
    w.type = TensorType(w.type.shape, "f32", QuantParams((0.1, 0.2), (0, 0), axis=0))
    fails(m, rf"constant %w \(read by {CONV}\): type .* has 2 per-channel scales for 3 slices along axis 0")
    w.type = TensorType(w.type.shape, "f32", QuantParams((0.1,), (0,), axis=4))
    fails(m, "quantization axis 4 is out of range")


def test_result_quant_fits_the_type():
    m, conv, relu = small()
    relu.results[0].type = TensorType(relu.result.type.shape, "f32", QuantParams((0.1, 0.2), (0, 0), axis=1))
    fails(m, RELU, r"result 0 \(%1\): type .* has 2 per-channel scales for 3 slices along axis 1")


def test_verification_is_linear_enough_for_big_fan_out():
    """4000 readers of one value: a quadratic use-list check would take seconds."""
    m = Module()
    x = m.add_input(Value(f32(4), "x"))
    b = Builder(m)
    m.outputs = [b.op("qv.relu", [x]) for _ in range(4000)]
    start = time.perf_counter()
    verify(m)
    assert time.perf_counter() - start < 2.0
