"""Pooling kernels on NHWC activations: max, average, global average; fp32 and int8.

Each output pixel is a contiguous run of C channels, so every loop below runs over
channels innermost (vectorised by LLVM).  The arithmetic is the reference's
(`qv2c/ir/reference/pooling.py`, `quantized.py`), step for step:

- max pool: the max over the window taps inside the input, `lowest` (the dtype's lowest
  finite value) for a window with none; padding never wins, so skipping it is exact,
  and int8 passes through unchanged.  (A NaN input is not propagated as np.maximum
  would: CNN activations hold none.)
- fp32 average pool: sum the in-image taps in window order (the reference adds padding
  zeros in between, which changes no bit), divide by the counted window size
  `counts[oy, ox]` (float32, computed at compile time with `window_counts`).
- int8 average pool: int32 sum of (x - zx) over the in-image taps, then
  requantize_float with the per-position multiplier `mult[oy, ox]`.
- global average pool: fp32 sum over pixels divided by H*W (the reference uses
  NumPy's pairwise mean: equal within float tolerance); int8: int32 sum of (x - zx),
  requantized by one multiplier.

Scalars are cast to float32 first: a float64 argument would silently promote the
arithmetic and round differently from the reference.  `parallel` (chosen by the code
generator from the layer size) picks a prange over output rows or a serial loop.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from qv2c.runtime.kernels.depthwise import _tap_range


@njit(cache=True)
def _taps(o, stride, pad, dil, k, size):
    """(first input coordinate, number of taps) of the window of output position `o` inside [0, size)."""
    k0, k1 = _tap_range(o, stride, pad, dil, k, size)
    return o * stride - pad + k0 * dil, k1 - k0


@njit(cache=True)
def _max2(dst, a, b):
    """dst = max(a, b) elementwise.  Callers never pass dst aliasing a or b: LLVM then emits vmaxps; on
    `dst = max(dst, b)` it turns the select into a conditional (masked) store, ~10x slower on fp32."""
    for i in range(dst.size):
        x = a[i]
        y = b[i]
        dst[i] = x if x > y else y


@njit(cache=True)
def _max_rows_separable(x, out, r0, r1, kh, kw, sh, sw, pt, pl, dh, dw, low, ta, tb, pa, pb):
    """Output rows [r0, r1) (flat over N, OH): the max of the window's input rows (long contiguous
    loops over W*C), then of its columns; scratch ta/tb [W*C], pa/pb [C] ping-pong between steps."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    oh, ow = out.shape[1], out.shape[2]
    for row in range(r0, r1):
        b = row // oh
        y = row - b * oh
        iy0, ny = _taps(y, sh, pt, dh, kh, h)
        if ny == 0:
            out[b, y, :, :] = low
            continue
        cur = x[b, iy0].reshape(w * c)
        for k in range(1, ny):
            nxt = ta if k % 2 == 1 else tb
            _max2(nxt, cur, x[b, iy0 + k * dh].reshape(w * c))
            cur = nxt
        for xo in range(ow):
            o = out[b, y, xo]
            ix0, nx = _taps(xo, sw, pl, dw, kw, w)
            if nx == 0:
                o[:] = low
                continue
            src = cur[ix0 * c:(ix0 + 1) * c]
            if nx == 1:
                o[:] = src
            for k in range(1, nx):
                left = nx - 1 - k  # steps after this one: the last writes `o`
                tgt = o if left == 0 else (pa if left % 2 == 1 else pb)
                ix = ix0 + k * dw
                _max2(tgt, src, cur[ix * c:(ix + 1) * c])
                src = tgt


@njit(cache=True)
def _max_rows_direct(x, out, r0, r1, kh, kw, sh, sw, pt, pl, dh, dw, low):
    """Output rows [r0, r1): each output pixel's channels accumulate the max over the window taps
    (integer max vectorises in place, so int8 needs no scratch)."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    oh, ow = out.shape[1], out.shape[2]
    for row in range(r0, r1):
        b = row // oh
        y = row - b * oh
        for xo in range(ow):
            o = out[b, y, xo]
            o[:] = low
            for ky in range(kh):
                iy = y * sh - pt + ky * dh
                if iy < 0 or iy >= h:
                    continue
                for kx in range(kw):
                    ix = xo * sw - pl + kx * dw
                    if ix < 0 or ix >= w:
                        continue
                    src = x[b, iy, ix]
                    for ch in range(c):
                        o[ch] = max(o[ch], src[ch])


@njit(parallel=True, cache=True)
def maxpool_nhwc(x, out, kh, kw, sh, sw, pt, pl, dh, dw, lowest, separable, parallel):
    """out[n, oy, ox, c] = max over the window of x (NHWC, any dtype); `lowest` fills empty windows.

    `separable` (for fp32) takes the max over window rows, then columns, in contiguous runs;
    otherwise each output pixel accumulates in place (fine for integers)."""
    rows = out.shape[0] * out.shape[1]
    low = out.dtype.type(lowest)
    if parallel:
        tasks = min(rows, 16)
        for t in prange(tasks):
            _max_rows(x, out, t * rows // tasks, (t + 1) * rows // tasks, kh, kw, sh, sw, pt, pl, dh, dw, low,
                      separable)
    else:
        _max_rows(x, out, 0, rows, kh, kw, sh, sw, pt, pl, dh, dw, low, separable)


@njit(cache=True)
def _max_rows(x, out, r0, r1, kh, kw, sh, sw, pt, pl, dh, dw, low, separable):
    if separable:
        wc, c = x.shape[2] * x.shape[3], x.shape[3]
        _max_rows_separable(x, out, r0, r1, kh, kw, sh, sw, pt, pl, dh, dw, low, np.empty(wc, x.dtype),
                            np.empty(wc, x.dtype), np.empty(c, x.dtype), np.empty(c, x.dtype))
    else:
        _max_rows_direct(x, out, r0, r1, kh, kw, sh, sw, pt, pl, dh, dw, low)


@njit(cache=True)
def _window_sum(x, b, y, xo, kh, kw, sh, sw, pt, pl, acc, z):
    """acc[:] = sum over the in-bounds taps of window (y, xo) of x[b, iy, ix, :] - z (padding adds nothing).
    fp32: acc float32, z = 0.0; int8: acc int32, z the input's zero point (exact)."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    acc[:] = 0
    for ky in range(kh):
        iy = y * sh - pt + ky
        if iy < 0 or iy >= h:
            continue
        for kx in range(kw):
            ix = xo * sw - pl + kx
            if ix < 0 or ix >= w:
                continue
            src = x[b, iy, ix]
            for ch in range(c):
                acc[ch] += src[ch] - z


@njit(cache=True)
def _avg_row(x, out, row, kh, kw, sh, sw, pt, pl, counts):
    c = x.shape[3]
    oh, ow = out.shape[1], out.shape[2]
    b = row // oh
    y = row - b * oh
    for xo in range(ow):
        o = out[b, y, xo]
        _window_sum(x, b, y, xo, kh, kw, sh, sw, pt, pl, o, np.float32(0.0))
        n = counts[y, xo]
        for ch in range(c):
            o[ch] = o[ch] / n


@njit(parallel=True, cache=True)
def avgpool_nhwc(x, out, kh, kw, sh, sw, pt, pl, counts, parallel):
    """fp32 average pool: window sum / counts[oy, ox] (float32 [OH, OW])."""
    rows = out.shape[0] * out.shape[1]
    if parallel:
        for row in prange(rows):
            _avg_row(x, out, np.int64(row), kh, kw, sh, sw, pt, pl, counts)
    else:
        for row in range(rows):
            _avg_row(x, out, row, kh, kw, sh, sw, pt, pl, counts)


@njit(cache=True)
def _qavg_row(x, out, row, zx, kh, kw, sh, sw, pt, pl, mult, zy, qlo, qhi, acc):
    c = x.shape[3]
    oh, ow = out.shape[1], out.shape[2]
    b = row // oh
    y = row - b * oh
    z = np.int32(zx)
    tlo = np.float32(qlo - zy)
    thi = np.float32(qhi - zy)
    zf = np.float32(zy)
    for xo in range(ow):
        _window_sum(x, b, y, xo, kh, kw, sh, sw, pt, pl, acc, z)
        m = mult[y, xo]
        o = out[b, y, xo]
        for ch in range(c):
            t = np.float32(acc[ch]) * m
            o[ch] = np.rint(min(max(t, tlo), thi)) + zf


@njit(parallel=True, cache=True)
def qavgpool_nhwc(x, out, zx, kh, kw, sh, sw, pt, pl, mult, zy, qlo, qhi, parallel):
    """int8 average pool: requantize_float(sum (x - zx), mult[oy, ox]) into [qlo, qhi] (u8/i8 NHWC)."""
    rows = out.shape[0] * out.shape[1]
    c = x.shape[3]
    if parallel:
        for row in prange(rows):
            acc = np.empty(c, np.int32)
            _qavg_row(x, out, np.int64(row), zx, kh, kw, sh, sw, pt, pl, mult, zy, qlo, qhi, acc)
    else:
        acc = np.empty(c, np.int32)
        for row in range(rows):
            _qavg_row(x, out, row, zx, kh, kw, sh, sw, pt, pl, mult, zy, qlo, qhi, acc)


@njit(cache=True)
def global_avgpool_nhwc(x, out):
    """fp32 [N, H, W, C] -> [N, 1, 1, C]: mean over the pixels (float32 sum, one division)."""
    n, h, w, c = x.shape
    count = np.float32(h * w)
    for b in range(n):
        o = out[b, 0, 0]
        o[:] = np.float32(0.0)
        for y in range(h):
            for xo in range(w):
                src = x[b, y, xo]
                for ch in range(c):
                    o[ch] += src[ch]
        for ch in range(c):
            o[ch] = o[ch] / count


@njit(cache=True)
def qglobal_avgpool_nhwc(x, out, zx, mult, zy, qlo, qhi):
    """int8 [N, H, W, C] -> [N, 1, 1, C]: requantize_float(sum (x - zx), mult) into [qlo, qhi]."""
    n, h, w, c = x.shape
    z = np.int32(zx)
    m = np.float32(mult)
    tlo = np.float32(qlo - zy)
    thi = np.float32(qhi - zy)
    zf = np.float32(zy)
    acc = np.empty(c, np.int32)
    for b in range(n):
        acc[:] = 0
        for y in range(h):
            for xo in range(w):
                src = x[b, y, xo]
                for ch in range(c):
                    acc[ch] += np.int32(src[ch]) - z
        o = out[b, 0, 0]
        for ch in range(c):
            t = np.float32(acc[ch]) * m
            o[ch] = np.rint(min(max(t, tlo), thi)) + zf
