"""Golden and numeric tests of `fold-pad` (qv2c/passes/fold_pad.py).

Goldens: each pad that folds (into a conv, both kinds of average pool, a max pool of
non-negative input, a chain of pads, a pad read by several ops) and each pad that must
stay, with the reason in its name. Hypothesis: random conv/pool graphs with a zero pad
in front, folded against unfolded through the reference interpreter, in fp32 (within
1e-5 relative) and after `qv2c.compile(precision="int8")` (bit for bit), where the
unfolded model is compiled with `fold-pad` taken out of the canonicalize pipeline.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from padded_models import compile_unfolded
from pass_golden import check_golden, check_pass

import qv2c
from qv2c.errors import ShapeError
from qv2c.ir import Builder, Module, TensorType, Value
from qv2c.passes import CANONICALIZE
from qv2c.passes.fold_pad import non_negative

CONV = "{{dilations = [1, 1], group = 1, pads = {pads}, strides = [{s}, {s}]}}"
W3 = "  const %w : f32[1,1,3,3] = [1.0, 0.5, -1.0, 2.0, -0.25, -2.0, 1.0, 0.75, -1.5]\n"


def zero_pad(pads: str, shape: str, x: str = "%x", name: str = "%p", mode: str = "constant",
             value: str = "0.0") -> str:
    return f'  {name} = qv.pad({x}) {{mode = "{mode}", pads = {pads}, value = {value}}} : f32[{shape}]\n'


def module(body: str, x: str = "f32[1,1,4,4]", consts: str = W3) -> str:
    return f"module @m {{\n  input %x : {x}\n{consts}{body}}}\n"


def conv(src: str, pads: str, out: str, s: int = 1, w: str = "%w") -> str:
    """`%c = qv.conv(src, w)` with those pads and strides, result f32[out]."""
    return f"  %c = qv.conv({src}, {w}) {CONV.format(pads=pads, s=s)} : f32[{out}]\n"


OUT_C = "  output %c\n"


# -- pads that fold ----------------------------------------------------------------------------
# TF "same" for a 3x3 stride-2 conv on 4x4: total padding 1, all of it at the end
TF_SAME = module(zero_pad("[0, 0, 0, 0, 0, 0, 1, 1]", "1,1,5,5") + conv("%p", "[0, 0, 0, 0]", "1,1,2,2", s=2) + OUT_C)
TF_SAME_FOLDED = module(conv("%x", "[0, 0, 1, 1]", "1,1,2,2", s=2) + OUT_C)


def test_tf_same_pad_before_a_strided_conv_becomes_its_asymmetric_pads():
    check_golden(TF_SAME, "fold-pad", TF_SAME_FOLDED)


# the pad's widths add to the conv's own: [1, 0, 0, 1] + [0, 1, 1, 0] = [1, 1, 1, 1]
ADDS = module(zero_pad("[0, 0, 0, 1, 0, 0, 1, 0]", "1,1,5,5") + conv("%p", "[1, 0, 0, 1]", "1,1,4,4") + OUT_C)
ADDS_FOLDED = module(conv("%x", "[1, 1, 1, 1]", "1,1,4,4") + OUT_C)


def test_pads_add_to_the_conv_own_pads():
    check_golden(ADDS, "fold-pad", ADDS_FOLDED)


AVG = "{{ceil_mode = 0, count_include_pad = {c}, kernel = [3, 3], pads = {pads}, strides = [1, 1]}}"


def avgpool(src: str, count_include_pad: int, pads: str, out: str) -> str:
    """`%a = qv.avgpool(src)`, 3x3 stride 1, result f32[out]."""
    return f"  %a = qv.avgpool({src}) {AVG.format(c=count_include_pad, pads=pads)} : f32[{out}]\n"


OUT_A = "  output %a\n"
AVG_INCLUDE = module(zero_pad("[0, 0, 1, 0, 0, 0, 0, 1]", "1,1,5,5") + avgpool("%p", 1, "[1, 1, 1, 1]", "1,1,5,5")
                     + OUT_A, consts="")
AVG_INCLUDE_FOLDED = module(avgpool("%x", 1, "[2, 1, 1, 2]", "1,1,5,5") + OUT_A, consts="")


def test_average_pool_counting_its_padding_takes_the_pad():
    check_golden(AVG_INCLUDE, "fold-pad", AVG_INCLUDE_FOLDED)


# count_include_pad = 0 on a pool without pads of its own: the explicit zeros counted as
# input, so the folded pool counts its (new) padding
AVG_EXCLUDE = module(zero_pad("[0, 0, 1, 1, 0, 0, 1, 1]", "1,1,6,6") + avgpool("%p", 0, "[0, 0, 0, 0]", "1,1,4,4")
                     + OUT_A, consts="")
AVG_EXCLUDE_FOLDED = module(avgpool("%x", 1, "[1, 1, 1, 1]", "1,1,4,4") + OUT_A, consts="")


def test_average_pool_without_own_pads_counts_the_folded_padding():
    check_golden(AVG_EXCLUDE, "fold-pad", AVG_EXCLUDE_FOLDED)


MAX = "{{ceil_mode = {ceil}, dilations = [1, 1], kernel = [{k}, {k}], pads = {pads}, strides = [2, 2]}}"
RELU_MAX = module("  %r = qv.relu(%x) : f32[1,1,4,4]\n" + zero_pad("[0, 0, 1, 1, 0, 0, 0, 0]", "1,1,5,5", "%r")
                  + f"  %m = qv.maxpool(%p) {MAX.format(ceil=0, k=3, pads='[0, 0, 1, 1]')} : f32[1,1,2,2]\n"
                  + "  output %m\n", consts="")
RELU_MAX_FOLDED = module("  %r = qv.relu(%x) : f32[1,1,4,4]\n"
                         + f"  %m = qv.maxpool(%r) {MAX.format(ceil=0, k=3, pads='[1, 1, 1, 1]')} : f32[1,1,2,2]\n"
                         + "  output %m\n", consts="")


def test_max_pool_of_relu_output_takes_the_pad():
    check_golden(RELU_MAX, "fold-pad", RELU_MAX_FOLDED)


# non-negative through a reshape, a concat and a clip(0, 6)
def test_non_negative_follows_data_movement():
    m = Module("m")
    b = Builder(m)
    x = m.add_input(Value(TensorType((1, 2, 4, 4), "f32"), "x"))
    r6 = b.op("qv.clip", [x], min=0.0, max=6.0)
    cat = b.op("qv.concat", [r6, b.op("qv.reshape", [b.op("qv.relu", [x])], shape=[1, 2, 4, 4])], axis=1)
    assert non_negative(cat) and non_negative(b.op("qv.maxpool", [cat], kernel=[2, 2], strides=[2, 2]))
    assert not non_negative(x) and not non_negative(b.op("qv.concat", [cat, x], axis=1))
    assert not non_negative(b.op("qv.clip", [x], min=-1.0, max=6.0))
    assert not non_negative(b.op("qv.pad", [r6], pads=[0, 0, 1, 1, 0, 0, 1, 1], value=-1.0))


# pad -> pad -> conv: the pads are visited last to first, so both fold
CHAIN = module(zero_pad("[0, 0, 1, 0, 0, 0, 0, 0]", "1,1,5,4")
               + zero_pad("[0, 0, 0, 1, 0, 0, 1, 1]", "1,1,6,6", "%p", "%q")
               + conv("%q", "[0, 0, 0, 0]", "1,1,4,4") + OUT_C)
CHAIN_FOLDED = module(conv("%x", "[1, 1, 1, 1]", "1,1,4,4") + OUT_C)


def test_a_chain_of_pads_folds_entirely():
    check_golden(CHAIN, "fold-pad", CHAIN_FOLDED)


# one pad read by a conv and an average pool: both take it, and the pad goes
SHARED = module(zero_pad("[0, 0, 1, 1, 0, 0, 1, 1]", "1,1,6,6")
                + conv("%p", "[0, 0, 0, 0]", "1,1,4,4")
                + avgpool("%p", 1, "[0, 0, 0, 0]", "1,1,4,4")
                + "  %s = qv.add(%c, %a) : f32[1,1,4,4]\n  output %s\n")
SHARED_FOLDED = module(conv("%x", "[1, 1, 1, 1]", "1,1,4,4")
                       + avgpool("%x", 1, "[1, 1, 1, 1]", "1,1,4,4")
                       + "  %s = qv.add(%c, %a) : f32[1,1,4,4]\n  output %s\n")


def test_a_pad_read_by_several_foldable_ops_folds_into_each():
    check_golden(SHARED, "fold-pad", SHARED_FOLDED)


def test_canonicalize_runs_fold_pad():
    assert CANONICALIZE.index("drop-identity") < CANONICALIZE.index("fold-pad") < CANONICALIZE.index("dce")
    check_golden(TF_SAME, CANONICALIZE, TF_SAME_FOLDED)


# -- pads that stay ----------------------------------------------------------------------------
def _conv_reads(mode: str = "constant", value: str = "0.0") -> str:
    """A 3x3 conv of a 4x4 input padded by one at the top and left, in `mode` with `value`."""
    pad = zero_pad("[0, 0, 1, 1, 0, 0, 0, 0]", "1,1,5,5", mode=mode, value=value)
    return module(pad + conv("%p", "[0, 0, 0, 0]", "1,1,3,3") + OUT_C)


STAYS = {
    # the border repeats input values, not zeros
    "reflect": _conv_reads(mode="reflect"),
    "edge": _conv_reads(mode="edge"),
    # convs pad with 0
    "nonzero_constant": _conv_reads(value="0.5"),
    # conv pads cover the spatial axes only
    "channel_axis": module(zero_pad("[0, 1, 0, 0, 0, 0, 0, 0]", "1,2,4,4")
                           + conv("%p", "[0, 0, 0, 0]", "1,1,4,4", w="%w2") + OUT_C,
                           consts="  const %w2 : f32[1,2,1,1] = [1.0, -1.0]\n"),
    "batch_axis": module(zero_pad("[1, 0, 0, 0, 0, 0, 0, 0]", "2,1,4,4") + conv("%p", "[1, 1, 1, 1]", "2,1,4,4") + OUT_C),
    # a crop cannot be a conv's pads
    "negative": module(zero_pad("[0, 0, 1, -1, 0, 0, 1, 0]", "1,1,6,3") + conv("%p", "[0, 1, 0, 1]", "1,1,4,3") + OUT_C),
    # the add needs the padded tensor anyway
    "other_reader": module(zero_pad("[0, 0, 1, 1, 0, 0, 1, 1]", "1,1,6,6") + conv("%p", "[1, 1, 1, 1]", "1,1,6,6")
                           + "  %s = qv.add(%c, %p) : f32[1,1,6,6]\n  output %s\n"),
    "module_output": module(zero_pad("[0, 0, 1, 1, 0, 0, 1, 1]", "1,1,6,6") + conv("%p", "[0, 0, 0, 0]", "1,1,4,4")
                            + "  output %c, %p\n"),
    # zeros beat negative inputs in the max; max-pool's own padding never wins
    "maxpool_signed_input": module(zero_pad("[0, 0, 1, 1, 0, 0, 0, 0]", "1,1,5,5")
                                   + f"  %m = qv.maxpool(%p) {MAX.format(ceil=0, k=3, pads='[0, 0, 1, 1]')} "
                                   + ": f32[1,1,2,2]\n  output %m\n", consts=""),
    # the first window lies wholly in the pad: 0 unfolded, the lowest float folded
    "maxpool_all_padding_window": module("  %r = qv.relu(%x) : f32[1,1,4,4]\n"
                                         + zero_pad("[0, 0, 2, 2, 0, 0, 0, 0]", "1,1,6,6", "%r")
                                         + f"  %m = qv.maxpool(%p) {MAX.format(ceil=0, k=2, pads='[0, 0, 0, 0]')} "
                                         + ": f32[1,1,3,3]\n  output %m\n", consts=""),
    # ceil_mode: the last window starts in the explicit end padding, which the folded pool drops
    "maxpool_ceil_mode_shape": module("  %r = qv.relu(%x) : f32[1,1,4,4]\n"
                                      + zero_pad("[0, 0, 0, 0, 0, 0, 1, 1]", "1,1,5,5", "%r")
                                      + f"  %m = qv.maxpool(%p) {MAX.format(ceil=1, k=2, pads='[0, 0, 0, 0]')} "
                                      + ": f32[1,1,3,3]\n  output %m\n", consts=""),
    # the pool divides by the input elements only, and its own padding would become counted
    "avgpool_excluding_own_pads": module(zero_pad("[0, 0, 1, 1, 0, 0, 1, 1]", "1,1,6,6")
                                         + avgpool("%p", 0, "[1, 1, 1, 1]", "1,1,6,6") + OUT_A, consts=""),
}


@pytest.mark.parametrize("case", STAYS)
def test_pad_stays(case):
    check_golden(STAYS[case], "fold-pad", STAYS[case])


QUANTIZED = """\
module @m {
  input %x : u8[1,1,4,4]{scale = 0.015625, zp = 3}
  %p = qv.pad(%x) {mode = "constant", pads = [0, 0, 1, 1, 0, 0, 1, 1], value = 0.0} : u8[1,1,6,6]{scale = 0.015625, zp = 3}
  %m = qv.maxpool(%p) {ceil_mode = 0, dilations = [1, 1], kernel = [3, 3], pads = [0, 0, 0, 0], strides = [1, 1]} \
: u8[1,1,4,4]{scale = 0.015625, zp = 3}
  %y = qv.dequantize(%m) : f32[1,1,4,4]
  output %y
}
"""


def test_quantized_pad_stays():
    """After `realize-quant` a pad already runs on the codes, filling with the zero point."""
    check_golden(QUANTIZED, "fold-pad", QUANTIZED)


# -- Hypothesis: folded against unfolded ------------------------------------------------------
@st.composite
def padded_graphs(draw):
    """(reader kind, its attrs, the pad's spatial widths [t, l, b, r], input shape, relu first)."""
    kind = draw(st.sampled_from(["conv", "depthwise", "avgpool", "maxpool"]))
    k = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    attrs = dict(strides=[draw(st.integers(1, 2)), draw(st.integers(1, 2))],
                 pads=[draw(st.integers(0, min(1, k[i % 2] - 1))) for i in range(4)])
    if kind != "avgpool":
        attrs["dilations"] = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    if kind in ("avgpool", "maxpool"):
        attrs.update(kernel=k, ceil_mode=int(draw(st.booleans())))
    if kind == "avgpool":
        attrs["count_include_pad"] = int(draw(st.booleans()))
    widths = [draw(st.integers(0, 2)) for _ in range(4)]
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(2, 7)), draw(st.integers(2, 7)))
    return kind, k, attrs, widths, shape, draw(st.booleans())


def _build(kind, k, attrs, widths, shape, relu, rng) -> Module:
    m = Module("random")
    b = Builder(m)
    x = m.add_input(Value(TensorType(shape, "f32"), "x"))
    if relu:
        x = b.op("qv.relu", [x], result_names=["r"])
    t, left, bottom, right = widths
    p = b.op("qv.pad", [x], pads=[0, 0, t, left, 0, 0, bottom, right], result_names=["p"])
    try:
        if kind in ("conv", "depthwise"):
            c = shape[1]
            wshape = (c, 1, *k) if kind == "depthwise" else (2, c, *k)
            w = m.add_constant(rng.standard_normal(wshape).astype(np.float32), "w")
            y = b.op("qv.conv", [p, w], group=c if kind == "depthwise" else 1, result_names=["y"], **attrs)
        else:
            y = b.op(f"qv.{kind}", [p], result_names=["y"], **attrs)
    except ShapeError:
        assume(False)
    m.outputs = [y]
    return m


def _should_fold(kind, attrs, widths, relu) -> bool:
    """When a fold must happen (the maxpool and ceil_mode cases are decided by the pass's own
    window test, so only the unconditional ones are asserted here)."""
    if not any(widths):
        return True
    if kind in ("conv", "depthwise"):
        return True
    if kind == "avgpool" and not attrs["ceil_mode"]:
        return bool(attrs["count_include_pad"]) or not any(attrs["pads"])
    return False


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(case=padded_graphs(), seed=st.integers(0, 2**32 - 1))
def test_fold_is_exact_in_fp32(case, seed):
    kind, k, attrs, widths, shape, relu = case
    m = _build(kind, k, attrs, widths, shape, relu, np.random.default_rng(seed))
    check_pass(m, ["drop-identity", "fold-pad"], None, rtol=1e-5, seed=seed)
    folded = not any(op.name == "qv.pad" for op in m.ops)
    if _should_fold(kind, attrs, widths, relu):
        assert folded, str(m)
    if kind == "maxpool" and not relu and any(widths):
        assert not folded, "a max pool of signed input must keep its zero pad"


# -- int8: compile with and without fold-pad ------------------------------------------------------
def _onnx_model(reader: str, widths, seed: int) -> onnx.ModelProto:
    """x [1,3,8,8] -> conv 1x1 (3->4) -> relu -> Pad(widths) -> reader -> conv 1x1 (4->2) -> y.
    `reader`: "conv" (3x3 stride 2), "depthwise" (3x3), "maxpool" (3x3 stride 2) or "avgpool"
    (3x3, count_include_pad = 1); "input" pads the model input in front of the first conv instead
    (an fp32 pad before the first quantize)."""
    rng = np.random.default_rng(seed)
    t, left, bottom, right = widths
    inits = {"w0": rng.standard_normal((4, 3, 1, 1)), "w2": rng.standard_normal((2, 4, 1, 1)),
             "pads": np.array([0, 0, t, left, 0, 0, bottom, right], np.int64)}
    conv0 = helper.make_node("Conv", ["p" if reader == "input" else "x", "w0"], ["c0"], name="conv0")
    relu = helper.make_node("Relu", ["c0"], ["r"])
    if reader == "input":
        nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"), conv0, relu]
    else:
        nodes = [conv0, relu, helper.make_node("Pad", ["r", "pads"], ["p"], mode="constant")]
    if reader in ("conv", "depthwise"):
        inits["w1"] = rng.standard_normal((4, 4 if reader == "conv" else 1, 3, 3))
        nodes.append(helper.make_node("Conv", ["p", "w1"], ["q"], name="conv1", kernel_shape=[3, 3],
                                      strides=[2, 2] if reader == "conv" else [1, 1],
                                      group=1 if reader == "conv" else 4))
    elif reader == "maxpool":
        nodes.append(helper.make_node("MaxPool", ["p"], ["q"], kernel_shape=[3, 3], strides=[2, 2]))
    elif reader == "avgpool":
        nodes.append(helper.make_node("AveragePool", ["p"], ["q"], kernel_shape=[3, 3], count_include_pad=1))
    nodes.append(helper.make_node("Conv", ["r" if reader == "input" else "q", "w2"], ["y"], name="conv2"))
    graph = helper.make_graph(
        nodes, "padded", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32) if v.dtype.kind == "f" else v, n) for n, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@settings(max_examples=20, deadline=None)
@given(reader=st.sampled_from(["conv", "depthwise", "maxpool", "avgpool", "input"]),
       widths=st.lists(st.integers(0, 2), min_size=4, max_size=4).filter(any), seed=st.integers(0, 2**32 - 1))
def test_fold_is_bit_exact_in_int8(reader, widths, seed):
    model = _onnx_model(reader, widths, seed)
    rng = np.random.default_rng(seed)
    calibration = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    test = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    options = dict(precision="int8", backend="reference")
    folded, unfolded = qv2c.compile(model, calibration, **options), compile_unfolded(model, calibration, **options)
    assert "qv.pad" not in folded.ir and "qv.pad" in unfolded.ir
    if reader != "input":  # the unfolded pad runs on the u8 codes, not on a dequantized copy
        assert folded.ir.count("qv.quantize(") == unfolded.ir.count("qv.quantize(") == 1
    np.testing.assert_array_equal(folded(test), unfolded(test))
