"""Golden and numeric tests of `fold-channel-permutation` (qv2c/passes/fold_channel_permutation.py).

Goldens: a channel shuffle (Reshape-Transpose-Reshape) folds into a dense conv, a within-group order
into a grouped conv, a 2-D shuffle into a gemm (B plain and transposed); a shuffle before a strided
depthwise conv moves past it (after its ReLU); what stays becomes one `qv.permute_channels` (a shuffle
read by an add, by a grouped conv whose groups it mixes, by a stride-1 depthwise conv, or that is an
output); an identity chain is dropped; a chain that moves more than channels is left alone.
Hypothesis: random shuffles and orders before random readers, folded against unfolded through the
reference interpreter within 1e-5 relative (fp32), and every layer int8 with and without the pass, bit for
bit (the same ranges for both, through the reference interpreter); what stays runs int8 on the Numba
backend as one `permute_channels` kernel, bit-exact with the reference.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from pass_golden import check_golden, check_pass

import qv2c
import qv2c.api
from qv2c.errors import ShapeError
from qv2c.ir import Builder, Module, TensorType, Value, interpret
from qv2c.passes import CANONICALIZE
from qv2c.passes.calibrate import calibrate
from qv2c.passes.calibration_data import make_calibration_set
from qv2c.passes.layers import layer_name, quantizable_layers
from qv2c.passes.realize_quant import realize_quant

PASSES = ["fold-channel-permutation", "dce"]
CONV = "{{dilations = [1, 1], group = {g}, pads = [{p}, {p}, {p}, {p}], strides = [{s}, {s}]}}"
W4 = "  const %w : f32[2,4,1,1] = [1.0, 2.0, 3.0, 4.0, -1.0, -2.0, 0.5, 0.25]\n"


def module(body: str, consts: str = W4, x: str = "f32[1,4,2,2]", out: str = "%c") -> str:
    return f"module @m {{\n  input %x : {x}\n{consts}{body}  output {out}\n}}\n"


def shuffle(x: str = "%x", c: int = 4, hw: str = "2, 2", g: int = 2) -> str:
    """ShuffleNet's channel shuffle of `x` [1, c, h, w] in `g` groups, result %y."""
    inner = f"{c // g}, {g}, {hw}".replace(", ", ",")
    outer = f"{g}, {c // g}, {hw}".replace(", ", ",")
    return (f"  %r = qv.reshape({x}) {{shape = [1, {g}, {c // g}, {hw}]}} : f32[1,{outer}]\n"
            f"  %t = qv.transpose(%r) {{perm = [0, 2, 1, 3, 4]}} : f32[1,{inner}]\n"
            f"  %y = qv.reshape(%t) {{shape = [1, {c}, {hw}]}} : f32[1,{c},{hw.replace(', ', ',')}]\n")


def conv(src: str, w: str = "%w", out: str = "1,2,2,2", g: int = 1, s: int = 1, p: int = 0, name: str = "%c") -> str:
    return f"  {name} = qv.conv({src}, {w}) {CONV.format(g=g, s=s, p=p)} : f32[{out}]\n"


def permute(src: str, order: str, shape: str = "1,4,2,2", name: str = "%y") -> str:
    return f"  {name} = qv.permute_channels({src}) {{order = [{order}]}} : f32[{shape}]\n"


# -- folds -----------------------------------------------------------------------------------------
# order [0, 2, 1, 3]: w'[:, order[k]] = w[:, k]
DENSE = module(shuffle() + conv("%y"))
DENSE_FOLDED = module(conv("%x", "%w_permuted"),
                      consts="  const %w_permuted : f32[2,4,1,1] = [1.0, 3.0, 2.0, 4.0, -1.0, 0.5, -2.0, 0.25]\n")


def test_shuffle_before_a_dense_conv_becomes_its_weight_order():
    check_golden(DENSE, PASSES, DENSE_FOLDED)


def test_canonicalize_runs_fold_channel_permutation():
    assert CANONICALIZE.index("fold-pad") < CANONICALIZE.index("fold-channel-permutation") < CANONICALIZE.index("dce")
    check_golden(DENSE, CANONICALIZE, DENSE_FOLDED)


# two groups of two channels; order [1, 0, 3, 2] swaps within each group
WG = "  const %w : f32[2,2,1,1] = [1.0, 2.0, 3.0, 4.0]\n"
GROUPED = module(permute("%x", "1, 0, 3, 2") + conv("%y", g=2), consts=WG)
GROUPED_FOLDED = module(conv("%x", "%w_permuted", g=2),
                        consts="  const %w_permuted : f32[2,2,1,1] = [2.0, 1.0, 4.0, 3.0]\n")


def test_an_order_within_each_group_folds_into_a_grouped_conv():
    check_golden(GROUPED, PASSES, GROUPED_FOLDED)


GEMM = """\
module @m {{
  input %x : f32[1,4]
  const %b : f32[{b_shape}] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
  %r = qv.reshape(%x) {{shape = [1, 2, 2]}} : f32[1,2,2]
  %t = qv.transpose(%r) {{perm = [0, 2, 1]}} : f32[1,2,2]
  %y = qv.reshape(%t) {{shape = [1, 4]}} : f32[1,4]
  %g = qv.gemm(%y, %b) {{alpha = 1.0, beta = 1.0, trans_a = 0, trans_b = {trans_b}}} : f32[1,2]
  output %g
}}
"""
GEMM_FOLDED = """\
module @m {{
  input %x : f32[1,4]
  const %b_permuted : f32[{b_shape}] = {data}
  %g = qv.gemm(%x, %b_permuted) {{alpha = 1.0, beta = 1.0, trans_a = 0, trans_b = {trans_b}}} : f32[1,2]
  output %g
}}
"""


@pytest.mark.parametrize("trans_b, b_shape, data", [
    (0, "4,2", "[1.0, 2.0, 5.0, 6.0, 3.0, 4.0, 7.0, 8.0]"),  # rows 1 and 2 swap
    (1, "2,4", "[1.0, 3.0, 2.0, 4.0, 5.0, 7.0, 6.0, 8.0]"),  # columns 1 and 2 swap
])
def test_a_2d_shuffle_folds_into_a_gemm(trans_b, b_shape, data):
    check_golden(GEMM.format(trans_b=trans_b, b_shape=b_shape), PASSES,
                 GEMM_FOLDED.format(trans_b=trans_b, b_shape=b_shape, data=data))


IDENTITY = module("  %r = qv.reshape(%x) {shape = [1, 4, 4]} : f32[1,4,4]\n"
                  "  %y = qv.reshape(%r) {shape = [1, 4, 2, 2]} : f32[1,4,2,2]\n"
                  "  %s = qv.add(%y, %x) : f32[1,4,2,2]\n", consts="", out="%s")
IDENTITY_FOLDED = module("  %s = qv.add(%x, %x) : f32[1,4,2,2]\n", consts="", out="%s")


def test_an_identity_chain_is_dropped_whatever_reads_it():
    check_golden(IDENTITY, PASSES, IDENTITY_FOLDED)


# a stride-2 depthwise conv and its ReLU: the permutation moves to the 4x smaller result
WD = "  const %w : f32[4,1,1,1] = [1.0, 2.0, 3.0, 4.0]\n  const %b : f32[4] = [0.5, 0.25, -0.5, -0.25]\n"
DW = ("  %d = qv.conv(%y, %w, %b) {dilations = [1, 1], group = 4, pads = [0, 0, 0, 0], strides = [2, 2]} "
      ": f32[1,4,1,1]\n  %a = qv.relu(%d) : f32[1,4,1,1]\n  %c = qv.conv(%a, %w2) "
      + CONV.format(g=1, s=1, p=0) + " : f32[1,2,1,1]\n")
W2 = "  const %w2 : f32[2,4,1,1] = [1.0, 2.0, 3.0, 4.0, -1.0, -2.0, 0.5, 0.25]\n"
SINK = module(shuffle() + DW, consts=WD + W2)
SINK_FOLDED = module(
    "  %d = qv.conv(%x, %w_permuted, %b_permuted) {dilations = [1, 1], group = 4, pads = [0, 0, 0, 0], "
    "strides = [2, 2]} : f32[1,4,1,1]\n  %a = qv.relu(%d) : f32[1,4,1,1]\n"
    "  %c = qv.conv(%a, %w2_permuted) " + CONV.format(g=1, s=1, p=0) + " : f32[1,2,1,1]\n",
    consts="  const %w_permuted : f32[4,1,1,1] = [1.0, 3.0, 2.0, 4.0]\n"
           "  const %b_permuted : f32[4] = [0.5, -0.5, 0.25, -0.25]\n"
           "  const %w2_permuted : f32[2,4,1,1] = [1.0, 3.0, 2.0, 4.0, -1.0, 0.5, -2.0, 0.25]\n")


def test_a_shuffle_moves_past_a_strided_depthwise_conv_and_then_folds():
    check_golden(SINK, PASSES, SINK_FOLDED)


# -- what stays: one qv.permute_channels --------------------------------------------------------
STAYS = {
    # an add has no weights to take the order
    "add_reader": (shuffle() + "  %c = qv.add(%y, %x) : f32[1,4,2,2]\n", "", "%c"),
    # groups of two channels; the shuffle sends channel 1 to group 1 (it mixes the groups: its purpose)
    "grouped_conv_mixing_groups": (shuffle() + conv("%y", g=2), WG, "%c"),
    # a stride-1 depthwise conv: moving the order past it saves nothing
    "depthwise_stride_1": (shuffle() + "  %c = qv.conv(%y, %w) {dilations = [1, 1], group = 4, pads = [0, 0, 0, 0], "
                           "strides = [1, 1]} : f32[1,4,2,2]\n", "  const %w : f32[4,1,1,1] = [1.0, 2.0, 3.0, 4.0]\n",
                           "%c"),
    # the permuted tensor must exist
    "module_output": (shuffle() + conv("%y"), W4, "%c, %y"),
}


@pytest.mark.parametrize("case", STAYS)
def test_unfoldable_shuffle_becomes_one_permute(case):
    body, consts, out = STAYS[case]
    before = module(body, consts=consts, out=out)
    kept = body.split("  %y = qv.reshape(%t) {shape = [1, 4, 2, 2]} : f32[1,4,2,2]\n")[1]
    after = module(permute("%x", "0, 2, 1, 3") + kept, consts=consts, out=out)
    check_golden(before, PASSES, after)


# a transpose of H and W is no channel permutation
SPATIAL = module("  %y = qv.transpose(%x) {perm = [0, 1, 3, 2]} : f32[1,4,2,2]\n" + conv("%y"))


def test_a_chain_that_moves_more_than_channels_stays():
    check_golden(SPATIAL, PASSES, SPATIAL)


# -- Hypothesis: folded against unfolded, fp32 ----------------------------------------------------------
@st.composite
def permuted_graphs(draw):
    """(input shape, shuffle groups or None for a random order, reader kind, reader attrs, seed)."""
    reader = draw(st.sampled_from(["conv", "grouped", "depthwise", "gemm", "add"]))
    g, k = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    c = g * k
    shape = (draw(st.integers(1, 2)), c) if reader == "gemm" else \
        (draw(st.integers(1, 2)), c, draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    groups = draw(st.sampled_from([None, g]))
    attrs = {}
    if reader in ("conv", "grouped", "depthwise"):
        kk = draw(st.integers(1, 3))
        attrs = dict(kernel=kk, strides=[draw(st.integers(1, 2))] * 2, pads=[draw(st.integers(0, kk - 1))] * 4,
                     group={"conv": 1, "grouped": draw(st.sampled_from([d for d in range(1, c + 1) if c % d == 0])),
                            "depthwise": c}[reader], mult=draw(st.integers(1, 2)))
    if reader == "gemm":
        attrs = dict(trans_b=draw(st.integers(0, 1)), bias=draw(st.booleans()))
    return shape, groups, reader, attrs, draw(st.integers(0, 2**32 - 1))


def _permuted(b: Builder, x: Value, groups: int | None, rng) -> Value:
    """x with its channels shuffled in `groups` groups (Reshape-Transpose-Reshape), or in a random order."""
    n, c, *rest = x.type.shape
    if groups is None:
        return b.op("qv.permute_channels", [x], order=[int(i) for i in rng.permutation(c)], result_names=["y"])
    r = b.op("qv.reshape", [x], shape=[n, groups, c // groups, *rest])
    t = b.op("qv.transpose", [r], perm=[0, 2, 1, *range(3, x.type.rank + 1)])
    return b.op("qv.reshape", [t], shape=list(x.type.shape), result_names=["y"])


def _build(shape, groups, reader, attrs, rng) -> Module:
    m = Module("random")
    b = Builder(m)
    x = m.add_input(Value(TensorType(shape, "f32"), "x"))
    y = _permuted(b, x, groups, rng)
    c = shape[1]
    try:
        if reader == "add":
            out = b.op("qv.add", [y, x], result_names=["out"])
        elif reader == "gemm":
            wshape = (3, c) if attrs["trans_b"] else (c, 3)
            ops = [y, m.add_constant(rng.standard_normal(wshape).astype(np.float32), "w")]
            if attrs["bias"]:
                ops.append(m.add_constant(rng.standard_normal(3).astype(np.float32), "b"))
            out = b.op("qv.gemm", ops, alpha=1.0, beta=1.0, trans_a=0, trans_b=attrs["trans_b"], result_names=["out"])
        else:
            g, kk = attrs["group"], attrs["kernel"]
            cout = c * attrs["mult"] if reader == "depthwise" else 2 * g
            w = m.add_constant(rng.standard_normal((cout, c // g, kk, kk)).astype(np.float32), "w")
            bias = m.add_constant(rng.standard_normal(cout).astype(np.float32), "b")
            out = b.op("qv.relu", [b.op("qv.conv", [y, w, bias], group=g, strides=attrs["strides"],
                                        pads=attrs["pads"], dilations=[1, 1])], result_names=["out"])
    except ShapeError:
        assume(False)
    m.outputs = [out]
    return m


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(case=permuted_graphs())
def test_fold_is_exact_in_fp32(case):
    shape, groups, reader, attrs, seed = case
    m = _build(shape, groups, reader, attrs, np.random.default_rng(seed))
    check_pass(m, PASSES, None, rtol=1e-5, seed=seed % 2**31)
    names = [op.name for op in m.ops]
    assert "qv.reshape" not in names and "qv.transpose" not in names, str(m)
    if reader in ("conv", "gemm"):
        assert "qv.permute_channels" not in names, str(m)
    else:
        assert names.count("qv.permute_channels") <= 1, str(m)


# -- int8: compile with and without the pass ---------------------------------------------------------------
C, G = 8, 4


def _onnx_model(reader: str, stride: int, seed: int) -> onnx.ModelProto:
    """x [1,3,8,8] -> conv 1x1 (3->8) -> relu -> channel shuffle (4 groups) -> reader -> conv 1x1 (8->2) -> y.
    `reader`: "conv" (dense 3x3, folds), "depthwise" (3x3 with `stride`: at stride 2 the order moves past
    it and folds into conv2, at 1 it stays) or "add" (of the relu output: stays)."""
    rng = np.random.default_rng(seed)
    inits = {"w0": rng.standard_normal((C, 3, 1, 1)), "w2": rng.standard_normal((2, C, 1, 1)),
             "s5": np.array([1, G, C // G, 8, 8], np.int64), "s4": np.array([1, C, 8, 8], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], name="conv0"), helper.make_node("Relu", ["c0"], ["r"]),
             helper.make_node("Reshape", ["r", "s5"], ["r5"]),
             helper.make_node("Transpose", ["r5"], ["t5"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t5", "s4"], ["s"])]
    if reader == "add":
        nodes.append(helper.make_node("Add", ["s", "r"], ["q"]))
    else:
        inits["w1"] = rng.standard_normal((C, C if reader == "conv" else 1, 3, 3))
        nodes.append(helper.make_node("Conv", ["s", "w1"], ["q"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4,
                                      strides=[stride] * 2, group=1 if reader == "conv" else C))
    nodes.append(helper.make_node("Conv", ["q", "w2"], ["y"], name="conv2"))
    graph = helper.make_graph(
        nodes, "shuffled", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32) if v.dtype.kind == "f" else v, n) for n, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _canonical(model: onnx.ModelProto, fold: bool) -> Module:
    """The model imported at batch 4 and canonicalized, with or without `fold-channel-permutation`."""
    pipeline = CANONICALIZE if fold else [p for p in CANONICALIZE if p != "fold-channel-permutation"]
    with mock.patch.object(qv2c.api, "CANONICALIZE", pipeline):
        return qv2c.api.load_canonical(model, 4)


CASES = [("conv", 1), ("depthwise", 2), ("depthwise", 1), ("add", 1)]


@settings(max_examples=12, deadline=None)
@given(case=st.sampled_from(CASES), seed=st.integers(0, 2**32 - 1))
def test_fold_is_bit_exact_in_int8(case, seed):
    """Every layer int8, both modules quantized with the unfolded module's calibrated ranges (a folded
    conv sums its fp32 products in another order, so its own calibration could differ in the last bit
    of a range, which is calibration, not the fold)."""
    reader, stride = case
    model = _onnx_model(reader, stride, seed)
    rng = np.random.default_rng(seed)
    calibration, test = (rng.standard_normal((4, 3, 8, 8)).astype(np.float32) for _ in range(2))
    folded, unfolded = _canonical(model, True), _canonical(model, False)
    names = [op.name for op in folded.ops]
    assert "qv.transpose" not in names and "qv.transpose" in [op.name for op in unfolded.ops]
    # at stride 2 the order moves past the depthwise conv and folds into conv2
    assert ("qv.permute_channels" in names) == (case in (("depthwise", 1), ("add", 1)))
    ranges = calibrate(unfolded, make_calibration_set(unfolded, calibration), 4)
    outputs = []
    for m in (folded, unfolded):
        mixed = realize_quant(m, {layer_name(op) for op in quantizable_layers(m)}, ranges).module
        assert sum(op.name == "qv.quantize" for op in mixed.ops) == 1, str(mixed)
        outputs.append(interpret(mixed, {"x": test})["y"])
    np.testing.assert_array_equal(*outputs)


@pytest.mark.parametrize("reader, stride", [("add", 1), ("depthwise", 1)])
def test_int8_runs_through_the_permute_kernel(reader, stride):
    """What stays is one int8 `permute_channels` kernel inside the island, bit-exact with the reference."""
    model = _onnx_model(reader, stride, 0)
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    test = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    compiled = qv2c.compile(model, calibration, precision="int8")
    reference = qv2c.compile(model, calibration, precision="int8", backend="reference")
    perm = next(op for op in compiled.module.ops if op.name == "qv.permute_channels")
    assert perm.operands[0].type.dtype == perm.result.type.dtype == "u8"
    assert perm.result.type.quant == perm.operands[0].type.quant
    kernels = [k.function for k in compiled.executable.program.kernels]
    assert kernels.count("permute_channels") == 1 and "copy_nd" not in kernels, kernels
    np.testing.assert_array_equal(compiled(test), reference(test))
