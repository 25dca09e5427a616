"""Standalone quantization kernels: quantize, dequantize, requantize, qadd (elementwise, any layout).

They run where a quantize/dequantize is not absorbed by a conv/GEMM epilogue (the
"per-op" and "boundary" placements, a model input, a concat operand, a residual add
between two int8 tensors...).  Each is bit-exact with `qv2c/ir/quant_math.py`:

    quantize:    q = clip(rint(f32(x) / s) + zp, qlo, qhi)              (IEEE division, not * 1/s)
    dequantize:  y = f32(int32(q) - zp) * s
    dequantize_epilogue: y = min(max(f32(int32(q) - zp) * s (+ r), lo), hi)   (dequantize, add, relu/clip)
    requantize:  y = rint(clamp(f32(int32(x) - zx) * M, qlo - zy, qhi - zy)) + zy
    qadd:        y = clip(rint((f32(a - za) * sa + f32(b - zb) * sb) / sy) + zy, lo, hi)

All scalars are cast to float32 before use (a float64 argument would promote the
arithmetic), and these functions are compiled without fastmath, so no FMA contraction
merges a multiply and an add that the reference rounds separately.  Per-tensor kernels
work on flat (1-D) views; the `_axis` variants take a [outer, C, inner] view with one
scale and zero point per C.  `parallel` splits the flat range into chunks.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: elements per parallel task.  Each task's helper loops over slices of its arrays (x[start:stop]), not over
#: range(start, stop) of the whole arrays: called from a prange body, the latter compiled to a scalar loop
#: (Numba 0.68), several times slower than the serial call; the former vectorises
#: (benchmarks/hot_spots.py, results/hot_spots.md).
CHUNK = 1 << 15


# -- one element (float32 parameters, as the flat kernels below prepare them; also the steps of a
#    generated elementwise chain, `codegen/elementwise.py`) -----------------------------------------
@njit(cache=True, inline="always")
def quantize_value(v, s, z, qlo, qhi):
    """The level of fp32 `v` as an exact float32 integer in [qlo, qhi]."""
    return min(max(np.rint(v / s) + z, qlo), qhi)


@njit(cache=True, inline="always")
def dequantize_value(q, s, z):
    """fp32 value of level `q` (z an int32)."""
    return np.float32(np.int32(q) - z) * s


@njit(cache=True, inline="always")
def requantize_value(x, zx, m, tlo, thi, zf):
    """The level in the new grid of level `x` (zx int32; tlo, thi the bounds minus zf) as an exact float32."""
    return np.rint(min(max(np.float32(np.int32(x) - zx) * m, tlo), thi)) + zf


@njit(cache=True)
def _quantize_range(x, out, s, z, qlo, qhi, start, stop):
    xs, outs = x[start:stop], out[start:stop]
    for i in range(xs.size):
        outs[i] = quantize_value(xs[i], s, z, qlo, qhi)


@njit(parallel=True, cache=True)
def quantize_flat(x, out, scale, zp, qlo, qhi, parallel):
    """u8/i8 out = QuantizeLinear(x) with one scale and zero point (flat fp32 x)."""
    s, z, lo, hi = np.float32(scale), np.float32(zp), np.float32(qlo), np.float32(qhi)
    n = x.size
    if parallel:
        for t in prange((n + CHUNK - 1) // CHUNK):
            _quantize_range(x, out, s, z, lo, hi, t * CHUNK, min(n, (t + 1) * CHUNK))
    else:
        _quantize_range(x, out, s, z, lo, hi, 0, n)


@njit(cache=True)
def quantize_axis(x, out, scales, zps, qlo, qhi):
    """Per-axis QuantizeLinear on [outer, C, inner] views: scales f32[C], zps int32[C]."""
    lo, hi = np.float32(qlo), np.float32(qhi)
    for o in range(x.shape[0]):
        for ch in range(x.shape[1]):
            s = scales[ch]
            z = np.float32(zps[ch])
            for i in range(x.shape[2]):
                out[o, ch, i] = min(max(np.rint(x[o, ch, i] / s) + z, lo), hi)


@njit(cache=True)
def _dequantize_range(q, out, s, z, start, stop):
    qs, outs = q[start:stop], out[start:stop]
    for i in range(qs.size):
        outs[i] = dequantize_value(qs[i], s, z)


@njit(parallel=True, cache=True)
def dequantize_flat(q, out, scale, zp, parallel):
    """fp32 out = DequantizeLinear(q) with one scale and zero point (flat views)."""
    s, z = np.float32(scale), np.int32(zp)
    n = q.size
    if parallel:
        for t in prange((n + CHUNK - 1) // CHUNK):
            _dequantize_range(q, out, s, z, t * CHUNK, min(n, (t + 1) * CHUNK))
    else:
        _dequantize_range(q, out, s, z, 0, n)


@njit(cache=True)
def dequantize_axis(q, out, scales, zps):
    """Per-axis DequantizeLinear on [outer, C, inner] views."""
    for o in range(q.shape[0]):
        for ch in range(q.shape[1]):
            s = scales[ch]
            z = np.int32(zps[ch])
            for i in range(q.shape[2]):
                out[o, ch, i] = np.float32(np.int32(q[o, ch, i]) - z) * s


@njit(cache=True)
def _dequantize_epilogue_range(q, res, out, s, z, has_res, lo, hi, start, stop):
    qs, ress, outs = q[start:stop], res[start:stop], out[start:stop]
    for i in range(qs.size):
        v = np.float32(np.int32(qs[i]) - z) * s
        if has_res:
            v = v + ress[i]
        outs[i] = min(max(v, lo), hi)


@njit(parallel=True, cache=True)
def dequantize_epilogue_flat(q, res, out, scale, zp, has_res, lo, hi, parallel):
    """fp32 out = clamp(dequantize(q) (+ res), lo, hi): the tail of an int8 conv/GEMM group that ends
    in `qv.dequantize [qv.add] [qv.relu | qv.clip]`, each step rounded as the reference rounds it."""
    s, z, lo32, hi32 = np.float32(scale), np.int32(zp), np.float32(lo), np.float32(hi)
    n = q.size
    if parallel:
        for t in prange((n + CHUNK - 1) // CHUNK):
            _dequantize_epilogue_range(q, res, out, s, z, has_res, lo32, hi32, t * CHUNK, min(n, (t + 1) * CHUNK))
    else:
        _dequantize_epilogue_range(q, res, out, s, z, has_res, lo32, hi32, 0, n)


@njit(cache=True)
def _requantize_range(x, out, zx, m, tlo, thi, zf, start, stop):
    xs, outs = x[start:stop], out[start:stop]
    for i in range(xs.size):
        outs[i] = requantize_value(xs[i], zx, m, tlo, thi, zf)


@njit(parallel=True, cache=True)
def requantize_flat(x, out, zx, mult, zy, qlo, qhi, parallel):
    """Integer to integer with a new scale: requantize_float(x - zx, M) into [qlo, qhi]."""
    z = np.int32(zx)
    m = np.float32(mult)
    tlo, thi, zf = np.float32(qlo - zy), np.float32(qhi - zy), np.float32(zy)
    n = x.size
    if parallel:
        for t in prange((n + CHUNK - 1) // CHUNK):
            _requantize_range(x, out, z, m, tlo, thi, zf, t * CHUNK, min(n, (t + 1) * CHUNK))
    else:
        _requantize_range(x, out, z, m, tlo, thi, zf, 0, n)


@njit(cache=True)
def _qadd_range(a, b, out, za, sa, zb, sb, sy, zy, lo, hi, start, stop):
    as_, bs, outs = a[start:stop], b[start:stop], out[start:stop]
    for i in range(outs.size):
        s = np.float32(np.int32(as_[i]) - za) * sa + np.float32(np.int32(bs[i]) - zb) * sb
        outs[i] = min(max(np.rint(s / sy) + zy, lo), hi)


@njit(parallel=True, cache=True)
def qadd_flat(a, b, out, za, sa, zb, sb, sy, zy, lo, hi, parallel):
    """`qv.qadd` of two same-shape int8 tensors: quantize(dequantize(a) + dequantize(b)), clamped to [lo, hi]."""
    za32, zb32 = np.int32(za), np.int32(zb)
    sa32, sb32, sy32, zy32 = np.float32(sa), np.float32(sb), np.float32(sy), np.float32(zy)
    lo32, hi32 = np.float32(lo), np.float32(hi)
    n = out.size
    if parallel:
        for t in prange((n + CHUNK - 1) // CHUNK):
            _qadd_range(a, b, out, za32, sa32, zb32, sb32, sy32, zy32, lo32, hi32, t * CHUNK, min(n, (t + 1) * CHUNK))
    else:
        _qadd_range(a, b, out, za32, sa32, zb32, sb32, sy32, zy32, lo32, hi32, 0, n)
