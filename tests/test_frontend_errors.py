"""ONNX frontend failures: each raises a one-line `QV2CError` subclass naming the file, node and cause."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx_text import model, rand

import qv2c
from qv2c.errors import ConfigError, ModelLoadError, ShapeError, UnsupportedOpError

RELU = """g (float[2,3] x) => (float y) {
    y = Relu (x)
}"""


def raises(exc, m, *patterns, **kwargs):
    """Import `m`, expect `exc` with a one-line message containing every pattern."""
    with pytest.raises(exc) as info:
        qv2c.import_onnx(m, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    for p in patterns:
        assert p in msg, f"{p!r} not in {msg!r}"
    return msg


# -- the file -----------------------------------------------------------------------


def test_missing_file(tmp_path):
    raises(ModelLoadError, tmp_path / "nope.onnx", "nope.onnx", "does not exist")


def test_truncated_file(tmp_path):
    m = model("""g (float[1,3,8,8] x) => (float y) {
        y = Conv <pads=[1,1,1,1]> (x, W)
    }""", W=rand(4, 3, 3, 3))
    data = m.SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    raises(ModelLoadError, path, "cut.onnx")


def test_garbage_bytes_and_empty_file(tmp_path):
    raises(ModelLoadError, b"\xff\xff\xff not a model", "not a valid ONNX protobuf")
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    raises(ModelLoadError, path, "empty.onnx", "empty")


def test_wrong_argument_type():
    raises(ModelLoadError, 42, "int")


def test_empty_graph():
    m = model(RELU)
    del m.graph.node[:]
    raises(ModelLoadError, m, "empty graph")


def test_unsupported_opset():
    raises(ModelLoadError, model(RELU, opset=5), "opset 5")


def test_invalid_batch_size():
    for bad in (0, -2, 1.5, True):
        raises(ConfigError, model(RELU), "batch_size", batch_size=bad)


# -- graph structure ----------------------------------------------------------------


def test_unknown_op_lists_what_is_supported():
    m = model("""g (float[2,3] x) => (float y) {
        y = Frobnicate (x)
    }""")
    m.graph.node[0].name = "frob1"
    msg = raises(UnsupportedOpError, m, "'Frobnicate'", "'frob1'", "opset 13", "Conv", "Relu")
    assert msg.index("AveragePool") < msg.index("Conv")  # the supported list is sorted


def test_constant_only_op_on_runtime_input():
    m = model("""g (float[2,3] x) => (float y) {
        y = Gather (x, i)
    }""", i=np.array([0], np.int64))
    raises(UnsupportedOpError, m, "Gather", "compile-time constant", "'x'")


def test_non_default_domain():
    m = model(RELU)
    m.graph.node[0].domain = "com.microsoft"
    m.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    raises(UnsupportedOpError, m, "com.microsoft", "Relu")


def test_undefined_tensor():
    m = model("""g (float[1,3,8,8] x) => (float y) {
        y = Conv (x, W)
    }""")
    m.graph.node[0].name = "conv1"
    raises(ModelLoadError, m, "node 'conv1' (Conv) reads tensor 'W' that no node, input or initializer defines")


def test_cycle():
    m = model("""g (float[2,3] x) => (float y) {
        a = Add (x, b)
        b = Relu (a)
        y = Relu (b)
    }""")
    raises(ModelLoadError, m, "cycle", "Add#0", "Relu#1")


def test_tensor_defined_twice():
    m = model("""g (float[2,3] x) => (float y) {
        y = Relu (x)
        y = Sigmoid (x)
    }""")
    raises(ModelLoadError, m, "'y'", "defined twice")


# -- inputs and batch ---------------------------------------------------------------


def test_non_float_input():
    m = model("""g (int64[2,3] x) => (int64 y) {
        y = Relu (x)
    }""")
    raises(ModelLoadError, m, "'x'", "INT64", "float32")


def test_dynamic_non_batch_dim():
    m = model("""g (float[N,3,H,W] x) => (float y) {
        y = Relu (x)
    }""")
    raises(ShapeError, m, "'x'", "dynamic dim 2")


def test_fixed_batch_other_than_one_is_not_rebound():
    m = model("""g (float[8,3] x) => (float y) {
        y = Relu (x)
    }""")
    raises(ShapeError, m, "fixed batch of 8", "batch_size=4", batch_size=4)


def test_reshape_hard_coding_batch_one_is_applied_per_sample():
    """A target [1, 12] exported at batch 1 reshapes one image; rebound to batch 4 it must reshape each
    image the same way ([4, 12]), so every row equals that image's batch-1 result (the MatMul after it
    would mix images if the reshape did)."""
    m = model("""g (float[1,3,2,2] x) => (float y) {
        f = Reshape (x, s)
        y = MatMul (f, W)
    }""", s=np.array([1, 12], np.int64), W=rand(12, 5))
    assert qv2c.import_onnx(m).outputs[0].type.shape == (1, 5)
    rebound = qv2c.import_onnx(m, batch_size=4)
    assert rebound.outputs[0].type.shape == (4, 5)
    single = qv2c.import_onnx(m)
    x = np.random.default_rng(3).standard_normal((4, 3, 2, 2)).astype(np.float32)
    got = qv2c.ir.interpret(rebound, {"x": x})["y"]
    want = np.concatenate([qv2c.ir.interpret(single, {"x": x[i:i + 1]})["y"] for i in range(4)])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_reshape_that_cannot_follow_the_imposed_batch_names_it():
    m = model("""g (float[1,12] x) => (float y) {
        y = Reshape (x, s)
    }""", s=np.array([3, 4], np.int64))
    m.graph.node[0].name = "x"
    assert qv2c.import_onnx(m).outputs[0].type.shape == (3, 4)  # fine at the exported batch
    raises(ShapeError, m, "Reshape node 'x'", "cannot reshape", "imported with batch 4", "dynamic batch", batch_size=4)


# -- node attributes and inputs -----------------------------------------------------


def test_conv_1d_is_unsupported():
    m = model("""g (float[1,3,8] x) => (float y) {
        y = Conv (x, W)
    }""", W=rand(4, 3, 3))
    raises(UnsupportedOpError, m, "Conv node 'Conv#0'", "only 2-D")


def test_shape_error_names_the_node():
    m = model("""g (float[1,3,8,8] x) => (float y) {
        y = Conv (x, W)
    }""", W=rand(4, 2, 3, 3))
    raises(ShapeError, m, "Conv node 'Conv#0'", "qv.conv", "input channels")


def test_maxpool_indices_output_is_unsupported():
    m = model("""g (float[1,2,4,4] x) => (float y, int64 idx) {
        y, idx = MaxPool <kernel_shape=[2,2]> (x)
    }""")
    raises(UnsupportedOpError, m, "MaxPool", "indices")


def test_maxpool_storage_order():
    m = model("""g (float[1,2,4,4] x) => (float y) {
        y = MaxPool <kernel_shape=[2,2], storage_order=1> (x)
    }""")
    raises(UnsupportedOpError, m, "storage_order")


def test_reshape_shape_computed_at_run_time():
    m = model("""g (float[2,3] x, float[2] s) => (float y) {
        c = Cast <to=7> (s)
        y = Reshape (x, c)
    }""")
    raises(UnsupportedOpError, m, "Cast")


def test_clip_bound_computed_at_run_time():
    m = model("""g (float[2,3] x, float lo) => (float y) {
        y = Clip (x, lo)
    }""")
    raises(UnsupportedOpError, m, "Clip", "min input", "compile-time constant")


def test_pad_reflect_past_its_axis_and_wrap_before_opset_19():
    m = model("""g (float[1,2,3,3] x) => (float y) {
        y = Pad <mode="reflect"> (x, p)
    }""", p=np.array([0, 0, 3, 1, 0, 0, 1, 1], np.int64))
    raises(UnsupportedOpError, m, "reflect pads", "smaller than its axis")
    m = model("""g (float[1,2,3,3] x) => (float y) {
        y = Pad <mode="wrap"> (x, p)
    }""", p=np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))
    raises(UnsupportedOpError, m, "'wrap'", "opset 19")


def test_training_batchnorm():
    m = model("""g (float[2,3,4,4] x) => (float y) {
        y = BatchNormalization <training_mode=1> (x, s, b, mean, var)
    }""", opset=15, s=rand(3), b=rand(3), mean=rand(3), var=np.ones(3, np.float32))
    raises(UnsupportedOpError, m, "training_mode")


def test_missing_required_input_or_attribute():
    m = model("""g (float[2,3] x) => (float y) {
        y = Reshape (x)
    }""")
    raises(ModelLoadError, m, "Reshape node", "needs at least 2")
    m = model("""g (float[2,3] x) => (float y) {
        y = Concat (x, x)
    }""")
    raises(ModelLoadError, m, "Concat node", "'axis'")
