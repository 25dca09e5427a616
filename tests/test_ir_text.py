"""Text IR: golden printer output, parser round trips (golden and Hypothesis) and parse errors."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from qv2c.errors import ParseError
from qv2c.ir import DTYPES, Builder, Graph, Module, QuantParams, TensorType, Value, parse
from qv2c.ir.parser import parse_module


def f32(*shape: int) -> TensorType:
    return TensorType(shape, "f32")


def round_trip(text: str) -> Module:
    """Parse `text` and check it prints back unchanged."""
    m = parse(text)
    assert str(m) == text
    return m


def assert_same_constants(a: Module, b: Module) -> None:
    assert len(a.constants) == len(b.constants)
    for x, y in zip(a.constants, b.constants):
        assert x.type == y.type
        assert (x.data.dtype, x.data.shape) == (y.data.dtype, y.data.shape)
        assert x.data.tobytes() == y.data.tobytes(), f"constant {x.name} changed bits"


# -- golden text ------------------------------------------------------------------
TINY = """\
module @tiny {
  input %x : f32[1,3,4,4]
  const %w : f32[2,3,1,1] = [0.5, -1.0, 2.0, 0.0, -0.0, 9.999999350456404e-39]
  const %b : f32[2] = [0.25, -inf]
  const %t : i8[20] = b64"AAECAwQFBgcICQoLDA0ODxAREhM="
  %y = qv.conv(%x, %w, %b) {dilations = [1, 1], group = 1, pads = [0, 0, 0, 0], strides = [1, 1]} : f32[1,2,4,4] loc("conv1")
  %0 = qv.relu(%y) : f32[1,2,4,4] loc("relu/1")
  %1 = qv.quantize(%0) : u8[1,2,4,4]{scale = 0.05, zp = 0}
  output %1
}
"""


def build_tiny() -> Module:
    m = Module("tiny")
    x = m.add_input(Value(f32(1, 3, 4, 4), "x"))
    w = m.add_constant(np.array([0.5, -1.0, 2.0, 0.0, -0.0, 1e-38], np.float32).reshape(2, 3, 1, 1), "w")
    b = m.add_constant(np.array([0.25, -np.inf], np.float32), "b")
    m.add_constant(np.arange(20, dtype=np.int8), "t")
    bld = Builder(m)
    y = bld.op("qv.conv", [x, w, b], meta={"onnx_node": "conv1"}, result_names=["y"])
    r = bld.op("qv.relu", [y], meta={"onnx_node": "relu/1"})
    q = bld.op("qv.quantize", [r], result_types=[TensorType(r.type.shape, "u8", QuantParams((0.05,), (0,)))])
    m.outputs = [q]
    return m


def test_golden_print_and_parse():
    m = build_tiny()
    m.verify()
    assert str(m) == TINY
    m2 = round_trip(TINY)
    m2.verify()
    assert_same_constants(m, m2)


def test_parsed_module_structure():
    m = parse(TINY)
    assert m.name == "tiny"
    assert [v.name for v in m.inputs] == ["x"]
    assert [c.name for c in m.constants] == ["w", "b", "t"]
    conv, relu, quant = m.ops
    assert conv.name == "qv.conv" and conv.operands == (m.inputs[0], m.constants[0], m.constants[1])
    assert conv.attrs == {"dilations": [1, 1], "group": 1, "pads": [0, 0, 0, 0], "strides": [1, 1]}
    assert conv.meta == {"onnx_node": "conv1"} and quant.meta == {}
    assert relu.result.name == "0" and relu.operands[0] is conv.result
    assert conv.result.uses == [(relu, 0)]
    assert quant.result.type == TensorType((1, 2, 4, 4), "u8", QuantParams((0.05,), (0,)))
    assert m.outputs == [quant.result]
    assert all(op.parent is m for op in m.ops)
    assert m.constants[2].data.dtype == np.int8 and m.constants[2].data.tolist() == list(range(20))
    assert m.constants[2].data.flags.writeable


PER_AXIS = """\
module @main {
  input %x : u8[1,2,3,3]{scale = 0.1, zp = 128}
  const %w : i8[2,2,1,1]{axis = 0, scale = [0.5, 0.25], zp = [0, 0]} = [1, -2, 127, -128]
  const %s : f32[] = [3.5]
  const %e : f32[0,3] = []
  %0 = qv.dequantize(%x) : f32[1,2,3,3]
  %1 = qv.dequantize(%w) : f32[2,2,1,1]
  %2 = qv.conv(%0, %1) {dilations = [1, 1], group = 1, pads = [0, 0, 0, 0], strides = [1, 1]} : f32[1,2,3,3]
  %3 = qv.mul(%2, %s) : f32[1,2,3,3]
  output %3
}
"""


def test_quantized_types_per_tensor_and_per_axis():
    m = Module()
    x = m.add_input(Value(TensorType((1, 2, 3, 3), "u8", QuantParams((0.1,), (128,))), "x"))
    wq = TensorType((2, 2, 1, 1), "i8", QuantParams((0.5, 0.25), (0, 0), axis=0))
    w = m.add_constant(np.array([1, -2, 127, -128], np.int8).reshape(2, 2, 1, 1), "w", type=wq)
    s = m.add_constant(np.array(3.5, np.float32), "s")
    m.add_constant(np.zeros((0, 3), np.float32), "e")
    b = Builder(m)
    y = b.op("qv.conv", [b.op("qv.dequantize", [x]), b.op("qv.dequantize", [w])])
    m.outputs = [b.op("qv.mul", [y, s])]
    m.verify()
    assert str(m) == PER_AXIS
    m2 = round_trip(PER_AXIS)
    m2.verify()
    assert m2.constants[0].type.quant == QuantParams((0.5, 0.25), (0, 0), 0)
    assert m2.inputs[0].type.quant == QuantParams((0.1,), (128,))
    assert m2.constants[1].data.shape == () and m2.constants[2].data.shape == (0, 3)
    assert_same_constants(m, m2)


FUSED = """\
module @main {
  input %x : f32[1,4,2,2]
  const %bias : f32[1,4,1,1] = [1.0, 2.0, 3.0, 4.0]
  %y = qv.fused(%x, %bias) {kind = "add_relu"} : u8[1,4,2,2]{scale = 0.02, zp = 3} loc("block1") {
    ^(%a : f32[1,4,2,2], %b : f32[1,4,1,1]):
    %s = qv.add(%a, %b) : f32[1,4,2,2] loc("add")
    %r = qv.relu(%s) : f32[1,4,2,2]
    %q = qv.quantize(%r) : u8[1,4,2,2]{scale = 0.02, zp = 3}
    yield %q
  }
  output %y
}
"""


def test_fused_body_golden():
    m = Module()
    x = m.add_input(Value(f32(1, 4, 2, 2), "x"))
    bias = m.add_constant(np.arange(1, 5, dtype=np.float32).reshape(1, 4, 1, 1), "bias")
    body = Graph([Value(x.type, "a"), Value(bias.type, "b")])
    bb = Builder(body)
    s = bb.op("qv.add", body.inputs, meta={"onnx_node": "add"}, result_names=["s"])
    r = bb.op("qv.relu", [s], result_names=["r"])
    qt = TensorType(r.type.shape, "u8", QuantParams((0.02,), (3,)))
    body.outputs = [bb.op("qv.quantize", [r], result_types=[qt], result_names=["q"])]
    fused = Builder(m).create("qv.fused", [x, bias], result_types=[qt], body=body, meta={"onnx_node": "block1"},
                              result_names=["y"], kind="add_relu")
    m.outputs = [fused.result]
    m.verify()
    assert str(m) == FUSED
    m2 = round_trip(FUSED)
    m2.verify()
    f = m2.ops[0]
    assert f.attrs == {"kind": "add_relu"} and f.meta == {"onnx_node": "block1"}
    assert [op.name for op in f.body.ops] == ["qv.add", "qv.relu", "qv.quantize"]
    assert f.body.inputs[0].uses == [(f.body.ops[0], 0)]
    assert f.body.outputs == [f.body.ops[2].result]
    assert all(op.parent is f.body for op in f.body.ops)


GENERIC = """\
module @main {
  input %x : f32[2,3]
  %a, %b = qv.future_split(%x) {axis = -1, mode = "fast \\"v2\\" \\u00e9", nested = [[1, 2], [], [-0.0, -inf, nan]], ratio = -1.5e-07} : f32[2,1], f32[2,2]
  qv.debug_print(%a, %b) :\x20
  %c = qv.relu(%b) : f32[7]
  output %c, %x
}
"""


def test_generic_ops_and_text_result_types():
    m = round_trip(GENERIC)
    split, debug, relu = m.ops
    assert split.name == "qv.future_split" and [r.name for r in split.results] == ["a", "b"]
    assert split.attrs["mode"] == 'fast "v2" \u00e9' and split.attrs["axis"] == -1
    nested = split.attrs["nested"]
    assert nested[0] == [1, 2] and nested[1] == [] and isinstance(split.attrs["ratio"], float)
    assert math.copysign(1.0, nested[2][0]) == -1.0 and nested[2][1] == -math.inf and math.isnan(nested[2][2])
    assert debug.results == [] and debug.operands == tuple(split.results)
    # a catalogued op takes its result type from the text, even when inference disagrees
    assert relu.result.type == f32(7)


def test_degenerate_forms_round_trip():
    """No inputs or outputs, an op without operands, a body without inputs or results."""
    empty = "module @main {\n  output\x20\n}\n"
    assert str(Module("")) == empty
    round_trip(empty)
    m = round_trip("module @main {\n  qv.fused() :  {\n    ^():\n    yield\x20\n  }\n"
                   "  %0 = qv.gen() : f32[2]\n  output %0\n}\n")
    fused, gen = m.ops
    assert fused.body.inputs == [] and fused.body.outputs == [] and fused.results == []
    assert gen.operands == () and m.outputs == [gen.result]


def test_comments_blank_lines_and_crlf():
    text = TINY.replace("  output", "\n  // a comment\n  output").replace("\n", "\r\n")
    m = parse("// header\n" + text)
    assert str(m) == TINY


# -- Hypothesis round trips --------------------------------------------------------
NAMES = st.one_of(st.none(), st.sampled_from(["x", "y", "conv1", "a/b", "a_b", "0", "1", "out:0", "", "w.1"]))
NODES = st.one_of(st.none(), st.text(max_size=6))
ATTR_FLOATS = st.one_of(st.floats(), st.sampled_from([-0.0, 1e-38, math.inf, -math.inf, math.nan]))
SPECIALS = [0.0, -0.0, 1e-38, -1e-38, 1e-45, 3.4028235e38, math.inf, -math.inf, math.nan]


def float_arrays(dtype, shape) -> st.SearchStrategy[np.ndarray]:
    """Floats including specials, or raw bit patterns (every NaN payload and sign)."""
    dtype = np.dtype(dtype)
    specials = np.array(SPECIALS, dtype).tolist()
    values = arrays(dtype, shape, elements=st.one_of(st.floats(width=dtype.itemsize * 8), st.sampled_from(specials)))
    raw = arrays(np.dtype(f"u{dtype.itemsize}"), shape).map(lambda a: a.view(dtype))
    return st.one_of(values, raw)


@st.composite
def constant_arrays(draw) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(sorted(DTYPES.values(), key=str))))
    shape = draw(array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    if dtype.kind == "f":
        return draw(float_arrays(dtype, shape))
    return draw(arrays(dtype, shape))


def meta(draw) -> dict:
    node = draw(NODES)
    return {"onnx_node": node} if node else {}


def window(draw, x: TensorType, dilated: bool):
    """Random pads/strides/dilations and a kernel that fits the padded input."""
    pads = [draw(st.integers(0, 1)) for _ in range(4)]
    dil = [draw(st.integers(1, 2)) if dilated else 1 for _ in range(2)]
    kernel = [draw(st.integers(1, min(3, (x.shape[2 + i] + pads[i] + pads[i + 2] - 1) // dil[i] + 1)))
              for i in range(2)]
    return kernel, {"strides": [draw(st.integers(1, 2)) for _ in range(2)], "pads": pads, "dilations": dil}


def step_unary(draw, m, b, x):
    name = draw(st.sampled_from(["qv.relu", "qv.sigmoid", "qv.global_avgpool"]))
    return b.op(name, [x], meta=meta(draw), result_names=[draw(NAMES)])


def step_attr_only(draw, m, b, x):
    kind = draw(st.sampled_from(["clip", "softmax", "lrn", "transpose", "pad"]))
    if kind == "clip":
        attrs = {"min": draw(ATTR_FLOATS), "max": draw(ATTR_FLOATS)}
    elif kind == "softmax":
        attrs = {"axis": draw(st.integers(-4, 3))}
    elif kind == "lrn":
        attrs = {"size": draw(st.sampled_from([1, 3, 5])), "alpha": draw(ATTR_FLOATS), "beta": draw(ATTR_FLOATS),
                 "bias": draw(ATTR_FLOATS)}
    elif kind == "transpose":
        attrs = {"perm": draw(st.permutations(range(4)))}
    else:
        attrs = {"pads": [draw(st.integers(0, 2)) for _ in range(8)], "value": draw(ATTR_FLOATS),
                 "mode": draw(st.sampled_from(["constant", "reflect", "edge"]))}
    return b.op(f"qv.{kind}", [x], meta=meta(draw), result_names=[draw(NAMES)], **attrs)


def step_binary(draw, m, b, x):
    shape = tuple(d if draw(st.booleans()) else 1 for d in x.type.shape)[draw(st.integers(0, 4)):]
    c = m.add_constant(draw(float_arrays(np.float32, shape)), draw(NAMES))
    operands = [x, c] if draw(st.booleans()) else [c, x]
    return b.op(draw(st.sampled_from(["qv.add", "qv.sub", "qv.mul", "qv.div"])), operands, meta=meta(draw))


def step_conv(draw, m, b, x):
    n, c, h, w = x.type.shape
    group = draw(st.sampled_from([1, c]))
    out = group * draw(st.integers(1, 2)) if group > 1 else draw(st.integers(1, 3))
    kernel, attrs = window(draw, x.type, dilated=True)
    weight = m.add_constant(draw(float_arrays(np.float32, (out, c // group, *kernel))), draw(NAMES))
    operands = [x, weight]
    if draw(st.booleans()):
        operands.append(m.add_constant(draw(float_arrays(np.float32, (out,))), draw(NAMES)))
    return b.op("qv.conv", operands, meta=meta(draw), group=group, **attrs)


def step_pool(draw, m, b, x):
    kernel, attrs = window(draw, x.type, dilated=False)
    attrs["ceil_mode"] = draw(st.integers(0, 1))
    if draw(st.booleans()):
        return b.op("qv.maxpool", [x], meta=meta(draw), kernel=kernel, **attrs)
    del attrs["dilations"]
    return b.op("qv.avgpool", [x], kernel=kernel, count_include_pad=draw(st.integers(0, 1)), **attrs)


def step_batchnorm(draw, m, b, x):
    params = [m.add_constant(draw(float_arrays(np.float32, (x.type.shape[1],))), draw(NAMES)) for _ in range(4)]
    return b.op("qv.batchnorm", [x, *params], epsilon=draw(ATTR_FLOATS), meta=meta(draw))


def step_quant(draw, m, b, x):
    dtype = draw(st.sampled_from(["u8", "i8"]))
    q = QuantParams((draw(st.floats(1e-6, 10.0)),), (draw(st.integers(-128, 127) if dtype == "i8" else
                                                         st.integers(0, 255)),))
    y = b.op("qv.quantize", [x], result_types=[TensorType(x.type.shape, dtype, q)], result_names=[draw(NAMES)])
    return b.op("qv.dequantize", [y], meta=meta(draw))


def step_reshape_concat(draw, m, b, x):
    n, c, h, w = x.type.shape
    if draw(st.booleans()):
        return b.op("qv.reshape", [x], shape=draw(st.sampled_from([[n, c * h * w, 1, 1], [n, c, h * w, 1]])))
    return b.op("qv.concat", [x] * draw(st.integers(1, 3)), axis=draw(st.integers(-4, 3)), meta=meta(draw))


def step_matrix(draw, m, b, x):
    n, c, h, w = x.type.shape
    k, out = c * h * w, draw(st.integers(1, 3))
    a = b.op("qv.reshape", [x], shape=[n, k])
    if draw(st.booleans()):
        y = b.op("qv.matmul", [a, m.add_constant(draw(float_arrays(np.float32, (k, out))))])
    else:
        trans_a, trans_b = draw(st.integers(0, 1)), draw(st.integers(0, 1))
        if trans_a:
            a = b.op("qv.transpose", [a], perm=[1, 0])
        weight = m.add_constant(draw(float_arrays(np.float32, (out, k) if trans_b else (k, out))), draw(NAMES))
        operands = [a, weight]
        if draw(st.booleans()):
            operands.append(m.add_constant(draw(float_arrays(np.float32, (out,)))))
        y = b.op("qv.gemm", operands, alpha=draw(ATTR_FLOATS), beta=draw(ATTR_FLOATS), trans_a=trans_a,
                 trans_b=trans_b, meta=meta(draw))
    return b.op("qv.reshape", [y], shape=[n, out, 1, 1])


def step_fused(draw, m, b, x):
    body = Graph([Value(x.type, draw(NAMES))])
    inner = Builder(body)
    v = body.inputs[0]
    for _ in range(draw(st.integers(0, 3))):
        v = step_unary(draw, m, inner, v) if draw(st.booleans()) else step_quant(draw, m, inner, v)
    body.outputs = [v]
    return b.create("qv.fused", [x], result_types=[v.type], body=body, meta=meta(draw),
                    result_names=[draw(NAMES)], kind=draw(st.text(max_size=4))).result


STEPS = [step_unary, step_attr_only, step_binary, step_conv, step_pool, step_batchnorm, step_quant,
         step_reshape_concat, step_matrix, step_fused]


@st.composite
def modules(draw) -> Module:
    """A verified random module: a chain of catalogued ops (and fused groups) on a 4-D
    input, random constants of every dtype, random and clashing value names."""
    m = Module(draw(st.sampled_from(["main", "tiny", "net.v2", "a-b", ""])))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    x = m.add_input(Value(f32(*shape), draw(NAMES)))
    b = Builder(m)
    values = [x]
    for _ in range(draw(st.integers(0, 5))):
        values.append(draw(st.sampled_from(STEPS))(draw, m, b, values[-1]))
    for _ in range(draw(st.integers(0, 3))):
        data = draw(constant_arrays())
        t = None
        if data.dtype == np.int8 and data.ndim and data.shape[0] and draw(st.booleans()):
            scales = tuple(draw(st.floats(1e-6, 1.0)) for _ in range(data.shape[0]))
            t = TensorType(data.shape, "i8", QuantParams(scales, (0,) * len(scales), axis=0))
        values.append(m.add_constant(data, draw(NAMES), type=t))
    m.outputs = [values[-1]] + draw(st.lists(st.sampled_from(values), max_size=2))
    m.verify()
    return m


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(modules())
def test_random_modules_round_trip(m):
    text = str(m)
    m2 = parse(text)
    assert str(m2) == text
    m2.verify()
    assert_same_constants(m, m2)
    assert [op.name for op in m2.walk()] == [op.name for op in m.walk()]


ATTRS = st.recursive(st.one_of(st.integers(-2**70, 2**70), ATTR_FLOATS, st.text(max_size=8)),
                     lambda inner: st.lists(inner, max_size=3), max_leaves=8)


def same_attr(a, b) -> bool:
    """Equal as the text form sees it: floats by repr (so -0.0 differs from 0.0, all NaNs agree)."""
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same_attr(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return isinstance(b, float) and repr(a) == repr(b)
    return type(a) is type(b) and a == b


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True), ATTRS, max_size=4))
def test_attribute_values_round_trip(attrs):
    m = Module()
    x = m.add_input(Value(f32(2), "x"))
    m.outputs = [Builder(m).op("qv.future", [x], result_types=[f32(2)], **attrs)]
    text = str(m)
    m2 = round_trip(text)
    assert m2.ops[0].attrs.keys() == attrs.keys()
    assert all(same_attr(attrs[k], m2.ops[0].attrs[k]) for k in attrs), text


@settings(max_examples=100, deadline=None)
@given(constant_arrays())
def test_constants_bit_identical(data):
    m = Module()
    m.outputs = [m.add_constant(data, "c")]
    m2 = round_trip(str(m))
    assert_same_constants(m, m2)


def test_parse_is_fast_on_big_modules():
    m = Module("big")
    x = m.add_input(Value(f32(1, 8, 4, 4), "x"))
    m.add_constant(np.random.default_rng(0).standard_normal(4_000_000).astype(np.float32), "w")
    b = Builder(m)
    v = x
    for i in range(1000):
        v = b.op("qv.relu", [v], meta={"onnx_node": f"relu{i}"})
    m.outputs = [v]
    text = str(m)
    assert len(text) > 20_000_000
    start = time.perf_counter()
    m2 = parse_module(text)
    assert time.perf_counter() - start < 10.0, "parsing 1000 ops and 21 MB of base64 should take well under a second"
    assert len(m2.ops) == 1000
    assert_same_constants(m, m2)


# -- parse errors -----------------------------------------------------------------
GOOD = """\
module @m {
  input %x : f32[2]
  const %c : f32[2] = [1.0, 2.0]
  %y = qv.add(%x, %c) : f32[2] loc("add1")
  output %y
}
"""
BODY = """\
module @m {
  input %x : f32[2]
  %y = qv.fused(%x) : f32[2] {
    ^(%a : f32[2]):
    %r = qv.relu(%a) : f32[2]
    yield %r
  }
  output %y
}
"""


def test_good_snippets_parse():
    round_trip(GOOD).verify()
    round_trip(BODY).verify()


@pytest.mark.parametrize("text, where, fragment", [
    (GOOD.replace("%x, %c", "%x7, %c"), "line 4, column 15", "undefined value %x7"),
    (GOOD.replace("f32[2]\n  const", "f31[2]\n  const"), "line 2, column 14", "unknown dtype 'f31'"),
    (GOOD.replace("%c : f32[2] =", "%x : f32[2] ="), "line 3", "value %x is defined twice (first at line 2)"),
    (GOOD.replace("%y = qv.add(%x, %c)", "%y = qv.add(%y, %c)"), "line 4", "undefined value %y"),
    (GOOD.replace("%y = qv.add", "%x = qv.add"), "line 4", "value %x is defined twice"),
    (GOOD.replace("[1.0, 2.0]", 'b64"AAAA!AAA"'), "line 3, column 23", "bad base64 payload for constant %c"),
    (GOOD.replace("[1.0, 2.0]", 'b64"AAAAAAA"'), "line 3", "bad base64 payload"),
    (GOOD.replace("[1.0, 2.0]", 'b64"AAAAAA=="'), "line 3", "has 4 bytes; its type f32[2] needs 8"),
    (GOOD.replace("[1.0, 2.0]", "[1.0, 2.0, 3.0]"), "line 3", "needs 2 values, found 3"),
    (GOOD.replace("f32[2] = [1.0, 2.0]", "i8[2] = [1, 2.5]"), "line 3", "expected an integer (i8 constant)"),
    (GOOD.replace("f32[2] = [1.0, 2.0]", "u8[2] = [1, 256]"), "line 3", "value 256 of constant %c is out of range"),
    (GOOD.replace("f32[2] = [1.0, 2.0]", "bool[2] = [1, 2]"), "line 3", "may hold only 0 and 1"),
    (GOOD.replace("f32[2] = [1.0, 2.0]", "f32[2] = 7"), "line 3", "expected constant data"),
    (GOOD.replace("f32[2]\n  const", "f32[-2]\n  const"), "line 2", "non-negative dimension"),
    (GOOD.replace("f32[2]\n  const", "f32[2.0]\n  const"), "line 2", "expected a dimension"),
    (GOOD[:-2], "line 6", "expected '}' closing module @m (opened at line 1), found end of input"),
    (GOOD + "junk\n", "line 7, column 1", "expected end of input after the module's closing '}'"),
    (GOOD.replace("  output %y\n", ""), "line 5", "expected 'output %...' before the end of module @m"),
    (GOOD.replace("module @m", "modul @m"), "line 1, column 1", "expected 'module @name {'"),
    (GOOD.replace("loc(\"add1\")", "loc(\"add1)"), "line 4", "unterminated string"),
    (GOOD.replace("loc(\"add1\")", "loc(\"a\\q\")"), "line 4", "bad string literal"),
    (GOOD.replace("qv.add(%x, %c)", "qv.add(%x; %c)"), "line 4, column 17", "unexpected character ';'"),
    (GOOD.replace("qv.add(%x, %c)", "qv.add(%x %c)"), "line 4, column 18", "expected ',' or ')' after the operands"),
    (GOOD.replace(": f32[2] loc", ": f32[2], f32[2] loc"), "line 4", "names 1 results but gives 2 types"),
    (GOOD.replace("%x, %c)", "%x, %c) {k = }"), "line 4", "expected an attribute value"),
    (GOOD.replace("%x, %c)", "%x, %c) {k = 1, k = 2}"), "line 4", "attribute 'k' is given twice"),
    (GOOD.replace("  input %x : f32[2]", "  input %x : u8[2]{scale = [0.1], zp = 0}"), "line 2",
     "expected a scale"),
    (GOOD.replace("  input %x : f32[2]", "  input %x : u8[2]{axis = 0, scale = [0.1, 0.2], zp = [0]}"), "line 2",
     "bad quantization parameters"),
    (GOOD.replace("f32[2] loc", "f32[2] oops"), "line 4", "expected end of line, found 'oops'"),
    (BODY.replace("    yield %r\n", ""), "line 6", "expected 'yield %...' ending the body of qv.fused (opened at line 3)"),
    (BODY.replace("    yield %r\n  }\n", "    yield %r\n"), "line 7",
     "expected '}' closing the body of qv.fused (opened at line 3), found 'output'"),
    (BODY.replace("qv.relu(%a)", "qv.relu(%x)"), "line 5",
     "value %x (defined at line 2) is not visible here: a body sees only its own inputs"),
    (BODY.replace("output %y", "output %r"), "line 8", "value %r (defined at line 5) is not visible here"),
    (BODY.replace("    ^(%a : f32[2]):\n", ""), "line 4", "expected '^(' listing the body inputs of qv.fused"),
])
def test_parse_errors(text, where, fragment):
    with pytest.raises(ParseError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(where + ",") or message.startswith(where + ":"), message
    assert fragment in message, message
