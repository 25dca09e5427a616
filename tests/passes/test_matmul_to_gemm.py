"""Golden and numeric tests of `matmul-to-gemm` (with and without the bias add, and the matmuls that stay),
and the end-to-end effect: a tf2onnx-style dense layer compiles to the packed FC kernel, int8 included."""

from __future__ import annotations

import numpy as np
import pytest
from pass_golden import check_golden

import qv2c
from qv2c.passes import CANONICALIZE

DENSE = """\
module @dense {{
  input %x : f32[2,3]
  const %w : f32[3,2] = [1.0, -2.0, 0.5, 3.0, -1.0, 0.25]
  const %b : f32[{bias_shape}] = [0.5, -1.5]
  %m = qv.matmul(%x, %w) : f32[2,2] loc("dense")
  %y = qv.add(%m, %b) : f32[2,2]
  %r = qv.relu(%y) : f32[2,2]
  output %r
}}
"""

DENSE_GEMM = """\
module @dense {{
  input %x : f32[2,3]
  const %w : f32[3,2] = [1.0, -2.0, 0.5, 3.0, -1.0, 0.25]
  const %b : f32[{bias_shape}] = [0.5, -1.5]
  %y = qv.gemm(%x, %w, %b) {{alpha = 1.0, beta = 1.0, trans_a = 0, trans_b = 0}} : f32[2,2] loc("dense")
  %r = qv.relu(%y) : f32[2,2]
  output %r
}}
"""


@pytest.mark.parametrize("bias_shape", ["2", "1,2"])
def test_matmul_and_bias_add_become_one_gemm(bias_shape):
    check_golden(DENSE.format(bias_shape=bias_shape), "matmul-to-gemm", DENSE_GEMM.format(bias_shape=bias_shape))


NO_BIAS = """\
module @m {
  input %x : f32[1,3]
  const %w : f32[3,2] = [1.0, -2.0, 0.5, 3.0, -1.0, 0.25]
  %m = qv.matmul(%x, %w) : f32[1,2]
  output %m
}
"""

NO_BIAS_GEMM = """\
module @m {
  input %x : f32[1,3]
  const %w : f32[3,2] = [1.0, -2.0, 0.5, 3.0, -1.0, 0.25]
  %m = qv.gemm(%x, %w) {alpha = 1.0, beta = 1.0, trans_a = 0, trans_b = 0} : f32[1,2]
  output %m
}
"""


def test_matmul_without_bias_becomes_a_gemm_and_keeps_its_output_name():
    check_golden(NO_BIAS, "matmul-to-gemm", NO_BIAS_GEMM)


STAYS = {
    # B computed at run time: no packed weight
    "runtime B": """\
module @m {
  input %x : f32[2,3]
  input %w : f32[3,2]
  %m = qv.matmul(%x, %w) : f32[2,2]
  output %m
}
""",
    # a batched product (A of rank 3)
    "batched A": """\
module @m {
  input %x : f32[2,2,3]
  const %w : f32[3,2] = [1.0, -2.0, 0.5, 3.0, -1.0, 0.25]
  %m = qv.matmul(%x, %w) : f32[2,2,2]
  output %m
}
""",
}


@pytest.mark.parametrize("case", sorted(STAYS))
def test_matmuls_that_are_not_dense_layers_stay(case):
    check_golden(STAYS[case], "matmul-to-gemm", STAYS[case])


ADD_OF_ANOTHER_SHAPE = """\
module @m {
  input %x : f32[2,3]
  const %w : f32[3,2] = [1.0, -2.0, 0.5, 3.0, -1.0, 0.25]
  const %b : f32[2,1] = [0.5, -1.5]
  %m = qv.matmul(%x, %w) : f32[2,2]
  %y = qv.add(%m, %b) : f32[2,2]
  output %y
}
"""

ADD_OF_ANOTHER_SHAPE_AFTER = """\
module @m {
  input %x : f32[2,3]
  const %w : f32[3,2] = [1.0, -2.0, 0.5, 3.0, -1.0, 0.25]
  const %b : f32[2,1] = [0.5, -1.5]
  %m = qv.gemm(%x, %w) {alpha = 1.0, beta = 1.0, trans_a = 0, trans_b = 0} : f32[2,2]
  %y = qv.add(%m, %b) : f32[2,2]
  output %y
}
"""


def test_a_bias_that_varies_by_row_stays_an_add():
    check_golden(ADD_OF_ANOTHER_SHAPE, "matmul-to-gemm", ADD_OF_ANOTHER_SHAPE_AFTER)


def test_canonicalize_runs_it():
    assert CANONICALIZE.index("matmul-to-gemm") < CANONICALIZE.index("fold-batchnorm")


def _tf_style_cnn():
    """conv -> relu -> global pool -> flatten -> MatMul + Add (a dense layer as tf2onnx exports it)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "cw"),
             numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32) * 0.3, "dw"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "db")]
    nodes = [helper.make_node("Conv", ["input", "cw"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "dw"], ["m"], name="dense"),
             helper.make_node("Add", ["m", "db"], ["logits"])]
    graph = helper.make_graph(nodes, "tfstyle", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_dense_layer_exported_as_matmul_runs_the_packed_kernels(precision):
    """fp32: the conv driver on [M, 1, 1, K] views, no strided matmul; int8: the dense layer is an int8
    layer (two quantizable layers, both int8), bit-exact against the reference interpreter."""
    rng = np.random.default_rng(1)
    calib = rng.standard_normal((8, 3, 8, 8)).astype(np.float32)
    model = qv2c.compile(_tf_style_cnn(), calib, precision=precision)
    kernels = [k.function for k in model.executable.program.kernels]
    assert "matmul_strided" not in kernels
    assert kernels.count("conv2d_f32" if precision == "fp32" else "conv2d_i8_requant") == 2
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    got = model.run(x)["logits"]
    want = qv2c.compile(_tf_style_cnn(), calib, precision=precision, backend="reference").run(x)["logits"]
    if precision == "int8":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
