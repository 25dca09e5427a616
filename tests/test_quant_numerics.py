"""Quantization numerics: `qv2c/ir/quant_math.py`, the integer ops of `qv2c/ir/quant_ops.py`
and their reference implementations, differential-tested.

Two kinds of oracle:
- an independent NumPy computation (int64 loops for accumulators, the documented
  float32 requantization formula written out here): integer results must be equal;
- onnxruntime (QuantizeLinear, DequantizeLinear, QLinearConv, QLinearMatMul,
  MatMulInteger, com.microsoft QLinearAdd / QLinearAveragePool /
  QLinearGlobalAveragePool): bit-exact where ORT computes the same float32 formula,
  otherwise within 1 LSB, and bit-exact whenever ORT's float32-step multiplier
  happens to equal ours.

onnxruntime's u8 x s8 kernels on AVX2 machines without VNNI sum pairs of products in
int16 with saturation (vpmaddubsw), so they are wrong when |x * w| pairs exceed 32767;
the ORT comparisons therefore draw weights in [-63, 63] (ORT's own `reduce_range`).
Our reference accumulates exactly; the full weight range is covered by the
independent-oracle tests.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from qv2c.errors import QV2CError, VerificationError
from qv2c.ir import OPS, Builder, Module, QuantParams, TensorType, Value, interpret
from qv2c.ir.quant_math import (
    WEIGHT_QMAX,
    activation_bounds,
    choose_activation_params,
    dequantize,
    is_power_of_two,
    quantize,
    quantize_bias,
    quantize_weights,
    requantize_float,
    requantize_multiplier,
    requantize_shift,
    shift_of,
)

F32 = np.float32
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**32 - 1)
QR = {"u8": (0, 255), "i8": (-128, 127)}
NP = {"u8": np.uint8, "i8": np.int8}


# -- running the IR and onnxruntime ---------------------------------------------
def run_ir(name: str, operands: list[tuple[np.ndarray, TensorType]], result_type: TensorType, verify: bool = True,
           **attrs) -> np.ndarray:
    """Build `name(operands...)` as a one-op module (every operand a module input), verify and interpret it."""
    m = Module("t")
    vals = [m.add_input(Value(t, f"x{i}")) for i, (_, t) in enumerate(operands)]
    y = Builder(m).op(name, vals, result_types=[result_type], **attrs)
    m.outputs = [y]
    if verify:
        m.verify()
    out = interpret(m, {f"x{i}": a for i, (a, _) in enumerate(operands)})
    (arr,) = out.values()
    assert arr.dtype == result_type.numpy_dtype and arr.shape == result_type.shape
    return arr


def run_ort(op_type: str, inputs: list[np.ndarray], consts: list, out_dtype, domain: str = "", **attrs) -> np.ndarray:
    """Run the one-node model `op_type(inputs..., consts...)` with onnxruntime, graph optimisation off."""
    names = [f"x{i}" for i in range(len(inputs))] + [f"c{i}" for i in range(len(consts))]
    node = helper.make_node(op_type, names, ["y"], domain=domain, **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(f"x{i}", helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for i, a in enumerate(inputs)],
        [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(np.dtype(out_dtype)), None)],
        [numpy_helper.from_array(np.asarray(c), f"c{i}") for i, c in enumerate(consts)],
    )
    return run_ort_graph(graph, inputs, domain)


def run_ort_graph(graph, inputs: list[np.ndarray], domain: str = "") -> np.ndarray:
    opsets = [helper.make_opsetid("", 19)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {f"x{i}": a for i, a in enumerate(inputs)})[0]


# -- independent formulas --------------------------------------------------------
def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=F32)


def our_multiplier(s_x, s_w, s_y, count=1) -> np.ndarray:
    """Our documented M: float64 product and quotient of the float32 scales (the divisor times
    a pool's window count, also in float64), cast once."""
    den = f32(s_y).astype(np.float64) * np.asarray(count, dtype=np.float64)
    return (f32(s_x).astype(np.float64) * f32(s_w).astype(np.float64) / den).astype(F32)


def ort_multiplier(s_x, s_w, s_y) -> np.ndarray:
    """ONNX Runtime's M: (s_x * s_w) / s_y in float32 steps."""
    return (f32(s_x) * f32(s_w)) / f32(s_y)


def requant_expected(acc: np.ndarray, m: np.ndarray, zy: int, lo: int, hi: int) -> np.ndarray:
    """clip(round_half_even(float32(acc) * M) + zy, lo, hi), written out independently of quant_math."""
    t = acc.astype(F32) * m
    return np.clip(np.rint(t).astype(np.float64) + zy, lo, hi).astype(np.int64)


def quantize_scalar(v: float, scale: float, zp: int, dtype: str) -> int:
    lo, hi = QR[dtype]
    return int(np.clip(np.rint(F32(v) / F32(scale)) + zp, lo, hi))


def act_bounds_expected(act: str, scale: float, zp: int, dtype: str) -> tuple[int, int]:
    lo, hi = QR[dtype]
    if act == "none":
        return lo, hi
    return quantize_scalar(0.0, scale, zp, dtype), hi if act == "relu" else quantize_scalar(6.0, scale, zp, dtype)


def conv_acc_int64(x, zx, w, strides, pads, dilations, group) -> np.ndarray:
    """ONNX ConvInteger by brute force in int64: loops over output channels and kernel taps."""
    xc = np.pad(x.astype(np.int64) - zx, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    n, _, h, wd = xc.shape
    m, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (wd - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, m, oh, ow), np.int64)
    for o in range(m):
        g = o // (m // group)
        for i in range(kh):
            for j in range(kw):
                patch = xc[:, g * cg:(g + 1) * cg, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j].astype(np.int64))
    return out


# -- strategies --------------------------------------------------------------------
def f32_scale(draw, lo=1e-3, hi=1.0) -> float:
    """A float32 scale, log-uniform in [lo, hi]."""
    e = draw(st.floats(np.log2(lo), np.log2(hi)))
    return float(F32(2.0**e))


def draw_act_params(draw, dtype: str, symmetric_i8: bool = True) -> tuple[float, int]:
    zp = draw(st.integers(0, 255)) if dtype == "u8" else (0 if symmetric_i8 else draw(st.integers(-128, 127)))
    return f32_scale(draw), zp


# ================================================================== quant_math
@given(lo=st.floats(-1e4, 0), hi=st.floats(0, 1e4), dtype=st.sampled_from(["u8", "i8"]),
       kind=st.sampled_from(["float", "power-of-2"]))
@FAST
def test_choose_activation_params_covers_range(lo, hi, dtype, kind):
    qp = choose_activation_params(lo, hi, dtype, kind)
    s, zp = qp.scale[0], qp.zero_point[0]
    assert qp.axis is None and s > 0 and float(F32(s)) == s
    qmin, qmax = QR[dtype]
    assert qmin <= zp <= qmax and (dtype == "u8" or zp == 0)
    assert quantize(F32(0.0), qp, dtype) == zp  # real 0 is exact
    ends = np.array([lo, hi], F32)
    back = dequantize(quantize(ends, qp, dtype), qp)
    if s != 1.0 or max(-lo, hi) > 1e-6:  # not the empty-range guard
        assert np.all(np.abs(back - ends) <= s / 2 * (1 + 1e-5) + 1e-6 * np.abs(ends))
    if kind == "power-of-2":
        assert is_power_of_two(s)
        fs = choose_activation_params(lo, hi, dtype, "float").scale[0]
        assert fs <= s * (1 + 1e-6) and (s < 2 * fs * (1 + 1e-6) or fs == 1.0)


def test_choose_activation_params_examples_and_guards():
    qp = choose_activation_params(-1.0, 3.0)
    assert qp.scale == (float(F32(4 / 255)),) and qp.zero_point == (64,)
    assert choose_activation_params(0.5, 2.0).zero_point == (0,)  # range widened to include 0
    assert choose_activation_params(-3.0, -1.0).zero_point == (255,)
    assert choose_activation_params(-2.0, 1.0, "i8") == QuantParams((float(F32(2 / 127)),), (0,))
    assert choose_activation_params(0.0, 0.0) == QuantParams((1.0,), (0,))
    assert choose_activation_params(0.0, 1e-30).scale == (1.0,)
    assert choose_activation_params(0.0, 255.0, scale_kind="power-of-2").scale == (1.0,)
    assert choose_activation_params(0.0, 256.0, scale_kind="power-of-2").scale == (2.0,)
    for bad in [(np.nan, 1.0), (0.0, np.inf), (2.0, 1.0)]:
        with pytest.raises(QV2CError):
            choose_activation_params(*bad)
    with pytest.raises(ValueError):
        choose_activation_params(0.0, 1.0, "i16")


@given(seed=SEEDS, per_channel=st.booleans(), kind=st.sampled_from(["float", "power-of-2"]),
       shape=st.sampled_from([(8, 3, 3, 3), (5, 1, 3, 3), (4, 16), (3, 2, 1, 1)]))
@FAST
def test_quantize_weights_roundtrip(seed, per_channel, kind, shape):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(shape) * rng.uniform(1e-3, 10, (shape[0],) + (1,) * (len(shape) - 1))).astype(F32)
    w[0] = 0.0  # a pruned channel
    q, qp = quantize_weights(w, "per-channel" if per_channel else "per-tensor", 0, kind)
    assert q.dtype == np.int8 and q.min() >= -WEIGHT_QMAX and q.max() <= WEIGHT_QMAX
    assert all(z == 0 for z in qp.zero_point)
    assert qp.axis == (0 if per_channel else None) and len(qp.scale) == (shape[0] if per_channel else 1)
    if per_channel:
        assert qp.scale[0] == 1.0 and not q[0].any()
    err = np.abs(dequantize(q, qp) - w)
    assert np.all(err <= qp.scale_array(w.ndim) * F32(0.5 + 1e-5))
    if kind == "float":  # the largest weight of each slice lands on +-127
        peak = np.abs(q).reshape(shape[0], -1).max(axis=1) if per_channel else np.abs(q).max()
        assert np.all(peak[1:] == WEIGHT_QMAX) if per_channel else peak == WEIGHT_QMAX
    else:
        assert is_power_of_two(qp.scale)


@given(seed=SEEDS)
@FAST
def test_quantize_bias_error_bound(seed):
    rng = np.random.default_rng(seed)
    b = (rng.standard_normal(6) * 5).astype(F32)
    s_x, s_w = float(F32(rng.uniform(1e-3, 0.1))), rng.uniform(1e-4, 1e-2, 6).astype(F32)
    q = quantize_bias(b, s_x, s_w)
    step = np.float64(F32(s_x)) * s_w.astype(np.float64)
    assert q.dtype == np.int32
    assert np.all(np.abs(q * step - b) <= step / 2 + 1e-12)
    assert np.array_equal(quantize_bias(b, s_x, s_w[:1]), np.rint(b / step[0]).astype(np.int32))
    assert quantize_bias(np.array([1e9], F32), 1e-3, [1e-3])[0] == 2**31 - 1  # saturates


def test_power_of_two_helpers():
    assert is_power_of_two([0.25, 1.0, 8.0]) and not is_power_of_two(0.3) and not is_power_of_two(0.0)
    assert shift_of(0.25) == 2 and shift_of(1.0) == 0 and shift_of(4.0) == -2
    with pytest.raises(ValueError):
        shift_of(0.75)
    acc = np.array([5, 6, 7, -5, -6, -7, 2, -2, 3], np.int64)  # /4: 1.25 1.5 1.75 -1.25 -1.5 -1.75 .5 -.5 .75
    assert requantize_shift(acc, 2, 0, -128, 127).tolist() == [1, 2, 2, -1, -1, -2, 1, 0, 1]  # half up
    assert requantize_shift(np.array([3, -3]), -2, 10, 0, 255).tolist() == [22, 0]
    assert requantize_multiplier(0.5, np.array([0.25, 1.0]), 2.0).tolist() == [0.0625, 0.25]


def test_requantize_multiplier_rounds_once_from_float64():
    sx, sw, sy = 0.6887582540512085, 0.38953250646591187, 0.1359614133834839  # float32 values
    m = requantize_multiplier(sx, sw, sy)
    assert m.dtype == np.float32 and m == F32(sx * sw / sy)
    assert m != (F32(sx) * F32(sw)) / F32(sy)  # onnxruntime's float32 steps land on the neighbouring float
    assert requantize_multiplier(0.1, 1.0, 1.0) == F32(0.1)  # a stored Python float means its float32
    assert requantize_multiplier(0.5, 1.0, 0.25, np.array([3, 4])).tolist() == [F32(2 / 3), 0.5]


def test_requantize_float_rounds_half_to_even_and_saturates():
    acc = np.array([1, 3, 5, -1, -3, -5, 7, 1000, -1000])
    assert requantize_float(acc, F32(0.5), 0, -128, 127).tolist() == [0, 2, 2, 0, -2, -2, 4, 127, -128]
    assert requantize_float(acc, F32(0.5), 100, 0, 255).tolist() == [100, 102, 102, 100, 98, 98, 104, 255, 0]
    big = np.array([2**31 - 1, -(2**31)], np.int64)
    assert requantize_float(big, F32(3e38), 0, -128, 127).tolist() == [127, -128]  # no float->int overflow


def test_activation_bounds():
    qp = QuantParams((0.05,), (20,))
    assert activation_bounds("none", qp, "u8") == (0, 255)
    assert activation_bounds("relu", qp, "u8") == (20, 255)
    assert activation_bounds("relu6", qp, "u8") == (20, 140)
    assert activation_bounds("relu6", QuantParams((0.01,), (0,)), "i8") == (0, 127)
    with pytest.raises(ValueError):
        activation_bounds("gelu", qp, "u8")


# ================================================================== quantize / dequantize
@st.composite
def quant_case(draw):
    """(x float32, QuantParams, dtype): per-tensor or per-axis, with exact .5 ties mixed in."""
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    dtype = draw(st.sampled_from(["u8", "i8"]))
    axis = draw(st.one_of(st.none(), st.integers(0, rank - 1)))
    n = 1 if axis is None else shape[axis]
    scales = [f32_scale(draw, 1e-3, 10.0) for _ in range(n)]
    lo, hi = QR[dtype]
    zps = [draw(st.integers(lo, hi)) for _ in range(n)]
    qp = QuantParams(scales, zps, axis)
    rng = np.random.default_rng(draw(SEEDS))
    s = qp.scale_array(rank)
    codes = rng.integers(-300, 300, shape)
    ties = (codes + 0.5).astype(F32) * s  # often exactly representable halfway points
    noise = rng.standard_normal(shape).astype(F32) * s * 200
    x = np.where(rng.random(shape) < 0.5, ties, noise).astype(F32)
    return x, qp, dtype


def _ort_qparams(qp: QuantParams, dtype: str):
    if qp.axis is None:
        return [F32(qp.scale[0]), NP[dtype](qp.zero_point[0])], {}
    return [np.array(qp.scale, F32), np.array(qp.zero_point, NP[dtype])], {"axis": qp.axis}


@given(case=quant_case())
@FAST
def test_quantize_matches_onnxruntime(case):
    x, qp, dtype = case
    params, attrs = _ort_qparams(qp, dtype)
    expected = run_ort("QuantizeLinear", [x], params, NP[dtype], **attrs)
    got = run_ir("qv.quantize", [(x, TensorType(x.shape, "f32"))], TensorType(x.shape, dtype, qp))
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert np.array_equal(quantize(x, qp, dtype), expected)


@given(case=quant_case())
@FAST
def test_dequantize_matches_onnxruntime(case):
    x, qp, dtype = case
    q = quantize(x, qp, dtype)
    params, attrs = _ort_qparams(qp, dtype)
    expected = run_ort("DequantizeLinear", [q], params, F32, **attrs)
    got = run_ir("qv.dequantize", [(q, TensorType(q.shape, dtype, qp))], TensorType(q.shape, "f32"))
    assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), expected.view(np.uint32))


# ================================================================== qconv
@st.composite
def conv_case(draw, for_ort: bool = False):
    """Operands, types and attributes of one qv.qconv (and the raw numbers for the oracles)."""
    group = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 3))
    mg = draw(st.integers(1, 3))
    depthwise = draw(st.booleans()) and not for_ort
    if depthwise:
        group, cg = draw(st.integers(2, 4)), 1
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    strides = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    dilations = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    h = draw(st.integers(max(1, dilations[0] * (kh - 1) + 1 - pads[0] - pads[2]), 7))
    w_ = draw(st.integers(max(1, dilations[1] * (kw - 1) + 1 - pads[1] - pads[3]), 7))
    n = draw(st.integers(1, 2))
    c, m = group * cg, group * mg
    x_dtype = draw(st.sampled_from(["u8", "i8"]))
    y_dtype = x_dtype if for_ort else draw(st.sampled_from(["u8", "i8"]))
    sx, zx = draw_act_params(draw, x_dtype, symmetric_i8=False)
    per_channel = draw(st.booleans())
    sw = [f32_scale(draw, 1e-3, 0.1) for _ in range(m if per_channel else 1)]
    rng = np.random.default_rng(draw(SEEDS))
    wmax = 63 if for_ort else 127
    x = rng.integers(*QR[x_dtype], size=(n, c, h, w_), endpoint=True).astype(NP[x_dtype])
    w = rng.integers(-wmax, wmax, size=(m, cg, kh, kw), endpoint=True).astype(np.int8)
    bias = rng.integers(-5000, 5000, size=m).astype(np.int32) if draw(st.booleans()) else None
    k = cg * kh * kw
    sy = float(F32(sx * max(sw) * np.sqrt(k) * 60 * draw(st.floats(0.05, 3.0))))
    _, zy = draw_act_params(draw, y_dtype, symmetric_i8=False)
    act = "none" if for_ort else draw(st.sampled_from(["none", "relu", "relu6"]))
    attrs = dict(strides=strides, pads=pads, dilations=dilations, group=group, act=act)
    wq = QuantParams(sw, [0] * len(sw), 0 if per_channel else None)
    return dict(x=x, w=w, b=bias, sx=sx, zx=zx, sw=sw, wq=wq, sy=sy, zy=zy, x_dtype=x_dtype, y_dtype=y_dtype,
                attrs=attrs)


def run_qconv(cs, **override) -> np.ndarray:
    from qv2c.ir.ops import result_types

    attrs = {**cs["attrs"], **override}
    ops = [(cs["x"], TensorType(cs["x"].shape, cs["x_dtype"], QuantParams([cs["sx"]], [cs["zx"]]))),
           (cs["w"], TensorType(cs["w"].shape, "i8", cs["wq"]))]
    if cs["b"] is not None:
        ops.append((cs["b"], TensorType(cs["b"].shape, "i32")))
    shape = result_types("qv.conv", [t for _, t in ops], {**OPS["qv.conv"].defaults, **attrs})[0].shape
    out_t = TensorType(shape, cs["y_dtype"], QuantParams([cs["sy"]], [cs["zy"]]))
    return run_ir("qv.qconv", ops, out_t, **attrs)


def conv_expected(cs, multiplier) -> np.ndarray:
    a = cs["attrs"]
    acc = conv_acc_int64(cs["x"], cs["zx"], cs["w"], a["strides"], a["pads"], a["dilations"], a["group"])
    if cs["b"] is not None:
        acc += cs["b"].astype(np.int64).reshape(1, -1, 1, 1)
    m = np.broadcast_to(multiplier(cs["sx"], np.array(cs["sw"]), cs["sy"]), (cs["w"].shape[0],))
    lo, hi = act_bounds_expected(a["act"], cs["sy"], cs["zy"], cs["y_dtype"])
    return requant_expected(acc, m.reshape(1, -1, 1, 1), cs["zy"], lo, hi), acc


@given(cs=conv_case())
@FAST
def test_qconv_exact_against_int64_oracle(cs):
    expected, _ = conv_expected(cs, our_multiplier)
    got = run_qconv(cs)
    assert got.dtype == NP[cs["y_dtype"]]
    np.testing.assert_array_equal(got.astype(np.int64), expected)


@given(cs=conv_case(for_ort=True))
@FAST
def test_qconv_against_onnxruntime_qlinearconv(cs):
    a = cs["attrs"]
    sw = np.array(cs["sw"], F32)
    consts = [F32(cs["sx"]), NP[cs["x_dtype"]](cs["zx"]), cs["w"], sw if cs["wq"].per_channel else sw[0],
              np.zeros(sw.shape, np.int8) if cs["wq"].per_channel else np.int8(0), F32(cs["sy"]),
              NP[cs["y_dtype"]](cs["zy"])]
    if cs["b"] is not None:
        consts.append(cs["b"])
    ort_y = run_ort("QLinearConv", [cs["x"]], consts, NP[cs["y_dtype"]], strides=a["strides"], pads=a["pads"],
                    dilations=a["dilations"], group=a["group"], kernel_shape=list(cs["w"].shape[2:]))
    got = run_qconv(cs).astype(np.int64)
    ort_y = ort_y.astype(np.int64)
    # ORT's requantization is ours with its own float32-step multiplier: bit-exact
    np.testing.assert_array_equal(ort_y, conv_expected(cs, ort_multiplier)[0])
    # ours differs from ORT only through that multiplier: by at most 1, and only when M differs
    assert np.abs(got - ort_y).max(initial=0) <= 1
    if np.array_equal(our_multiplier(cs["sx"], sw, cs["sy"]), ort_multiplier(cs["sx"], sw, cs["sy"])):
        np.testing.assert_array_equal(got, ort_y)


def test_onnxruntime_avx2_saturation_is_why_weights_are_limited():
    """Documents the ORT behaviour the ORT tests avoid: on AVX2 without VNNI, u8 x s8 pairs saturate in int16."""
    x = np.full((1, 8, 3, 3), 255, np.uint8)
    w = np.full((1, 8, 3, 3), 127, np.int8)
    consts = [F32(1.0), np.uint8(0), w, F32(1.0), np.int8(0), F32(10000.0), np.uint8(0)]
    ort_y = run_ort("QLinearConv", [x], consts, np.uint8, kernel_shape=[3, 3])
    cs = dict(x=x, w=w, b=None, sx=1.0, zx=0, sw=[1.0], wq=QuantParams([1.0], [0]), sy=10000.0, zy=0,
              x_dtype="u8", y_dtype="u8", attrs=dict(strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1,
                                                     act="none"))
    ours = run_qconv(cs)
    assert ours[0, 0, 0, 0] == round(72 * 255 * 127 / 10000)  # 233: exact int32 accumulation
    assert ort_y[0, 0, 0, 0] in (233, 118)  # 118 = 36 * 32767 / 10000 where ORT saturates


@st.composite
def pow2_conv_case(draw):
    cs = draw(conv_case())
    k = cs["w"][0].size
    cs["sx"] = 2.0 ** draw(st.integers(-8, -2))
    cs["sw"] = [2.0 ** draw(st.integers(-9, -4)) for _ in cs["sw"]]
    cs["wq"] = QuantParams(cs["sw"], [0] * len(cs["sw"]), cs["wq"].axis)
    cs["sy"] = 2.0 ** int(np.round(np.log2(cs["sx"] * max(cs["sw"]) * np.sqrt(k) * 60)) + draw(st.integers(-3, 2)))
    return cs


@given(cs=pow2_conv_case())
@FAST
def test_qconv_shift_requant_agrees_with_float_except_ties(cs):
    y_float = run_qconv(cs, requant="float").astype(np.int64)
    y_shift = run_qconv(cs, requant="shift").astype(np.int64)
    _, acc = conv_expected(cs, our_multiplier)
    shift = np.array([shift_of(cs["sx"] * s / cs["sy"]) for s in np.broadcast_to(cs["sw"], (acc.shape[1],))])
    shift = shift.reshape(1, -1, 1, 1)
    # shift round half up: floor(acc / 2**s + 1/2), by Python's exact integer arithmetic
    lo, hi = act_bounds_expected(cs["attrs"]["act"], cs["sy"], cs["zy"], cs["y_dtype"])
    exact = np.clip(np.floor_divide(2 * acc + 2.0**shift, 2.0 ** (shift + 1)) + cs["zy"], lo, hi)
    np.testing.assert_array_equal(y_shift, exact)
    # the float path is exact here (power-of-two M, small acc): round half to even
    np.testing.assert_array_equal(y_float, np.clip(np.rint(acc / 2.0**shift) + cs["zy"], lo, hi))
    tie = (shift > 0) & (np.mod(acc, 2.0**shift) == 2.0 ** (shift - 1))
    np.testing.assert_array_equal(y_shift[~tie], y_float[~tie])
    assert np.all((y_shift - y_float)[tie] >= 0) and np.all((y_shift - y_float)[tie] <= 1)


def test_qconv_shift_rejects_non_power_of_two():
    cs = dict(x=np.zeros((1, 1, 2, 2), np.uint8), w=np.ones((1, 1, 1, 1), np.int8), b=None, sx=0.3, zx=0, sw=[0.5],
              wq=QuantParams([0.5], [0]), sy=1.0, zy=0, x_dtype="u8", y_dtype="u8",
              attrs=dict(strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1, act="none"))
    with pytest.raises(VerificationError, match="power-of-two"):
        run_qconv(cs, requant="shift")


# ================================================================== qgemm
@st.composite
def gemm_case(draw, for_ort: bool = False):
    mm, k, n = draw(st.integers(1, 6)), draw(st.integers(1, 40)), draw(st.integers(1, 6))
    x_dtype = draw(st.sampled_from(["u8", "i8"]))
    y_dtype = x_dtype if for_ort else draw(st.sampled_from(["u8", "i8"]))
    sx, zx = draw_act_params(draw, x_dtype, symmetric_i8=False)
    per_channel = draw(st.booleans())
    sw = [f32_scale(draw, 1e-3, 0.1) for _ in range(n if per_channel else 1)]
    rng = np.random.default_rng(draw(SEEDS))
    wmax = 63 if for_ort else 127
    x = rng.integers(*QR[x_dtype], size=(mm, k), endpoint=True).astype(NP[x_dtype])
    w = rng.integers(-wmax, wmax, size=(n, k), endpoint=True).astype(np.int8)
    b = None if for_ort or not draw(st.booleans()) else rng.integers(-5000, 5000, size=n).astype(np.int32)
    sy = float(F32(sx * max(sw) * np.sqrt(k) * 60 * draw(st.floats(0.05, 3.0))))
    _, zy = draw_act_params(draw, y_dtype, symmetric_i8=False)
    act = "none" if for_ort else draw(st.sampled_from(["none", "relu", "relu6"]))
    return dict(x=x, w=w, b=b, sx=sx, zx=zx, sw=sw, per_channel=per_channel, sy=sy, zy=zy, x_dtype=x_dtype,
                y_dtype=y_dtype, act=act)


def run_qgemm(gs) -> np.ndarray:
    wq = QuantParams(gs["sw"], [0] * len(gs["sw"]), 0 if gs["per_channel"] else None)
    ops = [(gs["x"], TensorType(gs["x"].shape, gs["x_dtype"], QuantParams([gs["sx"]], [gs["zx"]]))),
           (gs["w"], TensorType(gs["w"].shape, "i8", wq))]
    if gs["b"] is not None:
        ops.append((gs["b"], TensorType(gs["b"].shape, "i32")))
    out_t = TensorType((gs["x"].shape[0], gs["w"].shape[0]), gs["y_dtype"], QuantParams([gs["sy"]], [gs["zy"]]))
    return run_ir("qv.qgemm", ops, out_t, act=gs["act"]).astype(np.int64)


def gemm_expected(gs, multiplier, acc=None) -> np.ndarray:
    if acc is None:
        acc = np.einsum("mk,nk->mn", gs["x"].astype(np.int64) - gs["zx"], gs["w"].astype(np.int64))
        if gs["b"] is not None:
            acc = acc + gs["b"]
    m = np.broadcast_to(multiplier(gs["sx"], np.array(gs["sw"]), gs["sy"]), (gs["w"].shape[0],))
    lo, hi = act_bounds_expected(gs["act"], gs["sy"], gs["zy"], gs["y_dtype"])
    return requant_expected(acc, m.reshape(1, -1), gs["zy"], lo, hi)


@given(gs=gemm_case())
@FAST
def test_qgemm_exact_against_int64_oracle(gs):
    np.testing.assert_array_equal(run_qgemm(gs), gemm_expected(gs, our_multiplier))


@given(gs=gemm_case(for_ort=True))
@FAST
def test_qgemm_against_onnxruntime(gs):
    sw = np.array(gs["sw"], F32)
    wt = np.ascontiguousarray(gs["w"].T)
    # MatMulInteger gives ORT's int32 accumulator: ours must be built from exactly that
    acc = run_ort("MatMulInteger", [gs["x"]], [wt, NP[gs["x_dtype"]](gs["zx"]), np.int8(0)], np.int32)
    got = run_qgemm(gs)
    np.testing.assert_array_equal(got, gemm_expected(gs, our_multiplier, acc.astype(np.int64)))
    # QLinearMatMul (per-column weight scales) requantizes with its float32-step multiplier
    consts = [F32(gs["sx"]), NP[gs["x_dtype"]](gs["zx"]), wt, sw if gs["per_channel"] else sw[0],
              np.zeros(sw.shape, np.int8) if gs["per_channel"] else np.int8(0), F32(gs["sy"]),
              NP[gs["y_dtype"]](gs["zy"])]
    ort_y = run_ort("QLinearMatMul", [gs["x"]], consts, NP[gs["y_dtype"]]).astype(np.int64)
    np.testing.assert_array_equal(ort_y, gemm_expected(gs, ort_multiplier))
    assert np.abs(got - ort_y).max(initial=0) <= 1


def test_qgemm_refuses_int32_overflow():
    k = 70000  # 70000 * 255 * 127 > 2**31
    gs = dict(x=np.full((1, k), 255, np.uint8), w=np.full((1, k), 127, np.int8), b=None, sx=1.0, zx=0, sw=[1.0],
              per_channel=False, sy=1.0, zy=0, x_dtype="u8", y_dtype="u8", act="none")
    with pytest.raises(QV2CError, match="overflow"):
        run_qgemm(gs)
    gs["x"], gs["w"] = gs["x"][:, :60000], gs["w"][:, :60000]  # fits: saturates instead
    assert run_qgemm(gs)[0, 0] == 255


# ================================================================== requantize, qclip
@given(seed=SEEDS, x_dtype=st.sampled_from(["u8", "i8"]), y_dtype=st.sampled_from(["u8", "i8"]), data=st.data())
@FAST
def test_requantize_exact(seed, x_dtype, y_dtype, data):
    sx, zx = draw_act_params(data.draw, x_dtype, symmetric_i8=False)
    sy, zy = draw_act_params(data.draw, y_dtype, symmetric_i8=False)
    x = np.random.default_rng(seed).integers(*QR[x_dtype], size=(2, 3, 4), endpoint=True).astype(NP[x_dtype])
    got = run_ir("qv.requantize", [(x, TensorType(x.shape, x_dtype, QuantParams([sx], [zx])))],
                 TensorType(x.shape, y_dtype, QuantParams([sy], [zy])))
    expected = requant_expected(x.astype(np.int64) - zx, our_multiplier(sx, 1.0, sy), zy, *QR[y_dtype])
    np.testing.assert_array_equal(got.astype(np.int64), expected)


@given(seed=SEEDS, dtype=st.sampled_from(["u8", "i8"]), bounds=st.sampled_from(
    [(0.0, np.inf), (0.0, 6.0), (-1.0, 1.0), (-np.inf, np.inf), (0.5, 0.5)]), data=st.data())
@FAST
def test_qclip_equals_clip_in_real_numbers(seed, dtype, bounds, data):
    s, zp = draw_act_params(data.draw, dtype, symmetric_i8=False)
    qp = QuantParams([s], [zp])
    x = np.random.default_rng(seed).integers(*QR[dtype], size=(2, 3, 5), endpoint=True).astype(NP[dtype])
    got = run_ir("qv.qclip", [(x, TensorType(x.shape, dtype, qp))], TensorType(x.shape, dtype, qp),
                 min=float(bounds[0]), max=float(bounds[1]))
    real = np.clip(dequantize(x, qp), F32(bounds[0]), F32(bounds[1]))
    np.testing.assert_array_equal(got, quantize(real, qp, dtype))


# ================================================================== qadd
@st.composite
def add_case(draw, for_ort: bool = False):
    dtype = draw(st.sampled_from(["u8", "i8"]))
    y_dtype = dtype if for_ort else draw(st.sampled_from(["u8", "i8"]))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    b_shape = shape if for_ort or draw(st.booleans()) else shape[:2] + (1, 1)
    (sa, za), (sb, zb), (sy, zy) = (draw_act_params(draw, t, symmetric_i8=False) for t in (dtype, dtype, y_dtype))
    rng = np.random.default_rng(draw(SEEDS))
    a = rng.integers(*QR[dtype], size=shape, endpoint=True).astype(NP[dtype])
    b = rng.integers(*QR[dtype], size=b_shape, endpoint=True).astype(NP[dtype])
    act = "none" if for_ort else draw(st.sampled_from(["none", "relu"]))
    return dict(a=a, b=b, sa=sa, za=za, sb=sb, zb=zb, sy=sy, zy=zy, dtype=dtype, y_dtype=y_dtype, act=act)


def run_qadd(c) -> np.ndarray:
    ops = [(c["a"], TensorType(c["a"].shape, c["dtype"], QuantParams([c["sa"]], [c["za"]]))),
           (c["b"], TensorType(c["b"].shape, c["dtype"], QuantParams([c["sb"]], [c["zb"]])))]
    out_t = TensorType(c["a"].shape, c["y_dtype"], QuantParams([c["sy"]], [c["zy"]]))
    return run_ir("qv.qadd", ops, out_t, act=c["act"]).astype(np.int64)


@given(c=add_case())
@FAST
def test_qadd_exact_against_formula(c):
    real = ((c["a"].astype(np.int32) - c["za"]).astype(F32) * F32(c["sa"])
            + (c["b"].astype(np.int32) - c["zb"]).astype(F32) * F32(c["sb"]))
    if c["act"] == "relu":
        real = np.maximum(real, F32(0))
    expected = np.clip(np.rint(real / F32(c["sy"])) + c["zy"], *QR[c["y_dtype"]])
    np.testing.assert_array_equal(run_qadd(c), expected)


@given(c=add_case(for_ort=True))
@FAST
def test_qadd_against_onnxruntime(c):
    t = NP[c["dtype"]]
    # the unfused Q/DQ graph DequantizeLinear x2 -> Add -> QuantizeLinear: bit-exact
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in
             dict(sa=F32(c["sa"]), za=t(c["za"]), sb=F32(c["sb"]), zb=t(c["zb"]), sy=F32(c["sy"]),
                  zy=t(c["zy"])).items()]
    nodes = [helper.make_node("DequantizeLinear", ["x0", "sa", "za"], ["fa"]),
             helper.make_node("DequantizeLinear", ["x1", "sb", "zb"], ["fb"]),
             helper.make_node("Add", ["fa", "fb"], ["s"]),
             helper.make_node("QuantizeLinear", ["s", "sy", "zy"], ["y"])]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes, "g", [vi("x0", helper.np_dtype_to_tensor_dtype(np.dtype(t)), c["a"].shape),
                     vi("x1", helper.np_dtype_to_tensor_dtype(np.dtype(t)), c["b"].shape)],
        [vi("y", helper.np_dtype_to_tensor_dtype(np.dtype(t)), None)], inits)
    got = run_qadd(c)
    np.testing.assert_array_equal(got, run_ort_graph(graph, [c["a"], c["b"]]).astype(np.int64))
    # the com.microsoft QLinearAdd kernel uses precomputed ratios: within 1 LSB
    ms = run_ort("QLinearAdd", [c["a"]], [F32(c["sa"]), t(c["za"]), c["b"], F32(c["sb"]), t(c["zb"]),
                                          F32(c["sy"]), t(c["zy"])], t, domain="com.microsoft")
    assert np.abs(got - ms.astype(np.int64)).max() <= 1


# ================================================================== pooling
@st.composite
def pool_case(draw, for_ort: bool = False):
    dtype = draw(st.sampled_from(["u8", "i8"]))
    y_dtype = dtype if for_ort else draw(st.sampled_from(["u8", "i8"]))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = [draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)), draw(st.integers(0, kh - 1)),
            draw(st.integers(0, kw - 1))]
    strides = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    h, w = draw(st.integers(kh, 7)), draw(st.integers(kw, 7))
    x_shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    sx, zx = draw_act_params(draw, dtype, symmetric_i8=False)
    sy = float(F32(sx * draw(st.floats(0.3, 2.0))))
    _, zy = draw_act_params(draw, y_dtype, symmetric_i8=False)
    x = np.random.default_rng(draw(SEEDS)).integers(*QR[dtype], size=x_shape, endpoint=True).astype(NP[dtype])
    attrs = dict(kernel=[kh, kw], strides=strides, pads=pads, ceil_mode=int(draw(st.booleans())),
                 count_include_pad=int(draw(st.booleans())))
    return dict(x=x, sx=sx, zx=zx, sy=sy, zy=zy, dtype=dtype, y_dtype=y_dtype, attrs=attrs)


def avgpool_expected(p, ort_style: bool = False) -> np.ndarray:
    """Brute-force window sums and counts (ceil-mode overhang never counts)."""
    x, a = p["x"].astype(np.int64) - p["zx"], p["attrs"]
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = a["kernel"], a["strides"], a["pads"]
    from qv2c.ir.ops import window_output_size

    oh = window_output_size(x.shape[2], kh, sh, pt, pb, 1, bool(a["ceil_mode"]))
    ow = window_output_size(x.shape[3], kw, sw, pl, pr, 1, bool(a["ceil_mode"]))
    total = np.zeros(x.shape[:2] + (oh, ow), np.int64)
    count = np.zeros((oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * sh - pt, j * sw - pl
            r1, c1 = r0 + kh, c0 + kw
            if a["count_include_pad"]:
                count[i, j] = (min(r1, x.shape[2] + pb) - r0) * (min(c1, x.shape[3] + pr) - c0)
            r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, x.shape[2]), min(c1, x.shape[3])
            total[:, :, i, j] = x[:, :, r0:r1, c0:c1].sum(axis=(2, 3))
            if not a["count_include_pad"]:
                count[i, j] = (r1 - r0) * (c1 - c0)
    m = our_multiplier(p["sx"], 1.0, p["sy"], count)
    return requant_expected(total, m, p["zy"], *QR[p["y_dtype"]])


def run_pool(p, name="qv.qavgpool", **attrs) -> np.ndarray:
    from qv2c.ir.ops import result_types

    in_t = TensorType(p["x"].shape, p["dtype"], QuantParams([p["sx"]], [p["zx"]]))
    shape = result_types(name.replace("qv.q", "qv."), [in_t], {**OPS[name].defaults, **attrs})[0].shape
    out_t = TensorType(shape, p["y_dtype"], QuantParams([p["sy"]], [p["zy"]]))
    return run_ir(name, [(p["x"], in_t)], out_t, **attrs).astype(np.int64)


@given(p=pool_case())
@FAST
def test_qavgpool_exact_against_oracle(p):
    np.testing.assert_array_equal(run_pool(p, **p["attrs"]), avgpool_expected(p))


@given(p=pool_case(for_ort=True))
@FAST
def test_qavgpool_against_onnxruntime(p):
    a, t = p["attrs"], NP[p["dtype"]]
    ort_y = run_ort("QLinearAveragePool", [p["x"]], [F32(p["sx"]), t(p["zx"]), F32(p["sy"]), t(p["zy"])], t,
                    domain="com.microsoft", kernel_shape=a["kernel"], strides=a["strides"], pads=a["pads"],
                    ceil_mode=a["ceil_mode"], count_include_pad=a["count_include_pad"]).astype(np.int64)
    got = run_pool(p, **a)
    # ORT's QLinearAveragePool (unlike its AveragePool and our qv.avgpool) counts a ceil-mode window's
    # overhang past the padding when count_include_pad=1; compare only windows without overhang there
    keep = np.ones(got.shape[2:], bool)
    if a["count_include_pad"]:
        (kh, kw), (sh, sw), (pt, pl, pb, pr) = a["kernel"], a["strides"], a["pads"]
        rows = np.arange(got.shape[2]) * sh + kh <= p["x"].shape[2] + pt + pb
        cols = np.arange(got.shape[3]) * sw + kw <= p["x"].shape[3] + pl + pr
        keep = np.outer(rows, cols)
    assert np.abs(got - ort_y)[..., keep].max(initial=0) <= 1


@given(p=pool_case(for_ort=True))
@FAST
def test_qglobal_avgpool_against_onnxruntime(p):
    t = NP[p["dtype"]]
    x = p["x"]
    ort_y = run_ort("QLinearGlobalAveragePool", [x], [F32(p["sx"]), t(p["zx"]), F32(p["sy"]), t(p["zy"])], t,
                    domain="com.microsoft", channels_last=0).astype(np.int64)
    got = run_pool(p, "qv.qglobal_avgpool")
    total = (x.astype(np.int64) - p["zx"]).sum(axis=(2, 3), keepdims=True)
    hw = x.shape[2] * x.shape[3]
    expected = requant_expected(total, our_multiplier(p["sx"], 1.0, p["sy"], hw), p["zy"],
                                *QR[p["y_dtype"]])
    np.testing.assert_array_equal(got, expected)
    assert np.abs(got - ort_y).max() <= 1


def test_qglobal_avgpool_multiplier_divides_in_float64():
    """Regression (found by Hypothesis): s_y * H*W must not be rounded to float32 before the
    division.  s_y = 0.3 (float32 0.30000001), 20 positions: total 849 sits on 141.5 only
    with M = 1/6 exactly; with M from float64 it rounds down to 141."""
    p = {"x": np.full((1, 1, 4, 5), 79, np.uint8), "sx": 1.0, "zx": 79, "sy": float(F32(0.3)), "zy": 0,
         "dtype": "u8", "y_dtype": "u8"}
    p["x"].flat[:9] = 79 + 94  # total = 9 * 94 + 3 = 849
    p["x"].flat[9] = 79 + 3
    m = our_multiplier(1.0, 1.0, p["sy"], 20)
    assert m < F32(1 / 6) and run_pool(p, "qv.qglobal_avgpool").item() == int(np.rint(F32(849) * m)) == 141


# ================================================================== data movement on integers
@given(seed=SEEDS, dtype=st.sampled_from(["u8", "i8"]), ceil=st.integers(0, 1))
@FAST
def test_maxpool_on_quantized_codes_commutes_with_dequantize(seed, dtype, ceil):
    rng = np.random.default_rng(seed)
    qp = QuantParams([0.05], [int(rng.integers(*QR[dtype])) if dtype == "u8" else 0])
    x = rng.integers(*QR[dtype], size=(1, 2, 5, 6), endpoint=True).astype(NP[dtype])
    attrs = dict(kernel=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], dilations=[1, 1], ceil_mode=ceil)
    from qv2c.ir.ops import result_types

    shape = result_types("qv.maxpool", [TensorType(x.shape, "f32")], attrs)[0].shape
    got = run_ir("qv.maxpool", [(x, TensorType(x.shape, dtype, qp))], TensorType(shape, dtype, qp), **attrs)
    real = run_ir("qv.maxpool", [(dequantize(x, qp), TensorType(x.shape, "f32"))], TensorType(shape, "f32"), **attrs)
    np.testing.assert_array_equal(got, quantize(real, qp, dtype))


def test_layout_ops_pass_quantized_codes_through():
    qp = QuantParams([0.1], [7])
    x = np.arange(24, dtype=np.uint8).reshape(1, 2, 3, 4)
    t = TensorType(x.shape, "u8", qp)
    y = run_ir("qv.pad", [(x, t)], TensorType((1, 2, 5, 4), "u8", qp), pads=[0, 0, 1, 0, 0, 0, 1, 0])
    assert y.dtype == np.uint8 and np.all(y[:, :, 0] == 7) and np.all(y[:, :, -1] == 7)  # padded with zp
    np.testing.assert_array_equal(y[:, :, 1:4], x)
    y = run_ir("qv.transpose", [(x, t)], TensorType((1, 3, 4, 2), "u8", qp), perm=[0, 2, 3, 1])
    np.testing.assert_array_equal(y, x.transpose(0, 2, 3, 1))
    y = run_ir("qv.reshape", [(x, t)], TensorType((1, 24), "u8", qp), shape=[1, 24])
    np.testing.assert_array_equal(y, x.reshape(1, 24))
    y = run_ir("qv.concat", [(x, t), (x, t)], TensorType((1, 4, 3, 4), "u8", qp), axis=1)
    np.testing.assert_array_equal(y, np.concatenate([x, x], axis=1))


# ================================================================== type rules
def test_type_rules_reject_bad_quantization():
    x_t = TensorType((1, 2, 4, 4), "u8", QuantParams([0.1], [3]))
    w_t = TensorType((3, 2, 1, 1), "i8", QuantParams([0.1] * 3, [0] * 3, 0))
    defaults = OPS["qv.qconv"].defaults
    assert OPS["qv.qconv"].infer([x_t, w_t], defaults)[0].shape == (1, 3, 4, 4)
    bad = [
        ([TensorType(x_t.shape, "u8"), w_t], defaults, "per-tensor"),
        ([x_t, TensorType(w_t.shape, "i8", QuantParams([0.1] * 3, [1, 0, 0], 0))], defaults, "zero points"),
        ([x_t, TensorType(w_t.shape, "i8", QuantParams([0.1] * 2, [0] * 2, 0))], defaults, "axis 0"),
        ([x_t, w_t, TensorType((3,), "f32")], defaults, "bias"),
        ([x_t, w_t], {**defaults, "act": "gelu"}, "act"),
        ([x_t, w_t], {**defaults, "requant": "magic"}, "requant"),
    ]
    for types, attrs, msg in bad:
        with pytest.raises(VerificationError, match=msg):
            OPS["qv.qconv"].infer(types, attrs)
    with pytest.raises(VerificationError, match="min"):
        OPS["qv.qclip"].infer([x_t], {"min": 1.0, "max": 0.0})


def test_reference_checks_types_of_ops_built_with_explicit_result_types():
    x = np.zeros((1, 2, 2, 2), np.uint8)
    w = np.zeros((1, 2, 1, 1), np.int8)
    conv_operands = [(x, TensorType(x.shape, "u8")), (w, TensorType(w.shape, "i8", QuantParams([1.0], [0])))]
    conv_result = TensorType((1, 1, 2, 2), "u8", QuantParams([1.0], [0]))
    for verify in (True, False):  # the verifier refuses it, and so does the interpreter on its own
        with pytest.raises(VerificationError, match=r"qv\.qconv.*input"):
            run_ir("qv.qconv", conv_operands, conv_result, verify=verify)
    with pytest.raises(VerificationError, match="result"):
        run_ir("qv.requantize", [(x, TensorType(x.shape, "u8", QuantParams([1.0], [0])))],
               TensorType(x.shape, "f32"), verify=False)


def test_quantized_ops_print_parse_and_verify():
    from qv2c.ir import parse

    m = Module("q")
    x = m.add_input(Value(TensorType((1, 2, 4, 4), "u8", QuantParams([0.05], [12])), "x"))
    w = m.add_constant(np.ones((3, 2, 3, 3), np.int8), "w", TensorType((3, 2, 3, 3), "i8",
                                                                        QuantParams([0.01, 0.02, 0.04], [0] * 3, 0)))
    b = m.add_constant(np.array([1, -2, 3], np.int32), "b")
    bld = Builder(m)
    y = bld.op("qv.qconv", [x, w, b], result_types=[TensorType((1, 3, 4, 4), "u8", QuantParams([0.1], [0]))],
               pads=[1, 1, 1, 1], act="relu6", requant="float")
    z = bld.op("qv.qglobal_avgpool", [y], result_types=[TensorType((1, 3, 1, 1), "i8", QuantParams([0.1], [0]))])
    m.outputs = [bld.op("qv.dequantize", [z])]
    m.verify()
    text = str(m)
    assert 'act = "relu6"' in text and 'requant = "float"' in text
    again = parse(text)
    again.verify()
    assert str(again) == text
    xin = np.arange(32, dtype=np.uint8).reshape(1, 2, 4, 4)
    (out1,), (out2,) = interpret(m, {"x": xin}).values(), interpret(again, {"x": xin}).values()
    np.testing.assert_array_equal(out1, out2)
