"""A pad inside an int8 island stays int8, and a padded model compiles to no standalone pad.

- `realize-quant` keeps a constant-zero `qv.pad` between int8 ops on the integer codes
  (filled with the zero point), and a pad with another value in fp32;
- the `qv.pad` lowering (`codegen/standalone.py`) against the reference interpreter, bit for
  bit in every dtype, with the spatial-only case on the row-wise `pad_nhwc` kernel;
- a pad that `fold-pad` must keep (before a max pool of signed values) compiled for int8:
  one quantize for the whole model, the pad an int8 kernel, outputs equal to the interpreter's;
- the padded depthwise CNN of `benchmarks/models/make_padded_dwcnn.py` (an explicit Pad before
  every strided and depthwise conv), fp32 and int8: no pad op and no pad or copy kernel left
  in the program, outputs equal to the interpreter's (int8 bit for bit) and, in int8, to the
  model compiled without `fold-pad` (through the interpreter, bit for bit).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from padded_models import compile_unfolded, padded_dwcnn

import qv2c
from qv2c.backend import build_executable
from qv2c.ir import Builder, Module, QuantParams, TensorType, Value, interpret, parse
from qv2c.passes.realize_quant import QuantScheme, realize_quant


def kernel_names(exe) -> list[str]:
    """The function name of every kernel call of a program, in order."""
    return [k.kernel.split(":")[1] for k in exe.program.kernels]


def pad_calls(exe) -> list[str]:
    """Kernel calls that implement a `qv.pad` op (their label names the op)."""
    return [k.kernel for k in exe.program.kernels if "qv.pad" in k.label]


# -- realize-quant ------------------------------------------------------------------------------
PAD_BETWEEN_INT8 = """\
module @m {{
  input %x : f32[1,1,4,4]
  const %w1 : f32[1,1,1,1] = [0.5]
  const %w2 : f32[1,1,3,3] = [1.0, 0.5, -1.0, 2.0, -0.25, -2.0, 1.0, 0.75, -1.5]
  %c1 = qv.conv(%x, %w1) {conv} : f32[1,1,4,4] loc("conv1")
  %p = qv.pad(%c1) {{mode = "{mode}", pads = [0, 0, 1, 1, 0, 0, 1, 1], value = {value}}} : f32[1,1,6,6]
  %c2 = qv.conv(%p, %w2) {conv} : f32[1,1,4,4] loc("conv2")
  output %c2
}}
"""
# ranges with power-of-two u8 grids: x and p [-1, 127/128] -> 2^-7, zp 128; c1 the same
RANGES = {"x": (-1.0, 0.9921875), "c1": (-1.0, 0.9921875), "p": (-1.0, 0.9921875), "c2": (-2.0, 1.984375)}


def _realized_ops(value: str, mode: str = "constant") -> list[tuple[str, str]]:
    text = PAD_BETWEEN_INT8.format(value=value, mode=mode, conv="{dilations = [1, 1], group = 1, pads = [0, 0, 0, 0], strides = [1, 1]}")
    m = realize_quant(parse(text), {"conv1", "conv2"}, RANGES, QuantScheme()).module
    m.verify()
    return [(op.name, op.result.type.dtype) for op in m.ops]


def test_zero_pad_between_int8_layers_runs_on_the_codes():
    assert _realized_ops("0.0") == [("qv.quantize", "u8"), ("qv.qconv", "u8"), ("qv.pad", "u8"), ("qv.qconv", "u8"),
                                    ("qv.dequantize", "f32")]


@pytest.mark.parametrize("mode", ["reflect", "edge"])
def test_copying_pad_between_int8_layers_runs_on_the_codes(mode):
    assert _realized_ops("0.0", mode) == [("qv.quantize", "u8"), ("qv.qconv", "u8"), ("qv.pad", "u8"),
                                          ("qv.qconv", "u8"), ("qv.dequantize", "f32")]


@pytest.mark.parametrize(("value", "reaches"), [("0.0", True), ("0.3", False)])
def test_referred_sensitivity_sees_the_grid_through_an_int8_pad(value, reaches):
    """conv1's rounding stays when conv2 reads it through an int8 pad (the same grid), not when the pad
    runs fp32 between a dequantize and a quantize of its own."""
    from qv2c.passes.sensitivity.referred import _reaches_int8_layer

    text = PAD_BETWEEN_INT8.format(value=value, mode="constant",
                                   conv="{dilations = [1, 1], group = 1, pads = [0, 0, 0, 0], strides = [1, 1]}")
    realized = realize_quant(parse(text), {"conv1", "conv2"}, RANGES, QuantScheme())
    assert _reaches_int8_layer(realized.layer_outputs["conv1"][1]) is reaches


def test_nonzero_pad_between_int8_layers_stays_fp32():
    """0.3 is not on the grid (2^-7): the int8 pad would round it."""
    assert _realized_ops("0.3") == [("qv.quantize", "u8"), ("qv.qconv", "u8"), ("qv.dequantize", "f32"),
                                    ("qv.pad", "f32"), ("qv.quantize", "u8"), ("qv.qconv", "u8"),
                                    ("qv.dequantize", "f32")]


# -- the pad kernel against the reference --------------------------------------------------------
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6)),
       spatial=st.lists(st.integers(0, 3), min_size=4, max_size=4), other=st.booleans(),
       dtype=st.sampled_from(["f32", "u8", "i8"]), value=st.sampled_from([0.0, 0.75]), seed=st.integers(0, 2**31))
def test_pad_kernel_matches_the_reference(shape, spatial, other, dtype, value, seed):
    """Spatial-only pads take `pad_nhwc` (filled with `value`'s code: the zero point for 0);
    with a channel pad (`other`) the fill-and-copy path runs. Bit for bit either way."""
    rng = np.random.default_rng(seed)
    zp = int(rng.integers(0, 256)) if dtype == "u8" else int(rng.integers(-128, 128))
    t = TensorType(shape, dtype) if dtype == "f32" else TensorType(shape, dtype, QuantParams((0.125,), (zp,)))
    t_, left, b, r = spatial
    pads = [0, int(other), t_, left, 0, 0, b, r]
    m = Module("pad")
    x = m.add_input(Value(t, "x"))
    m.outputs = [Builder(m).op("qv.pad", [x], pads=pads, value=value, result_names=["y"])]
    if dtype == "f32":
        feed = rng.standard_normal(shape).astype(np.float32)
    else:
        info = np.iinfo(t.numpy_dtype)
        feed = rng.integers(info.min, info.max + 1, shape).astype(t.numpy_dtype)
    exe = build_executable(m)
    got, want = exe.run({"x": feed})["y"], interpret(m, {"x": feed})["y"]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert ("pad_nhwc" in kernel_names(exe)) == (not other)


# -- a pad that stays, compiled int8 ----------------------------------------------------------------
def _signed_maxpool_model():
    """x -> conv (no activation: signed output) -> Pad -> MaxPool 3x3/2 -> conv -> y. Zeros beat
    negative values in the max, so the pad cannot fold into the pool."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((2, 4, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "pads")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Pad", ["c1", "pads"], ["p"], mode="constant"),
             helper.make_node("MaxPool", ["p"], ["m"], kernel_shape=[3, 3], strides=[2, 2]),
             helper.make_node("Conv", ["m", "w2"], ["y"], name="conv2")]
    graph = helper.make_graph(nodes, "signed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_a_pad_that_stays_runs_int8_inside_the_island():
    rng = np.random.default_rng(1)
    model = qv2c.compile(_signed_maxpool_model(), rng.standard_normal((4, 3, 16, 16)).astype(np.float32),
                         precision="int8")
    assert "qv.pad" in model.ir and model.ir.count("qv.quantize(") == 1
    exe = model.executable
    assert [k.split(":")[1] for k in pad_calls(exe)] == ["pad_nhwc"]
    assert kernel_names(exe).count("quantize_flat") == 1 and "dequantize_flat" not in kernel_names(exe)
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(exe.run({"x": x})["y"], interpret(model.module, {"x": x})["y"])


# -- the padded depthwise CNN ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def dwcnn_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "padded_dwcnn.onnx"
    path.write_bytes(padded_dwcnn(96).SerializeToString())
    return path


def test_the_model_has_a_pad_before_every_strided_and_depthwise_conv(dwcnn_file):
    module = qv2c.import_onnx(dwcnn_file)
    convs = [op for op in module.ops if op.name == "qv.conv"]
    padded = [op for op in convs if op.operands[0].owner is not None and op.operands[0].owner.name == "qv.pad"]
    needs_pad = [op for op in convs if op.attrs["group"] > 1 or op.attrs["strides"] != [1, 1]]
    assert len(convs) == 11 and padded == needs_pad and len(padded) == 6
    # TF "same": stride 2 on an even input pads one at the end only
    assert {tuple(op.operands[0].owner.attrs["pads"]) for op in padded} == {(0, 0, 0, 0, 0, 0, 1, 1),
                                                                             (0, 0, 1, 1, 0, 0, 1, 1)}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_padded_model_compiles_to_no_standalone_pad(dwcnn_file, precision):
    rng = np.random.default_rng(0)
    calibration = rng.uniform(0, 1, (4, 3, 96, 96)).astype(np.float32)
    model = qv2c.compile(dwcnn_file, None if precision == "fp32" else calibration, precision=precision)
    assert "qv.pad" not in model.ir
    exe = model.executable
    names = kernel_names(exe)
    assert not pad_calls(exe) and not {"copy_nd", "fill_flat", "pad_nhwc", "pad_gather"} & set(names), names
    x = rng.uniform(0, 1, (1, 3, 96, 96)).astype(np.float32)
    got, want = exe.run({"input": x})["logits"], interpret(model.module, {"input": x})["logits"]
    if precision == "fp32":
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * float(np.abs(want).max()))
        return
    # one quantize (the input) and one dequantize (the logits): the island is not cut
    assert names.count("quantize_flat") == 1 and "dequantize_flat" not in names
    np.testing.assert_array_equal(got, want)
    unfolded = compile_unfolded(dwcnn_file, calibration, precision=precision, backend="reference")
    assert unfolded.ir.count("qv.pad(") == 6
    np.testing.assert_array_equal(unfolded(x), want)
