"""Build the activation rows ("A tile") a micro-kernel multiplies, from an NHWC input.

Row i of the tile is output pixel p = p0 + i (flat over N, OH, OW) and holds its whole
receptive field in the order of the packed weights, k = (kh * KW + kw) * ICg + ic:

    a[i * lda + k] = x[n, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw, g*ICg + ic]   (padding -> 0)

Because the input is NHWC, each (kh, kw) tap is a contiguous run of ICg channels, and
with dilation 1 and no groups the KW taps of one kernel row are one contiguous run of
KW*C values, so the copy is a few long vectorised memcpy-like loops per pixel rather
than K scalar gathers.  The tile is built per task (a few dozen pixels) so it stays in
L2 while every weight panel streams over it.

The int16 variant (`im2col_s16`) is the int8 path's widening step: it stores `x - zx`
as int16, so padding taps (and the odd-K pad column) are exactly 0 and the kernel's
int32 sums are sum((x - zx) * w) without any zero-point correction term.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _copy(src, dst):
    """dst[:] = src[:] for two 1-D views (indexing views by the loop counter keeps the loop vectorisable)."""
    for t in range(dst.size):
        dst[t] = src[t]


@njit(cache=True)
def _widen(src, z, dst):
    """dst[:] = int16(src[:]) - z: u8/i8 to zero-point-centred int16."""
    for t in range(dst.size):
        dst[t] = np.int16(src[t]) - z


@njit(cache=True)
def im2col_f32(x, h, w, c, g, icg, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, p0, nrows, a, lda):
    """Fill `nrows` fp32 rows of `a` (row stride `lda`) from flat NHWC `x`; see the module docstring."""
    ohw = oh * ow
    run = kw * icg
    for i in range(nrows):
        p = p0 + i
        n = p // ohw
        rem = p - n * ohw
        yo = rem // ow
        xo = rem - yo * ow
        ih0 = yo * sh - pt
        iw0 = xo * sw - pl
        for ky in range(kh):
            ih = ih0 + ky * dh
            dst = i * lda + ky * run
            if ih < 0 or ih >= h:
                a[dst:dst + run] = 0.0
                continue
            rowbase = (n * h + ih) * w * c + g * icg
            if dw == 1 and icg == c and iw0 >= 0 and iw0 + kw <= w:
                src = rowbase + iw0 * c
                _copy(x[src:src + run], a[dst:dst + run])
                continue
            for kx in range(kw):
                iw = iw0 + kx * dw
                d = dst + kx * icg
                if iw < 0 or iw >= w:
                    a[d:d + icg] = 0.0
                else:
                    src = rowbase + iw * c
                    _copy(x[src:src + icg], a[d:d + icg])


@njit(cache=True)
def im2col_s16(x, zx, h, w, c, g, icg, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, p0, nrows, a, lda):
    """Fill `nrows` int16 rows of `a` with `x - zx` (u8/i8 NHWC `x`); padding and columns k >= K are 0."""
    ohw = oh * ow
    run = kw * icg
    k = kh * run
    z = np.int16(zx)
    for i in range(nrows):
        p = p0 + i
        n = p // ohw
        rem = p - n * ohw
        yo = rem // ow
        xo = rem - yo * ow
        ih0 = yo * sh - pt
        iw0 = xo * sw - pl
        a[i * lda + k:(i + 1) * lda] = 0
        for ky in range(kh):
            ih = ih0 + ky * dh
            dst = i * lda + ky * run
            if ih < 0 or ih >= h:
                a[dst:dst + run] = 0
                continue
            rowbase = (n * h + ih) * w * c + g * icg
            if dw == 1 and icg == c and iw0 >= 0 and iw0 + kw <= w:
                src = rowbase + iw0 * c
                _widen(x[src:src + run], z, a[dst:dst + run])
                continue
            for kx in range(kw):
                iw = iw0 + kx * dw
                d = dst + kx * icg
                if iw < 0 or iw >= w:
                    a[d:d + icg] = 0
                else:
                    src = rowbase + iw * c
                    _widen(x[src:src + icg], z, a[d:d + icg])
