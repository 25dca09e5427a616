"""Quantization arithmetic: choosing parameters, quantizing, dequantizing, requantizing.

These pure functions *are* the numerics contract of qv2c (DESIGN.md, "Numerics"):
the reference interpreter (`qv2c/ir/reference/quantized.py`) calls them, and every
generated kernel must reproduce them bit for bit. So each function states its
arithmetic exactly: which precision every step runs in and how it rounds.

Conventions
- real = (q - zero_point) * scale.  Scales are positive float32 numbers (stored as
  Python floats in `QuantParams`, but always exactly representable in float32).
- Activations: u8 asymmetric (zero point in [0, 255]) or i8 symmetric (zero point 0),
  one scale per tensor.  Weights: i8 symmetric in [-127, 127], one scale per output
  channel (or per tensor).  Bias: i32 with scale s_x * s_w[c] and zero point 0.
- "round" is round-half-to-even (`np.rint`; C `nearbyint`; x86 `cvtps2dq`), the
  rounding of ONNX QuantizeLinear, except the integer-only shift requantization,
  which rounds half up (towards +inf) like integer NPUs.

Example (the numbers a u8 activation in [-1, 3] gets):

    >>> qp = choose_activation_params(-1.0, 3.0)        # scale 4/255, zero point 64
    >>> quantize(np.array([0.0, 3.0], np.float32), qp, "u8")
    array([ 64, 255], dtype=uint8)
"""

from __future__ import annotations

import math

import numpy as np

from qv2c.errors import CalibrationError
from qv2c.ir.types import DTYPES, QuantParams

#: integer range of each quantized dtype
QRANGE: dict[str, tuple[int, int]] = {
    "u8": (0, 255),
    "i8": (-128, 127),
    "i32": (-(2**31), 2**31 - 1),
}

#: symmetric weight range is [-WEIGHT_QMAX, WEIGHT_QMAX]; see `quantize_weights`
WEIGHT_QMAX = 127

#: a computed scale below this (an empty or denormal-width range) is replaced by 1.0:
#: any scale represents an all-zero tensor, and 1.0 keeps bias scales s_x * s_w and
#: requantization multipliers far from float32 underflow and overflow
MIN_SCALE = 2.0**-32

SCALE_KINDS = ("float", "power-of-2")
ACTIVATIONS = ("none", "relu", "relu6")
REQUANT_KINDS = ("float", "shift")


def qrange(dtype: str) -> tuple[int, int]:
    """(qmin, qmax) of a quantized dtype name ("u8", "i8", "i32")."""
    try:
        return QRANGE[dtype]
    except KeyError:
        raise ValueError(f"{dtype!r} is not a quantized dtype; expected one of {sorted(QRANGE)}") from None


# -- scales ----------------------------------------------------------------------
def is_power_of_two(scale) -> bool:
    """True when every element of `scale` is exactly 2**k for an integer k (k may be negative)."""
    values = np.atleast_1d(np.asarray(scale, dtype=np.float64)).ravel()
    return bool(all(v > 0 and math.isfinite(v) and math.frexp(v)[0] == 0.5 for v in values.tolist()))


def shift_of(scale: float) -> int:
    """The integer `shift` with `scale == 2.0 ** -shift`; ValueError when `scale` is no power of two.

    A multiplier 0.25 gives shift 2 (a right shift by two), 4.0 gives shift -2.
    """
    if not is_power_of_two(scale):
        raise ValueError(f"scale {scale!r} is not a power of two, so it has no shift")
    return 1 - math.frexp(float(scale))[1]


def _finish_scale(raw: float, scale_kind: str) -> float:
    """float32 scale for a raw (float64) scale: guard empty ranges, then round as `scale_kind` says.

    "float" rounds to the nearest float32; "power-of-2" rounds UP to 2**ceil(log2(raw)),
    so the quantized grid still spans the whole range.
    """
    if scale_kind not in SCALE_KINDS:
        raise ValueError(f"scale_kind must be one of {SCALE_KINDS}, got {scale_kind!r}")
    if not raw >= MIN_SCALE:  # also catches NaN
        return 1.0
    if scale_kind == "power-of-2":
        mantissa, exponent = math.frexp(raw)  # raw = mantissa * 2**exponent, 0.5 <= mantissa < 1
        return math.ldexp(1.0, exponent - 1 if mantissa == 0.5 else exponent)
    return float(np.float32(raw))


def choose_activation_params(lo: float, hi: float, dtype: str = "u8", scale_kind: str = "float") -> QuantParams:
    """Per-tensor activation parameters for a calibrated range [lo, hi].

    - The range is first widened to include 0, so real 0 (ReLU outputs, zero padding)
      is exactly representable: it quantizes to the zero point.
    - u8, asymmetric: scale = (hi - lo) / 255, zero point = round(-lo / scale) in [0, 255].
    - i8, symmetric: scale = max(|lo|, |hi|) / 127, zero point 0 (so -128 is only
      reached by saturation, and negation is exact).
    - scale_kind "power-of-2" rounds the scale up to a power of two (so the range still
      fits), "float" to the nearest float32.  Scales below `MIN_SCALE` (empty ranges)
      become 1.0.
    Every point of [lo, hi] then quantizes within half a step (scale / 2) of itself.
    """
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise CalibrationError(f"activation range [{lo}, {hi}] is not finite; check the calibration data")
    if lo > hi:
        raise CalibrationError(f"activation range [{lo}, {hi}] has lo > hi")
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if dtype == "u8":
        scale = _finish_scale((hi - lo) / 255.0, scale_kind)
        zero_point = int(np.clip(np.rint(-lo / scale), 0, 255))
        return QuantParams((scale,), (zero_point,))
    if dtype == "i8":
        scale = _finish_scale(max(-lo, hi) / 127.0, scale_kind)
        return QuantParams((scale,), (0,))
    raise ValueError(f"activation dtype must be 'u8' or 'i8', got {dtype!r}")


# -- weights and bias --------------------------------------------------------------
def quantize_weights(w: np.ndarray, granularity: str = "per-channel", axis: int = 0,
                     scale_kind: str = "float") -> tuple[np.ndarray, QuantParams]:
    """Symmetric int8 weights: scale = max|w| / 127 (per slice along `axis`, or per tensor), zero point 0.

    The grid is [-127, 127], not [-128, 127]: with scale = max|w| / 127 no real weight
    maps below -127 anyway, and keeping -128 out makes the grid symmetric (negating a
    weight is exact) and bounds every product |x * w| by 255 * 127, the convention of
    the TFLite int8 spec and of onnxruntime's symmetric weights.  An all-zero slice
    (a pruned channel) gets scale 1.0 rather than a tiny scale, so its bias scale
    s_x * s_w stays sensible.  Returns (int8 array, QuantParams with `axis` set for
    per-channel, None for per-tensor).
    """
    w = np.asarray(w, dtype=np.float32)
    if granularity == "per-channel":
        axis = axis % w.ndim
        amax = np.max(np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1), axis=1)
        scales = tuple(_finish_scale(float(a) / WEIGHT_QMAX, scale_kind) for a in amax.astype(np.float64))
        qp = QuantParams(scales, (0,) * len(scales), axis)
    elif granularity == "per-tensor":
        qp = QuantParams((_finish_scale(float(np.max(np.abs(w), initial=0.0)) / WEIGHT_QMAX, scale_kind),), (0,))
    else:
        raise ValueError(f"granularity must be 'per-channel' or 'per-tensor', got {granularity!r}")
    q = quantize(w, qp, "i8")
    return np.clip(q, -WEIGHT_QMAX, WEIGHT_QMAX).astype(np.int8), qp


def as_float32_scale(scale) -> np.ndarray:
    """Scales as the float32 numbers they denote, widened to float64 for exact products.

    `QuantParams` stores Python floats; the value a scale *means* is its float32
    rounding (that is what `quantize`, `dequantize` and ONNX use), so every formula
    below starts from it.
    """
    return np.asarray(scale, dtype=np.float32).astype(np.float64)


def bias_scales(input_scale: float, weight_scales) -> np.ndarray:
    """float64 bias scales s_x * s_w[c]; exact, since the product of two float32 numbers fits a float64."""
    return as_float32_scale(input_scale) * as_float32_scale(weight_scales).ravel()


def quantize_bias(b: np.ndarray, input_scale: float, weight_scales) -> np.ndarray:
    """int32 bias in accumulator units: round(b[c] / (s_x * s_w[c])), computed in float64.

    `weight_scales` has one entry per output channel (or one for per-tensor weights).
    Values beyond the int32 range saturate (only possible with absurdly small scales).
    """
    b = np.asarray(b, dtype=np.float64)
    q = np.rint(b / bias_scales(input_scale, weight_scales))
    lo, hi = QRANGE["i32"]
    return np.clip(q, lo, hi).astype(np.int32)


# -- quantize / dequantize -------------------------------------------------------
def quantize(x: np.ndarray, qp: QuantParams, dtype: str) -> np.ndarray:
    """ONNX QuantizeLinear: clip(round_half_even(x / scale) + zero_point, qmin, qmax).

    Computed in float32 exactly as onnxruntime does: IEEE float32 division (not a
    multiplication by 1/scale), `rint`, then the zero point added and the result
    saturated.  +-inf saturate; NaN inputs give an unspecified value (as in ONNX).
    Per-axis parameters broadcast along `qp.axis` of `x`.
    """
    qmin, qmax = qrange(dtype)
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.rint(x / qp.scale_array(x.ndim)) + qp.zero_point_array(x.ndim).astype(np.float32)
        return np.clip(q, qmin, qmax).astype(DTYPES[dtype])


def dequantize(q: np.ndarray, qp: QuantParams) -> np.ndarray:
    """ONNX DequantizeLinear: float32(int32(q) - zero_point) * float32(scale), one float32 multiply."""
    q = np.asarray(q)
    centred = q.astype(np.int32) - qp.zero_point_array(q.ndim)
    return centred.astype(np.float32) * qp.scale_array(q.ndim)


# -- requantization --------------------------------------------------------------
def requantize_multiplier(s_in, s_w, s_out, count=1) -> np.ndarray:
    """M = float32((s_in * s_w) / (s_out * count)), computed in float64, rounded once to float32.

    M maps an int32 accumulator (scale s_in * s_w) to the output grid (scale s_out);
    `count` is the divisor of an average pool (1 otherwise).  The scales are taken as
    float32 values; both products are exact in float64, so the only roundings are the
    float64 division and the final cast.  Inputs broadcast (s_w per channel gives M per
    channel, `count` per output position gives M per position).  ONNX Runtime computes
    the same quotient in float32 steps instead, so its M may differ by one float32 ulp.
    """
    num = as_float32_scale(s_in) * as_float32_scale(s_w)
    den = as_float32_scale(s_out) * np.asarray(count, dtype=np.float64)
    return np.asarray(num / den).astype(np.float32)


def requantize_float(acc: np.ndarray, multiplier, zero_point: int, lo: int, hi: int) -> np.ndarray:
    """y = clip(round_half_even(float32(acc) * M) + zero_point, lo, hi), as int32.

    Steps, all in float32: convert the integer accumulator to float32 (round to nearest
    even above 2**24), multiply by the float32 multiplier M (broadcast, e.g. per
    channel), round half to even; then add the zero point and clamp to [lo, hi].  A
    kernel may clamp first, `rint(min(max(t, lo - zp), hi - zp)) + zp`, which is equal
    because the bounds are integers (and avoids float -> int overflow).  No FMA: the
    product must be rounded to float32 before `rint`.
    """
    with np.errstate(over="ignore"):  # an infinite product saturates like any other
        t = np.asarray(acc).astype(np.float32) * np.asarray(multiplier, dtype=np.float32)
    t = np.clip(t, lo - zero_point, hi - zero_point)
    return np.rint(t).astype(np.int32) + np.int32(zero_point)


#: the shifts `requantize_shift` (and the int8 kernels' integer epilogue) can do
SHIFT_RANGE = (-31, 62)


def _check_shift_range(s: np.ndarray) -> None:
    if s.size and (s.min() < SHIFT_RANGE[0] or s.max() > SHIFT_RANGE[1]):
        raise ValueError(f"requantization shifts {s.min()}..{s.max()} lie outside [{SHIFT_RANGE[0]}, {SHIFT_RANGE[1]}]")


def requantize_shifts(multiplier) -> np.ndarray:
    """The int64 shifts s with multiplier == 2**-s (per channel); ValueError when a multiplier is no
    power of two or needs a shift outside SHIFT_RANGE."""
    s = np.array([shift_of(float(m)) for m in np.ravel(multiplier)], np.int64)
    _check_shift_range(s)
    return s


def requantize_shift(acc: np.ndarray, shift, zero_point: int, lo: int, hi: int) -> np.ndarray:
    """Integer-only requantization by a power-of-two multiplier M = 2**-shift, as int32.

    In int64 arithmetic (so the rounding term never overflows):
        shift > 0:  r = (acc + (1 << (shift - 1))) >> shift      (arithmetic shift)
        shift = 0:  r = acc
        shift < 0:  r = acc << -shift
    then y = clamp(r + zero_point, lo, hi).  `(acc + 2**(s-1)) >> s` is
    floor(acc / 2**s + 1/2): ties round half UP (towards +inf, so -2.5 -> -2), like the
    single-rounding requantization of CMSIS-NN; it differs from the float path's
    round-half-even only at exact .5 ties.  `shift` broadcasts (per channel) and must
    lie in [-31, 62].
    """
    s = np.asarray(shift, dtype=np.int64)
    _check_shift_range(s)
    right = np.maximum(s, 0)
    rounding = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    r = ((np.asarray(acc).astype(np.int64) + rounding) >> right) << np.maximum(-s, 0)
    return np.clip(r + zero_point, lo, hi).astype(np.int32)


def activation_bounds(act: str, qp: QuantParams, dtype: str) -> tuple[int, int]:
    """Integer clamp [lo, hi] that realises a fused activation on an output quantized with `qp`.

    "none" -> the dtype range; "relu" -> [quantize(0), qmax] = [zero point, qmax];
    "relu6" -> [quantize(0), quantize(6.0)].  Because quantization is monotonic,
    quantize(clip(v, 0, 6)) == clip(quantize(v), quantize(0), quantize(6)), so fusing
    the activation into the integer epilogue changes nothing.  `qp` must be per tensor.
    """
    qmin, qmax = qrange(dtype)
    if act == "none":
        return qmin, qmax
    if act not in ACTIVATIONS:
        raise ValueError(f"fused activation must be one of {ACTIVATIONS}, got {act!r}")
    lo = int(quantize(np.float32(0.0), qp, dtype))
    hi = qmax if act == "relu" else int(quantize(np.float32(6.0), qp, dtype))
    return lo, hi
