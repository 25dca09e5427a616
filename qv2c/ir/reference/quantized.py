"""Reference semantics of the quantized ops (`qv2c/ir/quant_ops.py`) and of
`qv.quantize` / `qv.dequantize`.

Every integer result here is the bit-exact contract for generated kernels.  The
arithmetic lives in `qv2c/ir/quant_math.py`; this file only wires it to ops:

- Accumulation is exact integer arithmetic, as an int32 kernel accumulator computes
  it; a result outside int32 raises instead of wrapping.  For speed the sums run as
  float BLAS products of integer-valued arrays, which are exact because every partial
  sum is an integer below 2**24 (float32) or 2**53 (float64): we pick float32 only
  when the worst-case sum bound `K * max|x - zx| * max|w|` proves it fits, else float64.
  Whatever order BLAS adds in, and with or without FMA, an exact sum stays exact.
- Convolution reuses `conv2d` of `reference/conv.py` on the zero-point-centred input
  `x - zx`; its zero padding is then the input zero point, as in ONNX QLinearConv.
- The epilogue requantizes with `requantize_float` (`requant="float"`) or
  `requantize_shift` (`requant="shift"`, every multiplier a power of two), and clamps
  to `activation_bounds(act)`.
"""

from __future__ import annotations

import numpy as np

from qv2c.errors import QV2CError, VerificationError
from qv2c.ir.ops import OPS
from qv2c.ir.quant_math import (
    activation_bounds,
    dequantize,
    is_power_of_two,
    qrange,
    quantize,
    requantize_float,
    requantize_multiplier,
    requantize_shift,
    shift_of,
)
from qv2c.ir.quant_ops import check_activation
from qv2c.ir.reference import reference
from qv2c.ir.reference.conv import conv2d, pad_for_windows, window_slices
from qv2c.ir.reference.elementwise import as_result
from qv2c.ir.reference.pooling import window_counts

_INT32_MIN, _INT32_MAX = qrange("i32")


def _check(op) -> None:
    """Re-run the op's type rule (it validates quantization and attributes), naming the op on failure.

    Ops built with explicit `result_types` never ran it, so the reference does; the
    result must also be a per-tensor u8/i8 activation.
    """
    try:
        OPS[op.name].infer([v.type for v in op.operands], op.attrs)
        check_activation(op.result.type, op.name, "result")
    except QV2CError as e:
        raise type(e)(f"{op.location}: {str(e).removeprefix(op.name + ': ')}") from None


# -- exact integer products -----------------------------------------------------
def _exact_float(bound: float) -> type:
    """The cheapest float type in which integer sums of magnitude <= `bound` are exact."""
    if bound < 2**24:
        return np.float32
    if bound < 2**53:
        return np.float64
    raise QV2CError(f"integer sum bound {bound:.3g} is too large for exact evaluation")


def _centred(x: np.ndarray, zero_point: int) -> np.ndarray:
    return x.astype(np.int32) - np.int32(zero_point)


def _to_int32(op, acc: np.ndarray, bias: np.ndarray | None, channel_axis: int) -> np.ndarray:
    """Float-held exact sums (+ bias, in int64) as int64, refusing anything an int32 accumulator cannot hold."""
    acc = acc.astype(np.int64)
    if bias is not None:
        shape = [1] * acc.ndim
        shape[channel_axis] = -1
        acc += bias.astype(np.int64).reshape(shape)
    if acc.size and (acc.min() < _INT32_MIN or acc.max() > _INT32_MAX):
        raise QV2CError(f"{op.location}: int32 accumulator overflow (range {acc.min()}..{acc.max()}); "
                        "the layer is too wide for int8 at these scales, keep it in fp32")
    return acc


def _epilogue(op, acc: np.ndarray, s_w, channel_axis: int | None) -> list[np.ndarray]:
    """Requantize int32 accumulators of scale s_x * s_w (s_w per channel along `channel_axis`,
    or 1.0) to the result type, and clamp to the fused activation's bounds."""
    out = op.result.type
    zy = out.quant.zero_point[0]
    lo, hi = activation_bounds(op.attrs.get("act", "none"), out.quant, out.dtype)
    m = requantize_multiplier(op.operands[0].type.quant.scale[0], s_w, out.quant.scale[0])
    if channel_axis is not None:
        shape = [1] * acc.ndim
        shape[channel_axis] = -1
        m = m.reshape(shape)
    if op.attrs.get("requant", "float") == "shift":
        if not is_power_of_two(m):
            raise VerificationError(f"{op.location}: requant='shift' needs power-of-two multipliers "
                                    f"s_in * s_w / s_out, got {sorted(set(m.ravel().tolist()))[:4]}")
        shifts = np.vectorize(shift_of, otypes=[np.int64])(m)
        return as_result(op, requantize_shift(acc, shifts, zy, lo, hi))
    return as_result(op, requantize_float(acc, m, zy, lo, hi))


# -- quantize / dequantize -------------------------------------------------------
@reference("qv.quantize")
def quantize_ref(op, x):
    """ONNX QuantizeLinear with the result type's parameters (per tensor or per axis)."""
    out = op.result.type
    if out.quant is None or out.dtype not in ("u8", "i8", "i32"):
        raise VerificationError(f"{op.location}: result must be a quantized u8/i8/i32 type, got {out}")
    return [quantize(x, out.quant, out.dtype)]


@reference("qv.dequantize")
def dequantize_ref(op, q):
    """ONNX DequantizeLinear with the operand type's parameters (per tensor or per axis)."""
    qp = op.operands[0].type.quant
    if qp is None:
        raise VerificationError(f"{op.location}: operand {op.operands[0].type} has no quantization parameters")
    return as_result(op, dequantize(q, qp))


# -- conv / gemm ---------------------------------------------------------------
def _weight_scales(op, channels: int) -> np.ndarray:
    """The weight scale of each of `channels` output channels (a per-tensor scale repeated)."""
    return np.broadcast_to(np.asarray(op.operands[1].type.quant.scale, dtype=np.float64), (channels,))


@reference("qv.qconv")
def qconv(op, x, w, b=None):
    """acc[n,m] = sum (x - zx) * w (+ b[m]) exactly in int32; y = requantize(acc, s_x * s_w[m] / s_y), `act` clamp."""
    _check(op)
    a = op.attrs
    xc = _centred(x, op.operands[0].type.quant.zero_point[0])
    k = w.shape[1] * w.shape[2] * w.shape[3]
    ftype = _exact_float(float(k) * np.abs(xc).max(initial=0) * np.abs(w.astype(np.int32)).max(initial=0))
    acc = conv2d(xc.astype(ftype), w.astype(ftype), None, a["strides"], a["pads"], a["dilations"], a["group"])
    acc = _to_int32(op, acc, b, 1)
    return _epilogue(op, acc, _weight_scales(op, w.shape[0]), 1)


@reference("qv.qgemm")
def qgemm(op, x, w, b=None):
    """acc[m,n] = sum_k (x - zx)[m,k] * w[n,k] (+ b[n]) exactly in int32; y = requantize per column n."""
    _check(op)
    xc = _centred(x, op.operands[0].type.quant.zero_point[0])
    ftype = _exact_float(float(w.shape[1]) * np.abs(xc).max(initial=0) * np.abs(w.astype(np.int32)).max(initial=0))
    acc = _to_int32(op, xc.astype(ftype) @ w.astype(ftype).T, b, 1)
    return _epilogue(op, acc, _weight_scales(op, w.shape[0]), 1)


@reference("qv.requantize")
def requantize(op, x):
    """y = requantize(x - zx, M = float32(s_x / s_y)) into the result type."""
    _check(op)
    qx = op.operands[0].type.quant
    return _epilogue(op, _centred(x, qx.zero_point[0]), 1.0, None)


# -- elementwise ---------------------------------------------------------------
@reference("qv.qadd")
def qadd(op, a, b):
    """y = quantize(dequantize(a) + dequantize(b)) in float32, then the `act` clamp.

    Exactly the value of the Q/DQ graph DequantizeLinear x2 -> Add -> QuantizeLinear, so
    fusing that graph into `qv.qadd` changes no bit.  Kernels: two float32 multiplies,
    one float32 add, one float32 division, no FMA contraction.
    """
    _check(op)
    out = op.result.type
    s = dequantize(a, op.operands[0].type.quant) + dequantize(b, op.operands[1].type.quant)
    lo, hi = activation_bounds(op.attrs["act"], out.quant, out.dtype)
    return as_result(op, np.clip(quantize(s, out.quant, out.dtype), lo, hi))


@reference("qv.qclip")
def qclip(op, x):
    """clamp(x, quantize(min), quantize(max)) in the operand's own parameters (equal to the result's)."""
    _check(op)
    t = op.operands[0].type
    lo, hi = (quantize(np.float32(op.attrs[k]), t.quant, t.dtype) for k in ("min", "max"))
    return as_result(op, np.clip(x, lo, hi))


# -- pooling -------------------------------------------------------------------
@reference("qv.qavgpool")
def qavgpool(op, x):
    """Window sum of (x - zx) in int32 (padding adds 0), then per output position
    y = requantize_float(sum, M = float32(s_x / (s_y * count))) where `count` follows
    `qv.avgpool` (`count_include_pad`; a ceil_mode overhang never counts).
    Equal, up to the rounding of M, to quantize(avgpool(dequantize(x)))."""
    _check(op)
    a = op.attrs
    kernel, strides, (pt, pl, pb, pr) = a["kernel"], a["strides"], a["pads"]
    xp, (oh, ow) = pad_for_windows(_centred(x, op.operands[0].type.quant.zero_point[0]), kernel, strides,
                                   a["pads"], (1, 1), bool(a["ceil_mode"]), 0)
    total = np.zeros(x.shape[:2] + (oh, ow), dtype=np.int32)
    for _, _, view in window_slices(xp, kernel, strides, (1, 1), (oh, ow)):
        total += view
    count_pad = bool(a["count_include_pad"])
    rows = window_counts(x.shape[2], kernel[0], strides[0], pt, pb, oh, count_pad)
    cols = window_counts(x.shape[3], kernel[1], strides[1], pl, pr, ow, count_pad)
    counts = np.maximum(np.outer(rows, cols), 1)  # an all-padding window sums to 0 whatever it divides by
    return _pool_epilogue(op, total, counts)


@reference("qv.qglobal_avgpool")
def qglobal_avgpool(op, x):
    """Sum of (x - zx) over all spatial positions, requantized with M = float32(s_x / (s_y * H*W))."""
    _check(op)
    axes = tuple(range(2, x.ndim))
    total = _centred(x, op.operands[0].type.quant.zero_point[0]).sum(axis=axes, keepdims=True, dtype=np.int64)
    return _pool_epilogue(op, total, np.int64(np.prod(x.shape[2:], dtype=np.int64)))


def _pool_epilogue(op, total: np.ndarray, counts) -> list[np.ndarray]:
    """requantize_float(total, M = float32(s_x / (s_y * count)))."""
    out = op.result.type
    m = requantize_multiplier(op.operands[0].type.quant.scale[0], 1.0, out.quant.scale[0], counts)
    qmin, qmax = qrange(out.dtype)
    return as_result(op, requantize_float(total, m, out.quant.zero_point[0], qmin, qmax))
