"""Differential tests of the compute kernels (qv2c/runtime/kernels) against plain NumPy.

The references here are written independently of the kernels: a direct NCHW
convolution by summing shifted strided views (float64 for fp32, int64 for int8), and
the requantization / quantize / dequantize functions of `qv2c.ir.quant_math` (the
numerics contract).  Integer outputs must match bit for bit; fp32 outputs within
1e-4 relative to the output's magnitude.  Hypothesis draws shapes, strides, pads
(asymmetric), dilations, groups, zero points, scales and epilogues.

Shapes are runtime arguments of the kernels, so each kernel compiles once (per dtype
combination) for the whole session; the first example of each test pays that JIT cost
(or loads it from Numba's on-disk cache), hence `deadline=None`.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from qv2c.ir.quant_math import dequantize, quantize, requantize_float, requantize_shift
from qv2c.ir.types import QuantParams
from qv2c.runtime.kernels import conv_f32, conv_i8, depthwise, gemm, layout, packing, tiling
from qv2c.runtime.kernels.convplan import ConvPlan, make_plan
from qv2c.runtime.kernels.target import selected_target

#: the kernels run for this process's target (QV2C_TARGET or the host's best); `test_targets.py` runs
#: every other target that this host can run or emulate
TGT, DOT = selected_target().marker(), selected_target().int8_dot
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ACTS = {"none": (-np.inf, np.inf), "relu": (0.0, np.inf), "relu6": (0.0, 6.0), "clip": (-0.5, 0.75)}


# -- NumPy references --------------------------------------------------------------
def out_size(size, k, s, p0, p1, d):
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def conv_ref(x, w, strides, pads, dilations, groups, pad_value=0):
    """Direct NCHW convolution without bias in the dtype of `x` (use float64 or int64)."""
    n, c, h, wd = x.shape
    oc, icg, kh, kw = w.shape
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = strides, pads, dilations
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
    oh, ow = out_size(h, kh, sh, pt, pb, dh), out_size(wd, kw, sw, pl, pr, dw)
    out = np.zeros((n, oc, oh, ow), dtype=x.dtype)
    ocg = oc // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * icg:(g + 1) * icg, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                           j * dw:j * dw + (ow - 1) * sw + 1:sw]
                out[:, g * ocg:(g + 1) * ocg] += np.einsum("nchw,oc->nohw", patch, w[g * ocg:(g + 1) * ocg, :, i, j])
    return out


def nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def assert_close(got, want, rtol=1e-4):
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


def qp(scale, zp):
    return QuantParams((scale,), (zp,))


def f32(v):
    """A Python float that is exactly a float32 (scales are float32 numbers in the contract)."""
    return float(np.float32(v))


# -- strategies ----------------------------------------------------------------------
@st.composite
def conv_cases(draw, depthwise_only=False, max_c=20):
    groups_kind = "dw" if depthwise_only else draw(st.sampled_from(["dense", "dense", "grouped"]))
    if groups_kind == "dw":
        c = draw(st.integers(1, 64))  # up to 32 + 16 + 8 + a remainder: every channel block of the kernels
        groups, oc = c, c
    else:
        groups = 1 if groups_kind == "dense" else draw(st.integers(2, 3))
        c = groups * draw(st.integers(1, max_c // groups))
        oc = groups * draw(st.integers(1, 40 // groups))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    assume(out_size(h, kh, sh, pads[0], pads[2], dh) >= 1 and out_size(w, kw, sw, pads[1], pads[3], dw) >= 1)
    n = draw(st.integers(1, 2))
    return dict(n=n, c=c, h=h, w=w, oc=oc, groups=groups, kernel=(kh, kw), strides=(sh, sw), pads=pads,
                dilations=(dh, dw))


def geometry(case):
    """Kernel geometry arguments: kh, kw, sh, sw, pt, pl, dh, dw."""
    (kh, kw), (sh, sw), (pt, pl, _, _), (dh, dw) = case["kernel"], case["strides"], case["pads"], case["dilations"]
    return kh, kw, sh, sw, pt, pl, dh, dw


def out_shape(case):
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = case["kernel"], case["strides"], case["pads"], case["dilations"]
    return (case["n"], out_size(case["h"], kh, sh, pt, pb, dh), out_size(case["w"], kw, sw, pl, pr, dw), case["oc"])


def int8_data(rng, case, signed_x):
    kh, kw = case["kernel"]
    lo, hi = (-128, 128) if signed_x else (0, 256)
    x = rng.integers(lo, hi, (case["n"], case["c"], case["h"], case["w"])).astype(np.int8 if signed_x else np.uint8)
    w = rng.integers(-128, 128, (case["oc"], case["c"] // case["groups"], kh, kw)).astype(np.int8)
    zx = 0 if signed_x else int(rng.integers(0, 256))
    return x, w, zx


def int8_acc(x, w, zx, bias, case):
    """Exact int64 accumulator sum (x - zx) * w + bias, NHWC."""
    acc = conv_ref(x.astype(np.int64) - zx, w.astype(np.int64), case["strides"], case["pads"], case["dilations"],
                   case["groups"])
    return nhwc(acc) + bias.astype(np.int64)


# -- fp32 convolution ------------------------------------------------------------------
@SETTINGS
@given(case=conv_cases(), act=st.sampled_from(sorted(ACTS)), with_res=st.booleans(), seed=st.integers(0, 2**31))
def test_conv_f32_matches_numpy(case, act, with_res, seed):
    check_conv_f32(case, act, with_res, seed, TGT)


def check_conv_f32(case, act, with_res, seed, tgt):
    """conv2d_f32 of target marker `tgt` against a float64 NumPy convolution (+ bias, residual, clamp)."""
    rng = np.random.default_rng(seed)
    kh, kw = case["kernel"]
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"])).astype(np.float32)
    w = rng.standard_normal((case["oc"], case["c"] // case["groups"], kh, kw)).astype(np.float32)
    b = rng.standard_normal(case["oc"]).astype(np.float32)
    res = rng.standard_normal(out_shape(case)).astype(np.float32)
    want = nhwc(conv_ref(x.astype(np.float64), w.astype(np.float64), case["strides"], case["pads"],
                         case["dilations"], case["groups"])) + b
    if with_res:
        want = want + res
    lo, hi = ACTS[act]
    want = np.clip(want, lo, hi)
    out = np.full(out_shape(case), np.nan, np.float32)
    packed = packing.pack_conv_f32(w, case["groups"])
    conv_f32.conv2d_f32(nhwc(x), packed.data, b, res if with_res else out, out, *geometry(case), lo, hi, with_res, tgt)
    assert_close(out, want)


@FEW
@given(case=conv_cases(), signed=st.booleans(), seed=st.integers(0, 2**31))
def test_conv_f32_quantized_output(case, signed, seed):
    """fp32 conv -> int8 boundary: equals quantize(conv) except where rounding the fp32 sum can flip a tie."""
    rng = np.random.default_rng(seed)
    kh, kw = case["kernel"]
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"])).astype(np.float32)
    w = rng.standard_normal((case["oc"], case["c"] // case["groups"], kh, kw)).astype(np.float32)
    b = rng.standard_normal(case["oc"]).astype(np.float32)
    dtype, (qlo, qhi) = (np.int8, (-128, 127)) if signed else (np.uint8, (0, 255))
    scale, zp = f32(rng.uniform(0.01, 0.2)), (0 if signed else int(rng.integers(0, 256)))
    want_f = nhwc(conv_ref(x.astype(np.float64), w.astype(np.float64), case["strides"], case["pads"],
                           case["dilations"], case["groups"])) + b
    want = quantize(want_f.astype(np.float32), qp(scale, zp), "i8" if signed else "u8").astype(np.int32)
    out = np.empty(out_shape(case), dtype)
    conv_f32.conv2d_f32_quant(nhwc(x), packing.pack_conv_f32(w, case["groups"]).data, b, out, out, *geometry(case),
                              -np.inf, np.inf, False, scale, zp, qlo, qhi, TGT)
    diff = np.abs(out.astype(np.int32) - want)
    assert diff.max(initial=0) <= 1
    near_tie = np.abs(np.abs(np.modf(want_f / scale)[0]) - 0.5) < 1e-3
    assert not np.any((diff > 0) & ~near_tie)


# -- int8 convolution -----------------------------------------------------------------
@SETTINGS
@given(case=conv_cases(), signed=st.booleans(), act=st.sampled_from(["none", "relu", "relu6"]),
       seed=st.integers(0, 2**31))
def test_conv_i8_requant_bit_exact(case, signed, act, seed):
    rng = np.random.default_rng(seed)
    x, w, zx = int8_data(rng, case, signed)
    bias = rng.integers(-20000, 20000, case["oc"]).astype(np.int32)
    mult = (rng.uniform(1e-4, 1e-2, case["oc"])).astype(np.float32)
    dtype_name, dtype = ("i8", np.int8) if signed else ("u8", np.uint8)
    zy = 0 if signed else int(rng.integers(0, 256))
    out_q = qp(f32(rng.uniform(0.01, 0.1)), zy)
    qmin, qmax = (-128, 127) if signed else (0, 255)
    lo, hi = {"none": (qmin, qmax), "relu": (zy, qmax),
              "relu6": (zy, int(quantize(np.float32(6.0), out_q, dtype_name)))}[act]
    want = requantize_float(int8_acc(x, w, zx, bias, case), mult, zy, lo, hi)
    out = np.empty(out_shape(case), dtype)
    conv_i8.conv2d_i8(nhwc(x), zx, packing.pack_conv_i8(w, case["groups"], dot=DOT).data, bias, out, *geometry(case),
                      mult, zy, lo, hi, TGT)
    np.testing.assert_array_equal(out.astype(np.int32), want)


@SETTINGS
@given(case=conv_cases(), seed=st.integers(0, 2**31))
def test_conv_i8_residual_add_is_qconv_then_qadd(case, seed):
    """The fused residual epilogue equals requantize to the conv's own grid, then `qv.qadd`'s arithmetic."""
    rng = np.random.default_rng(seed)
    x, w, zx = int8_data(rng, case, signed_x=False)
    bias = rng.integers(-20000, 20000, case["oc"]).astype(np.int32)
    mult = rng.uniform(1e-4, 1e-2, case["oc"]).astype(np.float32)
    s1, z1 = f32(rng.uniform(0.01, 0.1)), int(rng.integers(0, 256))
    sr, zr = f32(rng.uniform(0.01, 0.1)), int(rng.integers(0, 256))
    sy, zy = f32(rng.uniform(0.01, 0.2)), int(rng.integers(0, 256))
    lo, hi = (zy, 255) if rng.integers(2) else (0, 255)  # relu after the add, or none
    res = rng.integers(0, 256, out_shape(case)).astype(np.uint8)
    q1 = requantize_float(int8_acc(x, w, zx, bias, case), mult, z1, 0, 255)
    total = dequantize(q1, qp(s1, z1)) + dequantize(res, qp(sr, zr))
    want = np.clip(quantize(total, qp(sy, zy), "u8"), lo, hi)
    out = np.empty(out_shape(case), np.uint8)
    conv_i8.conv2d_i8_add(nhwc(x), zx, packing.pack_conv_i8(w, case["groups"], dot=DOT).data, bias, out, *geometry(case),
                          mult, z1, 0, 255, s1, res, zr, sr, sy, zy, lo, hi, TGT)
    np.testing.assert_array_equal(out, want)


@FEW
@given(case=conv_cases(), with_res=st.booleans(), seed=st.integers(0, 2**31))
def test_conv_i8_dequant_epilogue(case, with_res, seed):
    rng = np.random.default_rng(seed)
    x, w, zx = int8_data(rng, case, signed_x=False)
    bias = rng.integers(-20000, 20000, case["oc"]).astype(np.int32)
    scale = rng.uniform(1e-4, 1e-2, case["oc"]).astype(np.float32)
    fbias = rng.standard_normal(case["oc"]).astype(np.float32)
    res = rng.standard_normal(out_shape(case)).astype(np.float32)
    want = int8_acc(x, w, zx, bias, case).astype(np.float64) * scale + fbias + (res if with_res else 0)
    want = np.clip(want, 0.0, np.inf)
    out = np.empty(out_shape(case), np.float32)
    conv_i8.conv2d_i8_dequant(nhwc(x), zx, packing.pack_conv_i8(w, case["groups"], dot=DOT).data, bias, out,
                              *geometry(case), scale, fbias, res, with_res, 0.0, np.inf, TGT)
    assert_close(out, want)


@pytest.mark.parametrize("channels", [16, 5])  # the fused IR epilogue (full panel) and the NumPy one
def test_conv_i8_requant_rounds_half_to_even(channels):
    """acc * 0.5 hits exact .5 ties: they must round to even (np.rint), as QuantizeLinear does."""
    x = np.arange(-40, 40, dtype=np.int8).reshape(1, 1, 1, 80)  # NHWC, one pixel
    w = np.zeros((channels, 80, 1, 1), np.int8)
    w[:, 1::2] = 1  # acc = sum of the odd-indexed inputs
    w[:, 0, 0, 0] = np.arange(channels) % 3 - 1
    bias = np.arange(channels, dtype=np.int32) - 3
    mult = np.full(channels, 0.5, np.float32)
    acc = (x.reshape(1, 80).astype(np.int64) @ w.reshape(channels, 80).T.astype(np.int64)) + bias
    assert np.any(acc % 2 == 1)  # there are ties
    out = np.empty((1, 1, 1, channels), np.int8)
    conv_i8.conv2d_i8(x, 0, packing.pack_conv_i8(w, dot=DOT).data, bias, out, 1, 1, 1, 1, 0, 0, 1, 1, mult, 0, -128, 127, TGT)
    np.testing.assert_array_equal(out.reshape(1, channels), np.clip(np.rint(acc * 0.5), -128, 127))


@FEW
@given(case=conv_cases(), add=st.booleans(), seed=st.integers(0, 2**31))
def test_conv_i8_shift_requant_bit_exact(case, add, seed):
    """int32 shifts in place of float multipliers ("shift" requantization, power-of-2 scales): the integer
    round-half-up shift of `quant_math.requantize_shift`, alone and before the fused `qv.qadd`."""
    rng = np.random.default_rng(seed)
    x, w, zx = int8_data(rng, case, signed_x=False)
    bias = rng.integers(-20000, 20000, case["oc"]).astype(np.int32)
    shifts = rng.integers(-2, 18, case["oc"]).astype(np.int32)  # left shifts, none, and right shifts
    z1, zr, zy = (int(v) for v in rng.integers(0, 256, 3))
    q1 = requantize_shift(int8_acc(x, w, zx, bias, case), shifts, z1, 0, 255)
    out = np.empty(out_shape(case), np.uint8)
    packed = packing.pack_conv_i8(w, case["groups"], dot=DOT).data
    if not add:
        conv_i8.conv2d_i8(nhwc(x), zx, packed, bias, out, *geometry(case), shifts, z1, 0, 255, TGT)
        np.testing.assert_array_equal(out.astype(np.int32), q1)
        return
    s1, sr, sy = (f32(2.0 ** -e) for e in rng.integers(3, 8, 3))
    res = rng.integers(0, 256, out_shape(case)).astype(np.uint8)
    total = dequantize(q1, qp(s1, z1)) + dequantize(res, qp(sr, zr))
    conv_i8.conv2d_i8_add(nhwc(x), zx, packed, bias, out, *geometry(case), shifts, z1, 0, 255, s1, res, zr, sr, sy,
                          zy, zy, 255, TGT)
    np.testing.assert_array_equal(out, np.clip(quantize(total, qp(sy, zy), "u8"), zy, 255))


@pytest.mark.parametrize("channels", [16, 5])  # the fused IR epilogue (full panel) and the NumPy one
def test_conv_i8_shift_rounds_half_up(channels):
    """A right shift by one hits exact .5 ties: "shift" requantization rounds them up (-2.5 -> -2, 2.5 -> 3)."""
    x = np.arange(-40, 40, dtype=np.int8).reshape(1, 1, 1, 80)
    w = np.zeros((channels, 80, 1, 1), np.int8)
    w[:, 1::2] = 1
    w[:, 0, 0, 0] = np.arange(channels) % 3 - 1
    bias = np.arange(channels, dtype=np.int32) - 3
    acc = (x.reshape(1, 80).astype(np.int64) @ w.reshape(channels, 80).T.astype(np.int64)) + bias
    assert np.any(acc % 2 == 1) and np.any(acc < 0)  # ties on both sides of zero
    out = np.empty((1, 1, 1, channels), np.int8)
    conv_i8.conv2d_i8(x, 0, packing.pack_conv_i8(w, dot=DOT).data, bias, out, 1, 1, 1, 1, 0, 0, 1, 1,
                      np.ones(channels, np.int32), 0, -128, 127, TGT)
    np.testing.assert_array_equal(out.reshape(1, channels), np.clip(np.floor(acc / 2 + 0.5), -128, 127))


def test_conv_i8_shift_extreme_shifts_and_accumulators():
    """Every pair of an edge shift (0, +-1, at and beyond the int32 width: 31, 32, 62; large left shifts
    -22, -23, -31) and an edge accumulator (0, +-1, +-2**30, int32 min and max...): the kernels' int32
    arithmetic must equal `requantize_shift`'s int64 one.  The input is 0 with zero point 0, so each
    channel's accumulator is its bias; 17 x 15 = 255 channels, 15 full 16-channel panels (register
    epilogue) and a partial one (NumPy-level), and the pairs are laid out again in reverse order."""
    shifts_1 = [0, 1, 2, 15, 30, 31, 32, 33, 40, 62, -1, -2, -8, -21, -22, -23, -31]
    accs_1 = [-2**31, -2**30 - 1, -2**30, -1000, -3, -2, -1, 0, 1, 2, 3, 1000, 2**30 - 1, 2**30, 2**31 - 1]
    pairs = [(s, a) for s in shifts_1 for a in accs_1]
    for order in (pairs, pairs[::-1]):
        shifts = np.array([s for s, _ in order], np.int32)
        bias = np.array([a for _, a in order], np.int32)
        oc = len(order)
        x = np.zeros((1, 1, 1, 4), np.uint8)
        w = np.ones((oc, 4, 1, 1), np.int8)
        out = np.empty((1, 1, 1, oc), np.uint8)
        conv_i8.conv2d_i8(x, 0, packing.pack_conv_i8(w, dot=DOT).data, bias, out, 1, 1, 1, 1, 0, 0, 1, 1, shifts, 7, 0, 255, TGT)
        np.testing.assert_array_equal(out.reshape(oc), requantize_shift(bias.astype(np.int64), shifts, 7, 0, 255))


def test_conv_i8_extreme_values_do_not_saturate():
    """Largest |(x - zx) * w| pair sums (255 * 128, same sign) over a long reduction stay exact."""
    case = dict(n=1, c=64, h=6, w=6, oc=32, groups=1, kernel=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1),
                dilations=(1, 1))
    x = np.full((1, 64, 6, 6), 255, np.uint8)
    w = np.full((32, 64, 3, 3), -128, np.int8)
    w[16:] = 127
    bias = np.zeros(32, np.int32)
    acc = int8_acc(x, w, 0, bias, case)
    assert np.abs(acc).max() == 576 * 255 * 128  # far beyond int16, the vpmaddubsw pair-sum limit
    out = np.empty((1, 6, 6, 32), np.float32)
    ones = np.ones(32, np.float32)
    conv_i8.conv2d_i8_dequant(nhwc(x), 0, packing.pack_conv_i8(w, dot=DOT).data, bias, out, 3, 3, 1, 1, 1, 1, 1, 1,
                              ones, np.zeros(32, np.float32), out, False, -np.inf, np.inf, TGT)
    np.testing.assert_array_equal(out, acc.astype(np.float32))


def test_conv_parallel_path_with_panel_chunks():
    """Large enough to take the prange path (checked on the plans), with more panels than pixel tiles
    (split over panel chunks), in fp32 and int8."""
    rng = np.random.default_rng(7)
    h, c, oc = 12, 32, 200
    case = dict(n=1, c=c, h=h, w=h, oc=oc, groups=1, kernel=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1),
                dilations=(1, 1))
    npan = -(-oc // 16)
    for kc, min_ops in ((c, tiling.FP32_CONV_PARALLEL_MIN_OPS), (c // 2, tiling.PARALLEL_MIN_OPS)):
        plan = ConvPlan(*make_plan(1, h, h, h, h, oc, 3, 3, 1, 1, 1, 1, 1, 1, 1, npan, 9 * c, kc, c, c, min_ops, 6))
        assert plan.parallel and plan.nchunks > 1 and npan > plan.nptiles
    x = rng.standard_normal((1, c, h, h)).astype(np.float32)
    w = rng.standard_normal((oc, c, 3, 3)).astype(np.float32)
    b = np.zeros(oc, np.float32)
    want = nhwc(conv_ref(x.astype(np.float64), w.astype(np.float64), (1, 1), (1, 1, 1, 1), (1, 1), 1))
    out = np.empty((1, h, h, oc), np.float32)
    conv_f32.conv2d_f32(nhwc(x), packing.pack_conv_f32(w).data, b, out, out, 3, 3, 1, 1, 1, 1, 1, 1,
                        -np.inf, np.inf, False, TGT)
    assert_close(out, want)
    xq, wq, zx = int8_data(rng, case, signed_x=False)
    mult = np.full(oc, 1e-4, np.float32)
    bq = np.zeros(oc, np.int32)
    outq = np.empty((1, h, h, oc), np.uint8)
    conv_i8.conv2d_i8(nhwc(xq), zx, packing.pack_conv_i8(wq, dot=DOT).data, bq, outq, 3, 3, 1, 1, 1, 1, 1, 1, mult, 128, 0, 255, TGT)
    np.testing.assert_array_equal(outq, requantize_float(int8_acc(xq, wq, zx, bq, case), mult, 128, 0, 255))


def quantize_f32(y, scale, zp, qlo, qhi):
    """QuantizeLinear of an fp32 array in float32 steps, as `epilogue.store_f32_quant` does."""
    f = np.float32
    return np.clip(np.rint(y / f(scale)) + f(zp), f(qlo), f(qhi))


@SETTINGS
@given(case=conv_cases(max_c=40), act=st.sampled_from(sorted(ACTS)), with_res=st.booleans(), signed=st.booleans(),
       seed=st.integers(0, 2**31))
def test_conv_f32_quant_epilogue_is_the_fp32_output_quantized(case, act, with_res, signed, seed):
    """Bit for bit: the quantizing epilogue (in registers for full 16-channel panels, NumPy-level for the
    rest) equals quantizing the fp32 conv's own output, residual and activation included."""
    rng = np.random.default_rng(seed)
    kh, kw = case["kernel"]
    x = nhwc(rng.standard_normal((case["n"], case["c"], case["h"], case["w"])).astype(np.float32))
    w = packing.pack_conv_f32(rng.standard_normal((case["oc"], case["c"] // case["groups"], kh, kw))
                              .astype(np.float32), case["groups"]).data
    b = rng.standard_normal(case["oc"]).astype(np.float32)
    res = rng.standard_normal(out_shape(case)).astype(np.float32)
    lo, hi = ACTS[act]
    dtype, (qlo, qhi) = (np.int8, (-128, 127)) if signed else (np.uint8, (0, 255))
    scale, zp = float(f32(rng.uniform(0.005, 0.05))), (0 if signed else int(rng.integers(0, 256)))
    y = np.empty(out_shape(case), np.float32)
    conv_f32.conv2d_f32(x, w, b, res, y, *geometry(case), lo, hi, with_res, TGT)
    out = np.empty(out_shape(case), dtype)
    conv_f32.conv2d_f32_quant(x, w, b, res, out, *geometry(case), lo, hi, with_res, scale, zp, qlo, qhi, TGT)
    np.testing.assert_array_equal(out, quantize_f32(y, scale, zp, qlo, qhi).astype(dtype))


@SETTINGS
@given(case=conv_cases(depthwise_only=True), act=st.sampled_from(sorted(ACTS)), with_res=st.booleans(),
       signed=st.booleans(), seed=st.integers(0, 2**31))
def test_depthwise_f32_quant_epilogue_is_the_fp32_output_quantized(case, act, with_res, signed, seed):
    """As for convs: interior rows in the register kernel, borders per pixel, both bit for bit."""
    rng = np.random.default_rng(seed)
    kh, kw = case["kernel"]
    x = nhwc(rng.standard_normal((case["n"], case["c"], case["h"], case["w"])).astype(np.float32))
    w = packing.pack_depthwise_f32(rng.standard_normal((case["c"], 1, kh, kw)).astype(np.float32)).data
    b = rng.standard_normal(case["c"]).astype(np.float32)
    res = rng.standard_normal(out_shape(case)).astype(np.float32)
    lo, hi = ACTS[act]
    dtype, (qlo, qhi) = (np.int8, (-128, 127)) if signed else (np.uint8, (0, 255))
    scale, zp = float(f32(rng.uniform(0.005, 0.05))), (0 if signed else int(rng.integers(0, 256)))
    _, _, sh, sw, pt, pl, dh, dw = geometry(case)
    y = np.empty(out_shape(case), np.float32)
    depthwise.depthwise_f32(x, w, b, res, y, sh, sw, pt, pl, dh, dw, lo, hi, with_res, TGT)
    out = np.empty(out_shape(case), dtype)
    depthwise.depthwise_f32_quant(x, w, b, res, out, sh, sw, pt, pl, dh, dw, lo, hi, with_res, scale, zp, qlo, qhi,
                                  TGT)
    np.testing.assert_array_equal(out, quantize_f32(y, scale, zp, qlo, qhi).astype(dtype))


# -- depthwise -----------------------------------------------------------------------------
@SETTINGS
@given(case=conv_cases(depthwise_only=True), act=st.sampled_from(sorted(ACTS)), with_res=st.booleans(),
       seed=st.integers(0, 2**31))
def test_depthwise_f32_matches_numpy(case, act, with_res, seed):
    check_depthwise_f32(case, act, with_res, seed, TGT)


def check_depthwise_f32(case, act, with_res, seed, tgt):
    """depthwise_f32 of target marker `tgt` against a float64 NumPy depthwise conv (+ bias, residual, clamp)."""
    rng = np.random.default_rng(seed)
    kh, kw = case["kernel"]
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"])).astype(np.float32)
    w = rng.standard_normal((case["c"], 1, kh, kw)).astype(np.float32)
    b = rng.standard_normal(case["c"]).astype(np.float32)
    res = rng.standard_normal(out_shape(case)).astype(np.float32)
    want = nhwc(conv_ref(x.astype(np.float64), w.astype(np.float64), case["strides"], case["pads"],
                         case["dilations"], case["c"])) + b + (res if with_res else 0)
    lo, hi = ACTS[act]
    out = np.empty(out_shape(case), np.float32)
    _, _, sh, sw, pt, pl, dh, dw = geometry(case)
    depthwise.depthwise_f32(nhwc(x), packing.pack_depthwise_f32(w).data, b, res, out, sh, sw, pt, pl, dh, dw,
                            lo, hi, with_res, tgt)
    assert_close(out, np.clip(want, lo, hi))


@SETTINGS
@given(case=conv_cases(depthwise_only=True), signed=st.booleans(), mode=st.sampled_from(["requant", "add", "dequant"]),
       seed=st.integers(0, 2**31))
def test_depthwise_i8(case, signed, mode, seed):
    rng = np.random.default_rng(seed)
    signed = signed and mode == "requant"  # i8 inputs only here: each dtype combination is a separate JIT compile
    x, w, zx = int8_data(rng, case, signed)
    bias = rng.integers(-5000, 5000, case["c"]).astype(np.int32)
    mult = rng.uniform(1e-3, 5e-2, case["c"]).astype(np.float32)
    acc = int8_acc(x, w, zx, bias, case)
    packed = packing.pack_depthwise_i8(w).data
    _, _, sh, sw, pt, pl, dh, dw = geometry(case)
    xn = nhwc(x)
    if mode == "requant":
        dtype, qmin, qmax = (np.int8, -128, 127) if signed else (np.uint8, 0, 255)
        zy = 0 if signed else int(rng.integers(0, 256))
        out = np.empty(out_shape(case), dtype)
        depthwise.depthwise_i8(xn, zx, packed, bias, out, sh, sw, pt, pl, dh, dw, mult, zy, qmin, qmax, TGT)
        np.testing.assert_array_equal(out.astype(np.int32), requantize_float(acc, mult, zy, qmin, qmax))
    elif mode == "add":
        z1, zr, zy = (int(v) for v in rng.integers(0, 256, 3))
        s1, sr, sy = (f32(v) for v in rng.uniform(0.01, 0.1, 3))
        res = rng.integers(0, 256, out_shape(case)).astype(np.uint8)
        total = dequantize(requantize_float(acc, mult, z1, 0, 255), qp(s1, z1)) + dequantize(res, qp(sr, zr))
        out = np.empty(out_shape(case), np.uint8)
        depthwise.depthwise_i8_add(xn, zx, packed, bias, out, sh, sw, pt, pl, dh, dw, mult, z1, 0, 255, s1,
                                   res, zr, sr, sy, zy, 0, 255, TGT)
        np.testing.assert_array_equal(out, quantize(total, qp(sy, zy), "u8"))
    else:
        fbias = rng.standard_normal(case["c"]).astype(np.float32)
        out = np.empty(out_shape(case), np.float32)
        depthwise.depthwise_i8_dequant(xn, zx, packed, bias, out, sh, sw, pt, pl, dh, dw, mult, fbias, out, False,
                                       -np.inf, np.inf, TGT)
        assert_close(out, acc.astype(np.float64) * mult + fbias)


@FEW
@given(case=conv_cases(depthwise_only=True), add=st.booleans(), seed=st.integers(0, 2**31))
def test_depthwise_i8_shift(case, add, seed):
    """Depthwise with int32 shifts ("shift" requantization), with and without the fused `qv.qadd`."""
    rng = np.random.default_rng(seed)
    x, w, zx = int8_data(rng, case, signed_x=False)
    bias = rng.integers(-5000, 5000, case["c"]).astype(np.int32)
    shifts = rng.integers(-1, 14, case["c"]).astype(np.int32)
    z1, zr, zy = (int(v) for v in rng.integers(0, 256, 3))
    q1 = requantize_shift(int8_acc(x, w, zx, bias, case), shifts, z1, 0, 255)
    packed = packing.pack_depthwise_i8(w).data
    _, _, sh, sw, pt, pl, dh, dw = geometry(case)
    out = np.empty(out_shape(case), np.uint8)
    if not add:
        depthwise.depthwise_i8(nhwc(x), zx, packed, bias, out, sh, sw, pt, pl, dh, dw, shifts, z1, 0, 255, TGT)
        np.testing.assert_array_equal(out.astype(np.int32), q1)
        return
    s1, sr, sy = (f32(2.0 ** -e) for e in rng.integers(3, 8, 3))
    res = rng.integers(0, 256, out_shape(case)).astype(np.uint8)
    total = dequantize(q1, qp(s1, z1)) + dequantize(res, qp(sr, zr))
    depthwise.depthwise_i8_add(nhwc(x), zx, packed, bias, out, sh, sw, pt, pl, dh, dw, shifts, z1, 0, 255, s1,
                               res, zr, sr, sy, zy, 0, 255, TGT)
    np.testing.assert_array_equal(out, quantize(total, qp(sy, zy), "u8"))


# -- GEMM (FC layers) ------------------------------------------------------------------------
@SETTINGS
@given(m=st.integers(1, 13), k=st.integers(1, 300), n=st.integers(1, 40), trans_b=st.booleans(),
       act=st.sampled_from(sorted(ACTS)), with_res=st.booleans(), seed=st.integers(0, 2**31))
def test_gemm_f32(m, k, n, trans_b, act, with_res, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float32)
    wt = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    res = rng.standard_normal((m, n)).astype(np.float32)
    lo, hi = ACTS[act]
    want = np.clip(a.astype(np.float64) @ wt.T.astype(np.float64) + b + (res if with_res else 0), lo, hi)
    out = np.empty((m, n), np.float32)
    packed = packing.pack_gemm_f32(wt if trans_b else np.ascontiguousarray(wt.T), trans_b=trans_b)
    gemm.gemm_f32(a, packed.data, b, res, out, lo, hi, with_res, TGT)
    assert_close(out, want)


@SETTINGS
@given(m=st.integers(1, 13), k=st.integers(1, 300), n=st.integers(1, 40), signed=st.booleans(),
       seed=st.integers(0, 2**31))
def test_gemm_i8(m, k, n, signed, seed):
    rng = np.random.default_rng(seed)
    if signed:
        a, za = rng.integers(-128, 128, (m, k)).astype(np.int8), 0
    else:
        a, za = rng.integers(0, 256, (m, k)).astype(np.uint8), int(rng.integers(0, 256))
    wt = rng.integers(-128, 128, (n, k)).astype(np.int8)
    bias = rng.integers(-20000, 20000, n).astype(np.int32)
    mult = rng.uniform(1e-4, 1e-2, n).astype(np.float32)
    zy, (qmin, qmax) = (0, (-128, 127)) if signed else (int(rng.integers(0, 256)), (0, 255))
    acc = (a.astype(np.int64) - za) @ wt.T.astype(np.int64) + bias
    out = np.empty((m, n), np.int8 if signed else np.uint8)
    gemm.gemm_i8(a, za, packing.pack_gemm_i8(wt, dot=DOT).data, bias, out, mult, zy, qmin, qmax, TGT)
    np.testing.assert_array_equal(out.astype(np.int32), requantize_float(acc, mult, zy, qmin, qmax))
    if not signed:  # int32 shifts: "shift" requantization (power-of-2 scales)
        shifts = rng.integers(-1, 16, n).astype(np.int32)
        gemm.gemm_i8(a, za, packing.pack_gemm_i8(wt, dot=DOT).data, bias, out, shifts, zy, qmin, qmax, TGT)
        np.testing.assert_array_equal(out.astype(np.int32), requantize_shift(acc, shifts, zy, qmin, qmax))
    if not signed:  # (one dtype is enough for the dequantizing epilogue; each is a separate JIT compile)
        fb = rng.standard_normal(n).astype(np.float32)
        outf = np.empty((m, n), np.float32)
        gemm.gemm_i8_dequant(a, za, packing.pack_gemm_i8(wt, dot=DOT).data, bias, outf, mult, fb, outf, False,
                             -np.inf, np.inf, TGT)
        assert_close(outf, acc.astype(np.float64) * mult + fb)


def test_gemm_parallel_panel_split():
    """Batch-1 FC large enough to run in parallel: one pixel tile, split over weight panel chunks."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((1, 1280)).astype(np.float32)
    wt = rng.standard_normal((1001, 1280)).astype(np.float32)
    b = rng.standard_normal(1001).astype(np.float32)
    out = np.empty((1, 1001), np.float32)
    gemm.gemm_f32(a, packing.pack_gemm_f32(wt).data, b, out, out, -np.inf, np.inf, False, TGT)
    assert_close(out, a.astype(np.float64) @ wt.T.astype(np.float64) + b)


# -- layout, packing, generated code ------------------------------------------------------------
@FEW
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 7), st.integers(1, 7)))
def test_layout_round_trip(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = layout.nchw_to_nhwc(x)
    np.testing.assert_array_equal(y, x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(layout.nhwc_to_nchw(y), x)


def test_packing_rejects_bad_weights():
    with pytest.raises(ValueError, match="4-D"):
        packing.pack_conv_f32(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="groups"):
        packing.pack_conv_f32(np.zeros((5, 2, 3, 3), np.float32), groups=2)
    with pytest.raises(ValueError, match="int8"):
        packing.pack_conv_i8(np.zeros((4, 2, 3, 3), np.float32), dot=DOT)
    with pytest.raises(ValueError, match="depthwise"):
        packing.pack_depthwise_f32(np.zeros((4, 2, 3, 3), np.float32))


def test_kernels_reject_mismatched_arrays():
    """A packed weight for another channel count must raise, not read out of bounds."""
    x = np.zeros((1, 4, 4, 8), np.float32)
    out = np.empty((1, 4, 4, 16), np.float32)
    wrong = packing.pack_conv_f32(np.zeros((16, 6, 3, 3), np.float32)).data  # packed for 6 input channels
    with pytest.raises(ValueError, match="reduction length"):
        conv_f32.conv2d_f32(x, wrong, np.zeros(16, np.float32), out, out, 3, 3, 1, 1, 1, 1, 1, 1,
                            -np.inf, np.inf, False, TGT)
    dw_wrong = packing.pack_depthwise_f32(np.zeros((6, 1, 3, 3), np.float32)).data
    out8 = np.empty((1, 4, 4, 8), np.float32)
    with pytest.raises(ValueError, match="channels differ"):
        depthwise.depthwise_f32(x, dw_wrong, np.zeros(8, np.float32), out8, out8, 1, 1, 1, 1, 1, 1,
                                -np.inf, np.inf, False, TGT)


def test_packed_int8_layout_interleaves_pairs():
    """data[g, panel, k // 2, j, k % 2] = w[j, ic, kh, kw] with k = (kh*KW + kw)*ICgp + ic, ICgp even."""
    w = np.arange(2 * 3 * 2 * 2, dtype=np.int8).reshape(2, 3, 2, 2)
    p = packing.pack_conv_i8(w, dot="pairs")
    assert p.kpad == 2 * 2 * 4 and p.data.shape == (1, 1, 8, 16, 2)
    k = (1 * 2 + 0) * 4 + 2  # kh=1, kw=0, ic=2
    assert p.data[0, 0, k // 2, 1, k % 2] == w[1, 2, 1, 0]
    assert not p.data[0, 0, :, 2:].any()  # padded output channels are zero
    assert not p.data[0, 0, 1, :, 1].any()  # the pad channel (ic = 3) of tap 0 is zero


def _asm_of_kernel(fn, *args):
    fn(*args)
    return "\n".join(fn.inspect_asm(sig) for sig in fn.signatures)


def test_microkernels_compile_to_fma_and_pmaddwd():
    """On AVX2 + FMA CPUs the register kernels must use vfmadd231ps and vpmaddwd (not scalar fallbacks)."""
    import llvmlite.binding as llvm
    from numba import njit
    from numba.core import config

    features = llvm.get_host_cpu_features()
    if not (features.get("avx2") and features.get("fma")) or config.CPU_NAME not in (None, "host"):
        pytest.skip("Numba does not target an AVX2/FMA host CPU here")

    from qv2c.runtime.kernels.microkernel import conv_kernel
    from qv2c.runtime.kernels.target import TARGETS

    mk_f32_raw = conv_kernel(TARGETS["avx2"], "f32", "raw")
    mk_s16_raw = conv_kernel(TARGETS["avx2"], "s16", "raw")

    @njit
    def run_f32(a, rowoff, tapoff, b, c):
        mk_f32_raw(6, a, rowoff, 0, tapoff, 1, 8, b, 0, c, 0, 16)

    @njit
    def run_s16(a, rowoff, tapoff, b, c):
        mk_s16_raw(6, a, rowoff, 0, tapoff, 1, 4, b, 0, c, 0, 16)

    rowoff = np.arange(6, dtype=np.int64) * 8
    tapoff = np.zeros(1, np.int64)
    asm_f = _asm_of_kernel(run_f32, np.ones(48, np.float32), rowoff, tapoff, np.ones(128, np.float32),
                           np.zeros(96, np.float32))
    asm_i = _asm_of_kernel(run_s16, np.ones(48, np.int16), rowoff, tapoff, np.ones(128, np.int16),
                           np.zeros(96, np.int32))
    assert "vfmadd231ps" in asm_f and "vbroadcastss" in asm_f
    assert "vpmaddwd" in asm_i and "vpmulld" not in asm_i


def test_cache_guard_stamps_new_directories_and_clears_stale_ones(tmp_path, monkeypatch):
    """A cache directory Numba has not created yet gets the sources' stamp first, so the files it is about
    to write survive the next process; a directory stamped by other sources loses this package's files."""
    from qv2c.runtime.kernels import cache_guard

    fresh, stale = tmp_path / "fresh" / "sub", tmp_path / "stale"
    stale.mkdir()
    (stale / cache_guard._STAMP_NAME).write_text("older sources")
    (stale / "conv_i8.conv2d_i8-1.py311.nbi").write_text("x")
    (stale / "other_package.f-1.py311.nbi").write_text("x")
    monkeypatch.setattr(cache_guard, "_cache_dirs", lambda: [fresh, stale])
    cache_guard.invalidate_stale_caches()
    digest = cache_guard.sources_digest()
    assert (fresh / cache_guard._STAMP_NAME).read_text() == digest
    assert (stale / cache_guard._STAMP_NAME).read_text() == digest
    assert not (stale / "conv_i8.conv2d_i8-1.py311.nbi").exists() and (stale / "other_package.f-1.py311.nbi").exists()
    (fresh / "conv_i8.conv2d_i8-1.py311.nbi").write_text("compiled after the stamp")
    cache_guard.invalidate_stale_caches()  # the next process: same sources, nothing deleted
    assert (fresh / "conv_i8.conv2d_i8-1.py311.nbi").exists()
