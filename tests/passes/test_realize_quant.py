"""Golden and numeric tests of `realize-quant` (qv2c/passes/realize_quant.py).

Golden tests: a small fp32 module in IR text, hand-written activation ranges keyed by
printed value name, a set of int8 layers, and the expected mixed module. Ranges and
weights are chosen so that every scale is a power of two and each number in the
expected text can be checked by hand:
- a u8 range [lo, hi] gets scale (hi - lo) / 255 and zero point -lo / scale, e.g.
  [-1, 0.9921875] -> 2^-7, 128 and [0, 3.984375] -> 2^-6, 0;
- weights get scale max|w[c]| / 127 per output channel, e.g. 1.984375 -> 2^-6, q = 127;
- a bias is round(b / (s_x * s_w[c])) in int32.

Numeric tests: a random conv net (residual add, concat, pooling, gemm) calibrated on
random inputs must stay close to fp32 (SQNR > 25 dB) for every assignment, placement
and scale scheme.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from qv2c.errors import ConfigError
from qv2c.ir import Builder, Module, TensorType, Value, interpret, parse
from qv2c.ir.quant_math import is_power_of_two
from qv2c.passes.calibrate import calibrate
from qv2c.passes.calibration_data import CalibrationSet
from qv2c.passes.layers import is_quantizable_layer, layer_name, quantizable_layers
from qv2c.passes.realize_quant import QuantScheme, realize_quant

CONV = "{dilations = [1, 1], group = 1, pads = [0, 0, 0, 0], strides = [1, 1]}"
QCONV = '{{act = "{act}", dilations = [1, 1], group = 1, pads = [0, 0, 0, 0], requant = "{requant}", strides = [1, 1]}}'
POOL = "{ceil_mode = 0, dilations = [1, 1], kernel = [2, 2], pads = [0, 0, 0, 0], strides = [2, 2]}"
#: x in [-1, 127/128]: u8 scale 2^-7, zero point 128
X_RANGE = (-1.0, 0.9921875)


def realized(text: str, int8_layers: set[str], ranges: dict, scheme: QuantScheme | None = None,
             placement: str = "boundary") -> str:
    """The printed result of `realize_quant` on the module parsed from `text` (verified first)."""
    out = realize_quant(parse(text), int8_layers, ranges, scheme or QuantScheme(), placement).module
    out.verify()
    return str(out)


# -- conv -> relu -> maxpool -> conv ------------------------------------------------
CHAIN = f"""\
module @chain {{
  input %x : f32[1,1,4,4]
  const %w1 : f32[2,1,1,1] = [1.984375, -0.9921875]
  const %b1 : f32[2] = [0.25, -0.5]
  const %w2 : f32[1,2,1,1] = [0.9921875, -0.5]
  %c1 = qv.conv(%x, %w1, %b1) {CONV} : f32[1,2,4,4] loc("conv1")
  %r1 = qv.relu(%c1) : f32[1,2,4,4]
  %p = qv.maxpool(%r1) {POOL} : f32[1,2,2,2]
  %c2 = qv.conv(%p, %w2) {CONV} : f32[1,1,2,2] loc("conv2")
  output %c2
}}
"""
CHAIN_RANGES = {"x": X_RANGE, "c1": (-2.0, 2.0), "r1": (0.0, 3.984375), "p": (0.0, 3.984375), "c2": (-2.0, 1.984375)}

# w1 scales [2^-6, 2^-7] -> [127, -127]; bias scales 2^-7 * [2^-6, 2^-7] -> [0.25 * 2^13, -0.5 * 2^14];
# w2 scale 2^-7 -> [127, -64]; r1 and p share [0, 3.984375] -> 2^-6, 0; c2 [-2, 1.984375] -> 2^-6, 128
CHAIN_CONSTS = """\
  const %w1_q : i8[2,1,1,1]{axis = 0, scale = [0.015625, 0.0078125], zp = [0, 0]} = [127, -127]
  const %w1_bias_q : i32[2]{axis = 0, scale = [0.0001220703125, 6.103515625e-05], zp = [0, 0]} = [2048, -8192]
"""
CHAIN_W2Q = "  const %w2_q : i8[1,2,1,1]{axis = 0, scale = [0.0078125], zp = [0]} = [127, -64]\n"
CHAIN_HEAD = f"""\
  %x_q = qv.quantize(%x) : u8[1,1,4,4]{{scale = 0.0078125, zp = 128}}
  %r1 = qv.qconv(%x_q, %w1_q, %w1_bias_q) {QCONV.format(act="relu", requant="float")} \
: u8[1,2,4,4]{{scale = 0.015625, zp = 0}} loc("conv1")
"""

CHAIN_ALL_INT8 = f"""\
module @chain {{
  input %x : f32[1,1,4,4]
{CHAIN_CONSTS}{CHAIN_W2Q}{CHAIN_HEAD}\
  %p = qv.maxpool(%r1) {POOL} : u8[1,2,2,2]{{scale = 0.015625, zp = 0}}
  %c2 = qv.qconv(%p, %w2_q) {QCONV.format(act="none", requant="float")} : u8[1,1,2,2]{{scale = 0.015625, zp = 128}} loc("conv2")
  %c2_1 = qv.dequantize(%c2) : f32[1,1,2,2]
  output %c2_1
}}
"""


def test_int8_chain_quantizes_once_fuses_relu_and_pools_on_u8():
    assert realized(CHAIN, {"conv1", "conv2"}, CHAIN_RANGES) == CHAIN_ALL_INT8


def test_sources_name_the_fp32_value_each_version_stands_for():
    """The sensitivity analysis compares every value of the int8 model with the fp32 value it
    stands for: its integer version, its quantize and its dequantize all name that value."""
    out = realize_quant(parse(CHAIN), {"conv1", "conv2"}, CHAIN_RANGES, QuantScheme())
    assert [(op.name, out.sources.get(id(op.result))) for op in out.module.ops] == [
        ("qv.quantize", "x"), ("qv.qconv", "r1"), ("qv.maxpool", "p"), ("qv.qconv", "c2"), ("qv.dequantize", "c2")]
    assert out.sources[id(out.module.inputs[0])] == "x"


# the fp32 conv2 keeps its fp32 weights (printed first: they were the module's own constant)
CHAIN_SECOND_FP32 = f"""\
module @chain {{
  input %x : f32[1,1,4,4]
  const %w2 : f32[1,2,1,1] = [0.9921875, -0.5]
{CHAIN_CONSTS}{CHAIN_HEAD}\
  %p = qv.maxpool(%r1) {POOL} : u8[1,2,2,2]{{scale = 0.015625, zp = 0}}
  %p_dq = qv.dequantize(%p) : f32[1,2,2,2]
  %c2 = qv.conv(%p_dq, %w2) {CONV} : f32[1,1,2,2] loc("conv2")
  output %c2
}}
"""


def test_dequantize_only_where_precision_changes():
    assert realized(CHAIN, {"conv1"}, CHAIN_RANGES) == CHAIN_SECOND_FP32


# per-op: every integer result is dequantized at once, so the maxpool runs in fp32 and
# conv2 quantizes its input again (with p's own range)
CHAIN_PER_OP = f"""\
module @chain {{
  input %x : f32[1,1,4,4]
{CHAIN_CONSTS}{CHAIN_W2Q}{CHAIN_HEAD}\
  %r1_dq = qv.dequantize(%r1) : f32[1,2,4,4]
  %p = qv.maxpool(%r1_dq) {POOL} : f32[1,2,2,2]
  %p_q = qv.quantize(%p) : u8[1,2,2,2]{{scale = 0.015625, zp = 0}}
  %c2 = qv.qconv(%p_q, %w2_q) {QCONV.format(act="none", requant="float")} : u8[1,1,2,2]{{scale = 0.015625, zp = 128}} loc("conv2")
  %c2_1 = qv.dequantize(%c2) : f32[1,1,2,2]
  output %c2_1
}}
"""


def test_per_op_placement_wraps_every_int8_op():
    assert realized(CHAIN, {"conv1", "conv2"}, CHAIN_RANGES, placement="per-op") == CHAIN_PER_OP


# -- residual add ---------------------------------------------------------------------
RESIDUAL = f"""\
module @residual {{
  input %x : f32[1,2,2,2]
  const %wa : f32[2,2,1,1] = [0.9921875, 0.5, -0.25, 0.49609375]
  const %wb : f32[2,2,1,1] = [-0.49609375, 0.125, 0.9921875, 0.0]
  %a = qv.conv(%x, %wa) {CONV} : f32[1,2,2,2] loc("conv_a")
  %b = qv.conv(%x, %wb) {CONV} : f32[1,2,2,2] loc("conv_b")
  %s = qv.add(%a, %b) : f32[1,2,2,2]
  %r = ACTIVATION : f32[1,2,2,2]
  output %r
}}
"""
RESIDUAL_RANGES = {"x": X_RANGE, "a": (-2.0, 1.984375), "b": X_RANGE, "s": (-2.0, 1.984375), "r": (0.0, 3.984375)}

RESIDUAL_HEAD = f"""\
module @residual {{
  input %x : f32[1,2,2,2]
  const %wa_q : i8[2,2,1,1]{{axis = 0, scale = [0.0078125, 0.00390625], zp = [0, 0]}} = [127, 64, -64, 127]
  const %wb_q : i8[2,2,1,1]{{axis = 0, scale = [0.00390625, 0.0078125], zp = [0, 0]}} = [-127, 32, 127, 0]
  %x_q = qv.quantize(%x) : u8[1,2,2,2]{{scale = 0.0078125, zp = 128}}
  %a = qv.qconv(%x_q, %wa_q) {QCONV.format(act="none", requant="float")} : u8[1,2,2,2]{{scale = 0.015625, zp = 128}} loc("conv_a")
  %b = qv.qconv(%x_q, %wb_q) {QCONV.format(act="none", requant="float")} : u8[1,2,2,2]{{scale = 0.0078125, zp = 128}} loc("conv_b")
"""

RESIDUAL_RELU = RESIDUAL_HEAD + """\
  %r = qv.qadd(%a, %b) {act = "relu"} : u8[1,2,2,2]{scale = 0.015625, zp = 0}
  %r_1 = qv.dequantize(%r) : f32[1,2,2,2]
  output %r_1
}
"""


def test_residual_add_of_int8_branches_is_a_qadd_with_relu_fused():
    assert realized(RESIDUAL.replace("ACTIVATION", "qv.relu(%s)"), {"conv_a", "conv_b"}, RESIDUAL_RANGES) == RESIDUAL_RELU


# qv.qadd has no relu6 epilogue: the clip stays a separate integer clip on the sum
RESIDUAL_RELU6 = RESIDUAL_HEAD + """\
  %s = qv.qadd(%a, %b) {act = "none"} : u8[1,2,2,2]{scale = 0.015625, zp = 128}
  %r = qv.qclip(%s) {max = 6.0, min = 0.0} : u8[1,2,2,2]{scale = 0.015625, zp = 128}
  %r_1 = qv.dequantize(%r) : f32[1,2,2,2]
  output %r_1
}
"""


def test_residual_add_followed_by_relu6_is_not_fused_into_the_qadd():
    text = RESIDUAL.replace("ACTIVATION", "qv.clip(%s) {max = 6.0, min = 0.0}")
    assert realized(text, {"conv_a", "conv_b"}, RESIDUAL_RANGES) == RESIDUAL_RELU6


# -- concat -------------------------------------------------------------------------
CONCAT = f"""\
module @concat {{
  input %x : f32[1,1,2,2]
  const %wa : f32[1,1,1,1] = [0.9921875]
  const %wb : f32[1,1,1,1] = [-0.49609375]
  %a = qv.conv(%x, %wa) {CONV} : f32[1,1,2,2] loc("conv_a")
  %b = qv.conv(%x, %wb) {CONV} : f32[1,1,2,2] loc("conv_b")
  %c = qv.concat(%a, %b) {{axis = 1}} : f32[1,2,2,2]
  output %c
}}
"""
# a and b have narrower ranges of their own; both convs requantize straight into c's [-2, 1.984375]
CONCAT_RANGES = {"x": X_RANGE, "a": X_RANGE, "b": (-0.5, 0.5), "c": (-2.0, 1.984375)}

CONCAT_INT8 = f"""\
module @concat {{
  input %x : f32[1,1,2,2]
  const %wa_q : i8[1,1,1,1]{{axis = 0, scale = [0.0078125], zp = [0]}} = [127]
  const %wb_q : i8[1,1,1,1]{{axis = 0, scale = [0.00390625], zp = [0]}} = [-127]
  %x_q = qv.quantize(%x) : u8[1,1,2,2]{{scale = 0.0078125, zp = 128}}
  %a = qv.qconv(%x_q, %wa_q) {QCONV.format(act="none", requant="float")} : u8[1,1,2,2]{{scale = 0.015625, zp = 128}} loc("conv_a")
  %b = qv.qconv(%x_q, %wb_q) {QCONV.format(act="none", requant="float")} : u8[1,1,2,2]{{scale = 0.015625, zp = 128}} loc("conv_b")
  %c = qv.concat(%a, %b) {{axis = 1}} : u8[1,2,2,2]{{scale = 0.015625, zp = 128}}
  %c_1 = qv.dequantize(%c) : f32[1,2,2,2]
  output %c_1
}}
"""


def test_concat_of_int8_convs_unifies_ranges_without_requantize():
    assert realized(CONCAT, {"conv_a", "conv_b"}, CONCAT_RANGES) == CONCAT_INT8


# -- gemm -------------------------------------------------------------------------------
GEMM = """\
module @gemm {
  input %x : f32[1,3]
  const %w : f32[3,2] = [1.0, 0.5, -3.96875, 0.25, 2.0, -1.984375]
  const %c : f32[2] = [0.25, -0.5]
  %y = qv.gemm(%x, %w, %c) {alpha = 0.5, beta = 2.0, trans_a = 0, trans_b = 0} : f32[1,2] loc("fc")
  output %y
}
"""

# weights [N, K] = alpha * w^T = [[0.5, -1.984375, 1.0], [0.25, 0.125, -0.9921875]]: scales [2^-6, 2^-7];
# bias beta * c = [0.5, -1.0] at scales 2^-7 * [2^-6, 2^-7]; y in [-4, 3.96875] -> 2^-5, 128
GEMM_INT8 = """\
module @gemm {
  input %x : f32[1,3]
  const %w_q : i8[2,3]{axis = 0, scale = [0.015625, 0.0078125], zp = [0, 0]} = [32, -127, 64, 32, 16, -127]
  const %w_bias_q : i32[2]{axis = 0, scale = [0.0001220703125, 6.103515625e-05], zp = [0, 0]} = [4096, -16384]
  %x_q = qv.quantize(%x) : u8[1,3]{scale = 0.0078125, zp = 128}
  %y = qv.qgemm(%x_q, %w_q, %w_bias_q) {act = "none", requant = "float"} : u8[1,2]{scale = 0.03125, zp = 128} loc("fc")
  %y_1 = qv.dequantize(%y) : f32[1,2]
  output %y_1
}
"""


def test_gemm_folds_transpose_alpha_and_beta():
    assert realized(GEMM, {"fc"}, {"x": X_RANGE, "y": (-4.0, 3.96875)}) == GEMM_INT8


def test_gemm_whose_bias_varies_by_row_stays_fp32():
    """ONNX lets Gemm's C be [M, N]; qv.qgemm's int32 bias is one value per column, so
    such a gemm is no quantizable layer (it used to crash while folding the bias)."""
    text = """\
module @rowbias {
  input %x : f32[2,3]
  const %w : f32[2,3] = [1.0, 0.5, -1.0, 0.25, 2.0, -1.5]
  const %c : f32[2,2] = [0.25, -0.5, 1.0, 2.0]
  %y = qv.gemm(%x, %w, %c) {alpha = 1.0, beta = 1.0, trans_a = 0, trans_b = 1} : f32[2,2] loc("fc")
  output %y
}
"""
    m = parse(text)
    assert not is_quantizable_layer(m.ops[0])
    assert realized(text, {"fc"}, {"x": X_RANGE, "y": (-4.0, 4.0)}) == text
    column_bias = text.replace("f32[2,2] = [0.25, -0.5, 1.0, 2.0]", "f32[1,2] = [0.25, -0.5]")
    assert is_quantizable_layer(parse(column_bias).ops[0])


# -- fused relu6 and power-of-two scales ---------------------------------------------------
RELU6 = f"""\
module @relu6 {{
  input %x : f32[1,1,2,2]
  const %w : f32[1,1,1,1] = [1.5]
  const %b : f32[1] = [0.1]
  %c = qv.conv(%x, %w, %b) {CONV} : f32[1,1,2,2] loc("conv")
  %y = qv.clip(%c) {{max = 6.0, min = 0.0}} : f32[1,1,2,2]
  output %y
}}
"""
RELU6_RANGES = {"x": (-1.0, 1.0), "c": (-2.0, 2.0), "y": (0.0, 6.0)}

# scales are no longer round numbers: x 2/255, y 6/255, w 1.5/127 (each rounded to float32); the
# bias scale is their exact product, and 0.1 / 9.263548452187985e-05 = 1079.49994 rounds to 1079
RELU6_FLOAT = f"""\
module @relu6 {{
  input %x : f32[1,1,2,2]
  const %w_q : i8[1,1,1,1]{{axis = 0, scale = [0.011811023578047752], zp = [0]}} = [127]
  const %w_bias_q : i32[1]{{axis = 0, scale = [9.263548452187985e-05], zp = [0]}} = [1079]
  %x_q = qv.quantize(%x) : u8[1,1,2,2]{{scale = 0.007843137718737125, zp = 127}}
  %y = qv.qconv(%x_q, %w_q, %w_bias_q) {QCONV.format(act="relu6", requant="float")} : u8[1,1,2,2]{{scale = 0.0235294122248888, zp = 0}} loc("conv")
  %y_1 = qv.dequantize(%y) : f32[1,1,2,2]
  output %y_1
}}
"""


def test_clip_0_6_is_fused_as_relu6():
    assert realized(RELU6, {"conv"}, RELU6_RANGES) == RELU6_FLOAT


# each scale rounds UP to a power of two: x 2/255 -> 2^-6 (zero point 1 / 2^-6 = 64),
# y 6/255 -> 2^-5, w 1.5/127 -> 2^-6 (q = 96); bias 0.1 / 2^-12 = 409.6 -> 410;
# the multiplier 2^-6 * 2^-6 / 2^-5 = 2^-7 is a shift
RELU6_POW2 = f"""\
module @relu6 {{
  input %x : f32[1,1,2,2]
  const %w_q : i8[1,1,1,1]{{axis = 0, scale = [0.015625], zp = [0]}} = [96]
  const %w_bias_q : i32[1]{{axis = 0, scale = [0.000244140625], zp = [0]}} = [410]
  %x_q = qv.quantize(%x) : u8[1,1,2,2]{{scale = 0.015625, zp = 64}}
  %y = qv.qconv(%x_q, %w_q, %w_bias_q) {QCONV.format(act="relu6", requant="shift")} : u8[1,1,2,2]{{scale = 0.03125, zp = 0}} loc("conv")
  %y_1 = qv.dequantize(%y) : f32[1,1,2,2]
  output %y_1
}}
"""


def test_power_of_two_scheme_golden():
    assert realized(RELU6, {"conv"}, RELU6_RANGES, QuantScheme(scale_kind="power-of-2")) == RELU6_POW2


def test_unknown_placement_is_a_config_error():
    with pytest.raises(ConfigError, match="placement"):
        realize_quant(parse(CHAIN), {"conv1"}, CHAIN_RANGES, placement="everywhere")


def test_power_of_two_shift_out_of_range_names_the_layer():
    """A calibrated range so wide that conv2's power-of-2 multiplier would need a shift beyond what the
    integer requantization can do (M = 2^-7 * 2^-7 / 2^103 = 2^-117) is refused at compile time, for
    every backend, with a one-line ConfigError naming the layer; per-layer float scales are fine."""
    ranges = dict(CHAIN_RANGES, c2=(-2.0 ** 110, 2.0 ** 110))
    with pytest.raises(ConfigError, match=r"conv2.*outside \[-31, 62\]; keep this layer in fp32") as err:
        realize_quant(parse(CHAIN), {"conv1", "conv2"}, ranges, QuantScheme(scale_kind="power-of-2"))
    assert "\n" not in str(err.value)
    realize_quant(parse(CHAIN), {"conv1", "conv2"}, ranges)  # float requantization has no such limit
    realize_quant(parse(CHAIN), {"conv1"}, ranges, QuantScheme(scale_kind="power-of-2"))  # conv2 kept fp32


def test_missing_range_names_the_value():
    ranges = {k: v for k, v in CHAIN_RANGES.items() if k != "x"}
    with pytest.raises(ConfigError, match="%x"):
        realize_quant(parse(CHAIN), {"conv1"}, ranges)


# -- numerics on a random net -------------------------------------------------------------
def random_net(seed: int = 0, batch: int = 2) -> Module:
    """conv/relu/maxpool, a residual block (3x3 + relu, 1x1, add, relu), concat, global
    average pool, reshape and a gemm: every rewrite rule of realize-quant in one module."""
    rng = np.random.default_rng(seed)
    m = Module("net")
    b = Builder(m)

    def const(name: str, *shape: int, scale: float = 1.0) -> Value:
        return m.add_constant((scale * rng.standard_normal(shape)).astype(np.float32), name)

    def conv(x, name, cout, cin, k, **attrs):
        w = const(f"{name}_w", cout, cin, k, k, scale=math.sqrt(2.0 / (cin * k * k)))
        return b.op("qv.conv", [x, w, const(f"{name}_b", cout, scale=0.1)], meta={"onnx_node": name},
                    pads=[k // 2] * 4, result_names=[name], **attrs)

    x = m.add_input(Value(TensorType((batch, 3, 8, 8), "f32"), "x"))
    r1 = b.op("qv.relu", [conv(x, "conv1", 8, 3, 3)], result_names=["r1"])
    p = b.op("qv.maxpool", [r1], kernel=[2, 2], strides=[2, 2], result_names=["p"])
    r2 = b.op("qv.relu", [conv(p, "conv2", 8, 8, 3)], result_names=["r2"])
    s = b.op("qv.add", [r2, conv(p, "conv3", 8, 8, 1)], result_names=["s"])
    r = b.op("qv.relu", [s], result_names=["r"])
    cat = b.op("qv.concat", [r, p], axis=1, result_names=["cat"])
    g = b.op("qv.global_avgpool", [cat], result_names=["g"])
    f = b.op("qv.reshape", [g], shape=[batch, 16], result_names=["f"])
    wf, bf = const("fc_w", 10, 16, scale=0.25), const("fc_b", 10, scale=0.1)
    m.outputs = [b.op("qv.gemm", [f, wf, bf], trans_b=1, meta={"onnx_node": "fc"}, result_names=["y"])]
    m.verify()
    return m


def sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    ref, err = ref.astype(np.float64), approx.astype(np.float64) - ref
    return 10.0 * math.log10(float(np.sum(ref * ref)) / max(float(np.sum(err * err)), 1e-30))


NET_LAYERS = ["conv1", "conv2", "conv3", "fc"]
NUMERIC_CASES = {
    "all-int8": (set(NET_LAYERS), QuantScheme(), "boundary"),
    "conv1-fp32": ({"conv2", "conv3", "fc"}, QuantScheme(), "boundary"),
    "conv3-fp32": ({"conv1", "conv2", "fc"}, QuantScheme(), "boundary"),
    "fc-fp32": ({"conv1", "conv2", "conv3"}, QuantScheme(), "boundary"),
    "per-op": (set(NET_LAYERS), QuantScheme(), "per-op"),
    "per-tensor": (set(NET_LAYERS), QuantScheme("per-tensor"), "boundary"),
    "power-of-2": (set(NET_LAYERS), QuantScheme(scale_kind="power-of-2"), "boundary"),
}


@pytest.fixture(scope="module")
def calibrated_net():
    """The random net, its minmax ranges over 32 random samples, and 16 fresh samples
    from the same distribution (so they lie within the calibrated ranges)."""
    m = random_net()
    assert [layer_name(op) for op in quantizable_layers(m)] == NET_LAYERS
    rng = np.random.default_rng(1)
    calib, test = rng.random((32, 3, 8, 8), dtype=np.float32), rng.random((16, 3, 8, 8), dtype=np.float32)
    return m, calibrate(m, CalibrationSet({"x": calib}), batch=2), test


@pytest.mark.parametrize("case", NUMERIC_CASES)
def test_realized_net_stays_close_to_fp32(calibrated_net, case):
    m, ranges, test = calibrated_net
    int8_layers, scheme, placement = NUMERIC_CASES[case]
    q = realize_quant(m, int8_layers, ranges, scheme, placement).module
    q.verify()
    ops = [op.name for op in q.ops]
    assert ops.count("qv.qconv") + ops.count("qv.qgemm") == len(int8_layers)
    ref = np.concatenate([interpret(m, {"x": test[i:i + 2]})["y"] for i in range(0, 16, 2)])
    got = np.concatenate([interpret(q, {"x": test[i:i + 2]})["y"] for i in range(0, 16, 2)])
    assert sqnr_db(ref, got) > 25.0


def test_all_int8_net_is_one_integer_island(calibrated_net):
    """Boundary placement: one quantize (the input), one dequantize (the output); pooling,
    reshape and the residual add stay integer. The maxpool branch keeps conv1's scale,
    so the concat requantizes it unless that scale already is the concat's."""
    m, ranges, _ = calibrated_net
    q = realize_quant(m, set(NET_LAYERS), ranges).module
    ops = [op.name for op in q.ops]
    assert [o for o in ops if o != "qv.requantize"] == [
        "qv.quantize", "qv.qconv", "qv.maxpool", "qv.qconv", "qv.qconv", "qv.qadd",
        "qv.concat", "qv.qglobal_avgpool", "qv.reshape", "qv.qgemm", "qv.dequantize"]
    concat = next(op for op in q.ops if op.name == "qv.concat")
    assert all(v.type.quant == concat.result.type.quant for v in concat.operands)
    assert ops.count("qv.requantize") == sum(v.owner.name == "qv.requantize" for v in concat.operands)


def test_power_of_two_scheme_uses_shifts_and_power_of_two_scales(calibrated_net):
    m, ranges, _ = calibrated_net
    q = realize_quant(m, set(NET_LAYERS), ranges, QuantScheme(scale_kind="power-of-2")).module
    layers = [op for op in q.ops if op.name in ("qv.qconv", "qv.qgemm")]
    assert len(layers) == 4 and all(op.attrs["requant"] == "shift" for op in layers)
    quantized = [v.type.quant for v in q.constants if v.type.quant is not None]
    quantized += [r.type.quant for op in q.ops for r in op.results if r.type.quant is not None]
    assert len(quantized) > 10 and all(is_power_of_two(qp.scale) for qp in quantized)


GOLDEN_SOURCES = {
    "chain": (CHAIN, {"conv1", "conv2"}),
    "residual-relu": (RESIDUAL.replace("ACTIVATION", "qv.relu(%s)"), {"conv_a", "conv_b"}),
    "residual-relu6": (RESIDUAL.replace("ACTIVATION", "qv.clip(%s) {max = 6.0, min = 0.0}"), {"conv_a", "conv_b"}),
    "concat": (CONCAT, {"conv_a", "conv_b"}),
    "gemm": (GEMM, {"fc"}),
    "relu6": (RELU6, {"conv"}),
}


@pytest.mark.parametrize("name", GOLDEN_SOURCES)
@pytest.mark.parametrize("scheme", [QuantScheme(), QuantScheme(scale_kind="power-of-2")], ids=["float", "pow2"])
def test_golden_sources_stay_close_to_fp32(name, scheme):
    """The golden modules, calibrated on inputs uniform in [-1, 1), compute what their
    fp32 originals do (this also checks gemm's alpha, beta and transpose numerically)."""
    text, int8_layers = GOLDEN_SOURCES[name]
    m = parse(text)
    rng = np.random.default_rng(2)
    shape = m.inputs[0].type.shape[1:]
    calib, test = (rng.uniform(-1.0, 1.0, (n, *shape)).astype(np.float32) for n in (64, 16))
    ranges = calibrate(m, CalibrationSet({"x": calib}), batch=1)
    q = realize_quant(m, int8_layers, ranges, scheme).module
    ref = np.concatenate([interpret(m, {"x": test[i:i + 1]})[m.outputs[0].name] for i in range(16)])
    got = np.concatenate([interpret(q, {"x": test[i:i + 1]})[m.outputs[0].name] for i in range(16)])
    assert sqnr_db(ref, got) > 25.0
