"""ONNX frontend: one small inline model per importer, checked structurally (IR ops, attributes,
shapes, names) and numerically against onnxruntime through the reference interpreter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_text import assert_matches_onnxruntime, model, ops, rand, run_onnx_reference, run_onnxruntime, the_op

import qv2c
from qv2c.frontend import supported_ops

# -- Conv ---------------------------------------------------------------------------


def conv_model(attrs: str, x_shape=(1, 3, 9, 9), w_shape=(4, 3, 3, 3), bias=True, opset=13):
    b = ", B" if bias else ""
    attrs = f"<{attrs}>" if attrs else ""
    inits = {"W": rand(*w_shape, seed=1)}
    if bias:
        inits["B"] = rand(w_shape[0], seed=2)
    return model(f"""g (float[{','.join(map(str, x_shape))}] x) => (float y) {{
        y = Conv {attrs} (x, W{b})
    }}""", opset=opset, **inits)


@pytest.mark.parametrize("attrs, pads, out_hw", [
    ("pads=[1,1,1,1]", [1, 1, 1, 1], (9, 9)),
    ("strides=[2,2], pads=[0,1,2,1]", [0, 1, 2, 1], (5, 5)),
    ('auto_pad="VALID", strides=[2,2]', [0, 0, 0, 0], (4, 4)),
    # in=9, stride=2 -> out 5, total pad = 4*2+3-9 = 2 split evenly
    ('auto_pad="SAME_UPPER", strides=[2,2]', [1, 1, 1, 1], (5, 5)),
    # in=9, stride=2, dilation 2 -> span 5, total = 8+5-9 = 4
    ('auto_pad="SAME_LOWER", strides=[2,2], dilations=[2,2]', [2, 2, 2, 2], (5, 5)),
    ('auto_pad="NOTSET", dilations=[2,1]', [0, 0, 0, 0], (5, 7)),
])
def test_conv_attributes_and_padding(attrs, pads, out_hw):
    m = conv_model(attrs)
    module = qv2c.import_onnx(m)
    conv = the_op(module, "qv.conv")
    assert conv.attrs["pads"] == pads
    assert conv.result.type.shape == (1, 4, *out_hw)
    assert conv.result.name == "y" and conv.meta["onnx_node"] == "Conv#0"
    # onnxruntime rejects dilation with SAME padding; onnx's evaluator implements it
    dilated_same = "SAME" in attrs and "dilations" in attrs
    assert_matches_onnxruntime(m, module, oracle=run_onnx_reference if dilated_same else run_onnxruntime)


def test_conv_same_upper_and_lower_put_the_odd_pixel_on_opposite_sides():
    # in=8, k=4, stride=1: total pad 3; UPPER -> 1 before, 2 after; LOWER -> 2 before, 1 after
    upper = the_op(qv2c.import_onnx(conv_model('auto_pad="SAME_UPPER"', (1, 3, 8, 8), (4, 3, 4, 4))), "qv.conv")
    lower_m = conv_model('auto_pad="SAME_LOWER"', (1, 3, 8, 8), (4, 3, 4, 4))
    lower = the_op(qv2c.import_onnx(lower_m), "qv.conv")
    assert upper.attrs["pads"] == [1, 1, 2, 2]
    assert lower.attrs["pads"] == [2, 2, 1, 1]
    assert_matches_onnxruntime(lower_m)


@pytest.mark.parametrize("group, w_shape", [(2, (4, 2, 3, 3)), (4, (8, 1, 3, 3))])
def test_grouped_and_depthwise_conv(group, w_shape):
    m = conv_model(f"group={group}, pads=[1,1,1,1]", x_shape=(2, 4, 6, 6), w_shape=w_shape)
    conv = the_op(qv2c.import_onnx(m), "qv.conv")
    assert conv.attrs["group"] == group
    assert conv.result.type.shape == (2, w_shape[0], 6, 6)
    assert_matches_onnxruntime(m)


def test_conv_without_bias_has_two_operands():
    m = conv_model("", bias=False)
    assert len(the_op(qv2c.import_onnx(m), "qv.conv").operands) == 2
    assert_matches_onnxruntime(m)


@settings(max_examples=25, deadline=None)
@given(
    size=st.integers(3, 12), k=st.integers(1, 4), stride=st.integers(1, 3), dilation=st.integers(1, 2),
    auto_pad=st.sampled_from(["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"]), pad=st.integers(0, 2),
)
def test_conv_output_shape_matches_onnxruntime(size, k, stride, dilation, auto_pad, pad):
    """Random window attributes: the statically inferred shape is the one onnxruntime computes."""
    if dilation * (k - 1) + 1 > size + 2 * pad:
        return
    attrs = f'strides=[{stride},{stride}], dilations=[{dilation},{dilation}], auto_pad="{auto_pad}"'
    if auto_pad == "NOTSET":
        attrs += f", pads=[{pad},{pad},{pad},{pad}]"
    if auto_pad == "VALID" and dilation * (k - 1) + 1 > size:
        return
    m = conv_model(attrs, (1, 2, size, size), (3, 2, k, k))
    dilated_same = auto_pad.startswith("SAME") and dilation > 1
    assert_matches_onnxruntime(m, oracle=run_onnx_reference if dilated_same else run_onnxruntime)


# -- Gemm / MatMul ------------------------------------------------------------------


@pytest.mark.parametrize("trans_a, trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm_transposes_alpha_beta(trans_a, trans_b):
    a_shape = (5, 3) if trans_a else (3, 5)
    b_shape = (4, 5) if trans_b else (5, 4)
    m = model(f"""g (float[{a_shape[0]},{a_shape[1]}] a) => (float y) {{
        y = Gemm <transA={trans_a}, transB={trans_b}, alpha=0.5, beta=2.0> (a, B, C)
    }}""", B=rand(*b_shape, seed=1), C=rand(4, seed=2))
    gemm = the_op(qv2c.import_onnx(m), "qv.gemm")
    assert gemm.attrs == {"alpha": 0.5, "beta": 2.0, "trans_a": trans_a, "trans_b": trans_b}
    assert gemm.result.type.shape == (3, 4)
    assert_matches_onnxruntime(m)


def test_gemm_without_c_and_matmul():
    m = model("""g (float[2,6] a) => (float y, float z) {
        y = Gemm (a, B)
        z = MatMul (a, B)
    }""", B=rand(6, 3, seed=1))
    module = qv2c.import_onnx(m)
    assert ops(module) == ["qv.gemm", "qv.matmul"]
    assert len(module.ops[0].operands) == 2
    assert_matches_onnxruntime(m, module)


# -- normalisation ------------------------------------------------------------------


def test_batchnorm_keeps_onnx_operand_order_and_epsilon():
    m = model("""g (float[2,3,4,4] x) => (float y) {
        y = BatchNormalization <epsilon=0.001> (x, s, b, mean, var)
    }""", s=rand(3, seed=1), b=rand(3, seed=2), mean=rand(3, seed=3), var=np.abs(rand(3, seed=4)) + 0.5)
    module = qv2c.import_onnx(m)
    bn = the_op(module, "qv.batchnorm")
    assert [v.name for v in bn.operands] == ["x", "s", "b", "mean", "var"]
    assert bn.attrs["epsilon"] == pytest.approx(1e-3)
    assert_matches_onnxruntime(m, module)


def test_lrn():
    m = model("""g (float[1,6,5,5] x) => (float y) {
        y = LRN <size=3, alpha=0.001, beta=0.5, bias=2.0> (x)
    }""")
    lrn = the_op(qv2c.import_onnx(m), "qv.lrn")
    assert lrn.attrs == {"size": 3, "alpha": pytest.approx(1e-3), "beta": 0.5, "bias": 2.0}
    assert_matches_onnxruntime(m)


# -- activations --------------------------------------------------------------------


def test_relu_and_sigmoid():
    m = model("""g (float[2,5] x) => (float y) {
        r = Relu (x)
        y = Sigmoid (r)
    }""")
    module = qv2c.import_onnx(m)
    assert ops(module) == ["qv.relu", "qv.sigmoid"]
    assert [op.result.name for op in module.ops] == ["r", "y"]
    assert_matches_onnxruntime(m, module)


def test_clip_attribute_form_before_opset_11():
    m = model("""g (float[2,5] x) => (float y) {
        y = Clip <min=0.0, max=6.0> (x)
    }""", opset=9)
    clip = the_op(qv2c.import_onnx(m), "qv.clip")
    assert clip.attrs == {"min": 0.0, "max": 6.0}
    assert_matches_onnxruntime(m)


@pytest.mark.parametrize("args, lo, hi", [
    ("x, lo, hi", -0.5, 0.5),
    ("x, , hi", -np.inf, 0.5),
    ("x, lo", -0.5, np.inf),
    ("x", -np.inf, np.inf),
])
def test_clip_input_form_with_optional_bounds(args, lo, hi):
    m = model(f"""g (float[2,5] x) => (float y) {{
        y = Clip ({args})
    }}""", lo=np.array(-0.5, np.float32), hi=np.array(0.5, np.float32))
    clip = the_op(qv2c.import_onnx(m), "qv.clip")
    assert clip.attrs == {"min": lo, "max": hi}
    assert_matches_onnxruntime(m)


def test_softmax_opset13_axis():
    m = model("""g (float[2,3,4] x) => (float y) {
        y = Softmax <axis=1> (x)
    }""")
    module = qv2c.import_onnx(m)
    assert ops(module) == ["qv.softmax"] and module.ops[0].attrs["axis"] == 1
    assert_matches_onnxruntime(m, module)


def test_softmax_legacy_coerces_to_2d_only_when_needed():
    legacy = model("""g (float[2,3,4] x) => (float y) {
        y = Softmax <axis=1> (x)
    }""", opset=11)
    module = qv2c.import_onnx(legacy)
    assert ops(module) == ["qv.reshape", "qv.softmax", "qv.reshape"]
    assert module.ops[0].attrs["shape"] == [2, 12] and module.ops[2].result.name == "y"
    assert_matches_onnxruntime(legacy, module)
    # trailing dims of size 1 (a classifier's [N, C, 1, 1]): a plain softmax along the axis
    trivial = model("""g (float[2,10,1,1] x) => (float y) {
        y = Softmax (x)
    }""", opset=9)
    module = qv2c.import_onnx(trivial)
    assert ops(module) == ["qv.softmax"] and module.ops[0].attrs["axis"] == 1
    assert_matches_onnxruntime(trivial, module)


# -- elementwise --------------------------------------------------------------------


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_binary_ops_broadcast_runtime_and_constant_operands(op):
    m = model(f"""g (float[2,3,4,4] x, float[3,1,1] z) => (float y, float w) {{
        y = {op} (x, c)
        w = {op} (z, x)
    }}""", c=np.abs(rand(1, 3, 1, 1)) + 0.5)
    module = qv2c.import_onnx(m)
    assert ops(module) == [f"qv.{op.lower()}"] * 2
    assert module.ops[0].result.type.shape == (2, 3, 4, 4)
    assert [c.name for c in module.constants] == ["c"]
    assert_matches_onnxruntime(m, module)


def test_sum_becomes_a_chain_of_adds():
    m = model("""g (float[2,3] a, float[2,3] b, float[3] c) => (float y, float one) {
        y = Sum (a, b, c)
        one = Sum (a)
    }""")
    module = qv2c.import_onnx(m)
    assert ops(module) == ["qv.add", "qv.add", "qv.reshape"]
    assert module.ops[1].result.name == "y"
    assert_matches_onnxruntime(m, module)


# -- pooling ------------------------------------------------------------------------


@pytest.mark.parametrize("attrs, pads, out", [
    ("kernel_shape=[3,3], strides=[2,2]", [0, 0, 0, 0], 3),
    ("kernel_shape=[2,2], strides=[2,2]", [0, 0, 0, 0], 3),
    ("kernel_shape=[2,2], strides=[2,2], ceil_mode=1", [0, 0, 0, 0], 4),
    ("kernel_shape=[2,2], strides=[2,2], pads=[1,1,1,1]", [1, 1, 1, 1], 4),
    ('kernel_shape=[3,3], strides=[2,2], auto_pad="SAME_UPPER"', [1, 1, 1, 1], 4),
    ("kernel_shape=[2,2], dilations=[2,2]", [0, 0, 0, 0], 5),
])
def test_maxpool(attrs, pads, out):
    m = model(f"""g (float[1,2,7,7] x) => (float y) {{
        y = MaxPool <{attrs}> (x)
    }}""")
    pool = the_op(qv2c.import_onnx(m), "qv.maxpool")
    assert pool.attrs["pads"] == pads and pool.result.type.shape == (1, 2, out, out)
    assert_matches_onnxruntime(m)


@pytest.mark.parametrize("attrs", [
    "kernel_shape=[3,3], strides=[2,2], pads=[1,1,1,1]",
    "kernel_shape=[3,3], strides=[2,2], pads=[1,1,1,1], count_include_pad=1",
    "kernel_shape=[3,3], strides=[2,2], ceil_mode=1",
    'kernel_shape=[2,2], auto_pad="SAME_LOWER"',
])
def test_average_pool(attrs):
    m = model(f"""g (float[1,2,8,8] x) => (float y) {{
        y = AveragePool <{attrs}> (x)
    }}""")
    pool = the_op(qv2c.import_onnx(m), "qv.avgpool")
    assert pool.attrs["count_include_pad"] == int("count_include_pad=1" in attrs)
    assert_matches_onnxruntime(m)


def test_global_average_pool():
    m = model("""g (float[2,3,5,4] x) => (float y) {
        y = GlobalAveragePool (x)
    }""")
    assert the_op(qv2c.import_onnx(m), "qv.global_avgpool").result.type.shape == (2, 3, 1, 1)
    assert_matches_onnxruntime(m)


# -- data movement ------------------------------------------------------------------


def test_concat_negative_axis_is_normalised():
    m = model("""g (float[2,3,4] a, float[2,5,4] b) => (float y) {
        y = Concat <axis=-2> (a, b, c)
    }""", c=rand(2, 1, 4))
    cat = the_op(qv2c.import_onnx(m), "qv.concat")
    assert cat.attrs["axis"] == 1 and cat.result.type.shape == (2, 9, 4)
    assert_matches_onnxruntime(m)


@pytest.mark.parametrize("target, allowzero, expected", [
    ([-1, 8], 0, [6, 8]),
    ([0, -1], 0, [2, 24]),
    ([2, 0, 4, 2], 0, [2, 3, 4, 2]),
    ([48], 1, [48]),
])
def test_reshape_resolves_minus_one_and_zero(target, allowzero, expected):
    m = model(f"""g (float[2,3,8] x) => (float y) {{
        y = Reshape <allowzero={allowzero}> (x, s)
    }}""", opset=14, s=np.array(target, np.int64))
    module = qv2c.import_onnx(m)
    assert ops(module) == ["qv.reshape"] and module.ops[0].attrs["shape"] == expected
    assert module.constants == []  # the shape input is consumed at import, not kept
    assert_matches_onnxruntime(m, module)


@pytest.mark.parametrize("axis, expected", [(1, [2, 12]), (0, [1, 24]), (-1, [6, 4]), (3, [24, 1])])
def test_flatten(axis, expected):
    m = model(f"""g (float[2,3,4] x) => (float y) {{
        y = Flatten <axis={axis}> (x)
    }}""")
    assert the_op(qv2c.import_onnx(m), "qv.reshape").attrs["shape"] == expected
    assert_matches_onnxruntime(m)


def test_transpose_default_perm_reverses():
    m = model("""g (float[2,3,4] x) => (float y, float z) {
        y = Transpose (x)
        z = Transpose <perm=[0,2,1]> (x)
    }""")
    module = qv2c.import_onnx(m)
    assert [op.attrs["perm"] for op in module.ops] == [[2, 1, 0], [0, 2, 1]]
    assert_matches_onnxruntime(m, module)


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze_attr_and_input_forms(opset):
    if opset < 13:
        body = """u = Unsqueeze <axes=[0,-1]> (x)
        y = Squeeze <axes=[0]> (u)
        z = Squeeze (u)"""
        inits = {}
    else:
        body = """u = Unsqueeze (x, ax2)
        y = Squeeze (u, ax0)
        z = Squeeze (u)"""
        inits = {"ax2": np.array([0, -1], np.int64), "ax0": np.array([0], np.int64)}
    m = model(f"""g (float[2,1,3] x) => (float y, float z) {{
        {body}
    }}""", opset=opset, **inits)
    module = qv2c.import_onnx(m)
    assert ops(module) == ["qv.reshape"] * 3
    assert [op.attrs["shape"] for op in module.ops] == [[1, 2, 1, 3, 1], [2, 1, 3, 1], [2, 3]]
    assert_matches_onnxruntime(m, module)


def test_pad_attribute_form():
    m = model("""g (float[1,2,3,3] x) => (float y) {
        y = Pad <pads=[0,0,1,2,0,0,2,1], value=1.5> (x)
    }""", opset=9)
    pad = the_op(qv2c.import_onnx(m), "qv.pad")
    assert pad.attrs == {"pads": [0, 0, 1, 2, 0, 0, 2, 1], "mode": "constant", "value": 1.5}
    assert pad.result.type.shape == (1, 2, 6, 6)
    assert_matches_onnxruntime(m)


def test_pad_input_form_with_constant_value():
    m = model("""g (float[1,2,3,3] x) => (float y) {
        y = Pad (x, p, v)
    }""", p=np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), v=np.array(-2.0, np.float32))
    pad = the_op(qv2c.import_onnx(m), "qv.pad")
    assert pad.attrs["value"] == -2.0 and pad.result.type.shape == (1, 2, 5, 5)
    assert_matches_onnxruntime(m)


@pytest.mark.parametrize("mode", ["reflect", "edge"])
def test_pad_copying_modes_match_onnxruntime(mode):
    m = model(f"""g (float[1,2,4,5] x) => (float y) {{
        y = Pad <mode="{mode}"> (x, p)
    }}""", p=np.array([0, 0, 1, 2, 0, 0, 3, 1], np.int64))
    pad = the_op(qv2c.import_onnx(m), "qv.pad")
    assert pad.attrs["mode"] == mode and pad.result.type.shape == (1, 2, 8, 8)
    assert_matches_onnxruntime(m)


def test_identity_and_dropout_vanish():
    m = model("""g (float[2,3] x) => (float y) {
        a = Identity (x)
        b, mask = Dropout <ratio=0.5> (a)
        y = Relu (b)
    }""", opset=9)
    module = qv2c.import_onnx(m)
    assert ops(module) == ["qv.relu"] and module.ops[0].operands[0] is module.inputs[0]
    assert_matches_onnxruntime(m, module)


def test_identity_before_a_graph_output_keeps_the_output_name():
    m = model("""g (float[2,3] x) => (float y, float z) {
        r = Relu (x)
        y = Identity (r)
        z = Identity (x)
    }""")
    module = qv2c.import_onnx(m)
    assert [v.name for v in module.outputs] == ["y", "z"]
    assert_matches_onnxruntime(m, module)


def test_two_outputs_aliasing_one_tensor_keep_both_names():
    m = model("""g (float[2,3] x) => (float y, float z) {
        r = Relu (x)
        y = Identity (r)
        z = Identity (r)
    }""")
    module = qv2c.import_onnx(m)
    assert [v.name for v in module.outputs] == ["y", "z"]
    assert ops(module) == ["qv.relu", "qv.reshape"]
    assert_matches_onnxruntime(m, module)


# -- constants and folding ----------------------------------------------------------


def test_constant_node_forms():
    m = model("""g (float[2,3] x) => (float y) {
        a = Constant <value=float[3] {1.0, 2.0, 3.0}> ()
        b = Constant <value_float=2.0> ()
        s = Constant <value_ints=[3,2]> ()
        p = Mul (x, a)
        q = Add (p, b)
        y = Reshape (q, s)
    }""")
    module = qv2c.import_onnx(m)
    assert ops(module) == ["qv.mul", "qv.add", "qv.reshape"]
    assert module.ops[2].attrs["shape"] == [3, 2]
    assert_matches_onnxruntime(m, module)


def test_shape_subgraph_is_folded_and_follows_the_batch():
    """PyTorch-style `x.view(x.size(0), -1)`: Shape/Gather/Unsqueeze/Concat never reach the IR."""
    m = model("""g (float[N,3,2,2] x) => (float y) {
        s = Shape (x)
        i = Constant <value_int=0> ()
        n = Gather <axis=0> (s, i)
        n1 = Unsqueeze (n, zero)
        shp = Concat <axis=0> (n1, minus1)
        y = Reshape (x, shp)
    }""", zero=np.array([0], np.int64), minus1=np.array([-1], np.int64))
    module = qv2c.import_onnx(m, batch_size=5)
    assert ops(module) == ["qv.reshape"] and module.ops[0].attrs["shape"] == [5, 12]
    assert module.constants == []
    assert_matches_onnxruntime(m, module)


def test_folding_arithmetic_slice_cast_range_and_constant_of_shape():
    m = model("""g (float[2,3] x) => (float y, float z) {
        s = Shape (x)
        last = Slice (s, one, two)
        n = Squeeze (last)
        nf = Cast <to=1> (n)
        r = Range (zero_f, nf, one_f)
        sq = Sqrt (r)
        fl = Floor (sq)
        w = ConstantOfShape <value=float[1] {0.25}> (s)
        t = Add (w, fl)
        y = Mul (x, t)
        q = Div (odd, two)
        target = Abs (q)
        z = Reshape (x, target)
    }""", one=np.array([1], np.int64), two=np.array([2], np.int64), zero_f=np.array(0.0, np.float32),
        one_f=np.array(1.0, np.float32), odd=np.array([-5, 6], np.int64))
    module = qv2c.import_onnx(m)
    assert ops(module) == ["qv.mul", "qv.reshape"]
    (t,) = module.constants
    np.testing.assert_array_equal(t.data, np.full((2, 3), 0.25, np.float32) + np.array([0.0, 1.0, 1.0]))
    # integer Div truncates toward zero like ONNX (-5 / 2 = -2), so the target is [2, 3]
    assert module.ops[1].attrs["shape"] == [2, 3]
    assert_matches_onnxruntime(m, module)


def test_unused_initializers_are_dropped():
    m = model("""g (float[2,3] x) => (float y) {
        y = Add (x, c)
    }""", c=rand(3), unused=rand(100))
    module = qv2c.import_onnx(m)
    assert [c.name for c in module.constants] == ["c"]


def test_ir3_initializers_listed_as_inputs_are_not_inputs():
    m = model("""g (float[2,3] x, float[3] c) => (float y) {
        y = Add (x, c)
    }""", ir_version=3, opset=9, c=rand(3))
    module = qv2c.import_onnx(m)
    assert [v.name for v in module.inputs] == ["x"] and [c.name for c in module.constants] == ["c"]
    assert_matches_onnxruntime(m, module)


# -- graph structure, names, batch --------------------------------------------------


def test_unsorted_nodes_are_sorted_and_names_kept():
    m = model("""g (float[1,2,4,4] x) => (float y) {
        y = Relu (h)
        h = MaxPool <kernel_shape=[2,2]> (x)
    }""")
    m.graph.node[1].name = "pool1"
    module = qv2c.import_onnx(m)
    assert ops(module) == ["qv.maxpool", "qv.relu"]
    assert [op.meta["onnx_node"] for op in module.ops] == ["pool1", "Relu#0"]
    assert [op.result.name for op in module.ops] == ["h", "y"]
    assert 'loc("pool1")' in str(module)


def test_dead_nodes_are_not_imported():
    m = model("""g (float[2,3] x) => (float y) {
        y = Relu (x)
        dead = SomeUnknownOp (x)
    }""")
    assert ops(qv2c.import_onnx(m)) == ["qv.relu"]


@pytest.mark.parametrize("batch_size, expected", [(None, 1), (1, 1), (3, 3)])
def test_dynamic_batch_is_bound(batch_size, expected):
    m = model("""g (float[batch,3,4,4] x) => (float[batch,48] y) {
        y = Flatten (x)
    }""")
    module = qv2c.import_onnx(m, batch_size=batch_size)
    assert module.inputs[0].type.shape == (expected, 3, 4, 4)
    assert module.outputs[0].type.shape == (expected, 48)
    assert_matches_onnxruntime(m, module)


def test_fixed_batch_one_is_rebound_and_batch_safe_reshapes_follow():
    m = model("""g (float[1,3,4,4] x) => (float[1,48] y, float[1,48] z, float[1,48] w) {
        y = Flatten (x)
        z = Reshape (x, zero_first)
        w = Reshape (x, minus_first)
    }""", zero_first=np.array([0, 48], np.int64), minus_first=np.array([-1, 48], np.int64))
    module = qv2c.import_onnx(m, batch_size=4)
    assert module.inputs[0].type.shape == (4, 3, 4, 4)
    assert [v.type.shape for v in module.outputs] == [(4, 48)] * 3


def test_every_importer_is_listed():
    assert {"Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "Clip", "Add", "Mul", "Sub", "Div", "Sum",
            "Concat", "LRN", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Transpose",
            "Squeeze", "Unsqueeze", "Pad", "Dropout", "Identity", "Softmax", "Sigmoid"} <= set(supported_ops())


def test_model_can_be_given_as_bytes_or_path(tmp_path):
    m = model("""g (float[2,3] x) => (float y) {
        y = Relu (x)
    }""")
    path = tmp_path / "relu.onnx"
    path.write_bytes(m.SerializeToString())
    for source in (m.SerializeToString(), path, str(path)):
        assert ops(qv2c.import_onnx(source)) == ["qv.relu"]
