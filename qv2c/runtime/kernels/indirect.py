"""Input preparation for the micro-kernels: zero padding, int16 widening, pixel and tap offsets.

The micro-kernels (`microkernel.py`) read activations through offsets: output pixel p
reads `xp[pixoff[p] + tapoff[t] + k]` for kernel tap t = (kh, kw) and channel k.  That
needs an input in which every tap of every output pixel exists, so:

- `pad_nhwc` copies an NHWC input into a zero-bordered buffer (fp32 convs with padding);
- `pad_widen_s16` does the same for int8 while widening to int16 and subtracting the zero
  point, so padding holds exactly 0 = (zx - zx).  It also pads each group's channels to an
  even count, because the "pairs" int8 kernel consumes channel *pairs* (`packing.pack_conv_i8`
  pads the weights the same way).  Stride-1 1x1 convs need it too, just without the border.
- `pad_u8_quads` prepares the "quads" (`vpdpbusd`) int8 kernel's input: u8 (i8 shifted by 128),
  border = the zero point, channels per group padded to a multiple of 4.  A u8 input with no
  padding and a multiple of 4 channels is read in place, with no copy at all.

Then `tap_offsets` gives tapoff[t] = (kh*dh*Wp + kw*dw)*Cp and `pixel_offsets` gives
pixoff[p] = ((n*Hp + oh*sh)*Wp + ow*sw)*Cp + g*ICgp for a run of output pixels.

The kernel then reads `xp` in place ("indirect convolution"): no im2col copy at all.
(A gathered im2col row per pixel was tried for convs with few channels per tap, like a
first conv with C = 3, where the per-tap loop is short: it was no faster for fp32 and
1.5x slower for int8, so it was removed.)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _pad_row(x, pt, pl, xp, row, fill):
    """Row `row` (flat over N, Hp) of `pad_nhwc`."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    hp, wp = xp.shape[1], xp.shape[2]
    b = row // hp
    y = row - b * hp - pt
    dst = xp[b, row - b * hp].reshape(wp * c)
    if y < 0 or y >= h:
        dst[:] = fill
        return
    dst[:pl * c] = fill
    dst[(pl + w) * c:] = fill
    src = x[b, y].reshape(w * c)
    inner = dst[pl * c:(pl + w) * c]
    for i in range(w * c):
        inner[i] = src[i]


@njit(parallel=True, cache=True)
def pad_nhwc(x, pt, pl, xp, parallel, fill):
    """xp[n, pt + y, pl + x, :] = x[n, y, x, :]; the rest of `xp` (borders) = `fill` (0 for fp32, the
    zero point for int8), of x's dtype."""
    rows = xp.shape[0] * xp.shape[1]
    value = xp.dtype.type(fill)
    if parallel:
        for row in prange(rows):
            _pad_row(x, pt, pl, xp, np.int64(row), value)
    else:
        for row in range(rows):
            _pad_row(x, pt, pl, xp, row, value)


@njit(cache=True)
def _pad_widen_row(x, zx, pt, pl, groups, xp, row):
    """Row `row` (flat over N, Hp) of `pad_widen_s16`."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    hp, wp, cp = xp.shape[1], xp.shape[2], xp.shape[3]
    icg = c // groups
    icp = cp // groups
    z = np.int16(zx)
    b = row // hp
    y = row - b * hp - pt
    dst = xp[b, row - b * hp].reshape(wp * cp)
    if y < 0 or y >= h or icp != icg:
        dst[:] = 0
    if y < 0 or y >= h:
        return
    if icp == icg:
        dst[:pl * cp] = 0
        dst[(pl + w) * cp:] = 0
        src = x[b, y].reshape(w * c)
        inner = dst[pl * cp:(pl + w) * cp]
        for i in range(w * c):
            inner[i] = np.int16(src[i]) - z
    else:  # odd channels per group (a 3-channel stem): a zero pad channel after each group
        src = x[b, y].reshape(w * c)
        for g in range(groups):  # one long strided loop per channel, not a 3-step loop per pixel
            for i in range(icg):
                so = g * icg + i
                do = pl * cp + g * icp + i
                for xo in range(w):
                    dst[do + xo * cp] = np.int16(src[so + xo * c]) - z


@njit(parallel=True, cache=True)
def pad_widen_s16(x, zx, pt, pl, groups, xp, parallel):
    """xp[n, pt + y, pl + x, g*ICgp + i] = int16(x[n, y, x, g*ICg + i]) - zx; borders and pad channels 0."""
    rows = xp.shape[0] * xp.shape[1]
    if parallel:
        for row in prange(rows):
            _pad_widen_row(x, zx, pt, pl, groups, xp, np.int64(row))
    else:
        for row in range(rows):
            _pad_widen_row(x, zx, pt, pl, groups, xp, row)


@njit(cache=True)
def _pad_quads_row(x, shift, zu, pt, pl, groups, xp, row):
    """Row `row` (flat over N, Hp) of `pad_u8_quads`."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    hp, wp, cp = xp.shape[1], xp.shape[2], xp.shape[3]
    icg = c // groups
    icp = cp // groups
    b = row // hp
    y = row - b * hp - pt
    dst = xp[b, row - b * hp].reshape(wp * cp)
    border = np.uint8(zu)
    if y < 0 or y >= h:
        dst[:] = border
        return
    dst[:pl * cp] = border
    dst[(pl + w) * cp:] = border
    src = x[b, y].reshape(w * c)
    if icp == icg:
        inner = dst[pl * cp:(pl + w) * cp]
        for i in range(w * c):
            inner[i] = np.uint8((np.int32(src[i]) + shift) & 255)
        return
    if c == 3 and cp == 4:  # an RGB stem: one quad per pixel, written as one uint32
        _rgb_quads(src, shift, border, dst[pl * cp:(pl + w) * cp].view(np.uint32))
        return
    for xo in range(w):  # each group's channels padded to a multiple of 4 (zero weights there)
        d0 = (pl + xo) * cp
        s0 = xo * c
        for g in range(groups):
            for i in range(icg):
                dst[d0 + g * icp + i] = np.uint8((np.int32(src[s0 + g * icg + i]) + shift) & 255)
            for i in range(icg, icp):
                dst[d0 + g * icp + i] = border


@njit(cache=True)
def _rgb_quads(src, shift, border, out):
    """out[p] = the quad (u8(src[3p] + shift), u8(src[3p+1] + shift), u8(src[3p+2] + shift), border) as a
    little-endian uint32, where the byte-by-byte loop of `_pad_quads_row` is many times slower
    (benchmarks/hot_spots.py)."""
    sh, m = np.uint32(shift), np.uint32(255)
    top = np.uint32(border) << np.uint32(24)
    for p in range(out.size):
        out[p] = (((np.uint32(src[3 * p]) + sh) & m) | (((np.uint32(src[3 * p + 1]) + sh) & m) << np.uint32(8))
                  | (((np.uint32(src[3 * p + 2]) + sh) & m) << np.uint32(16)) | top)


@njit(parallel=True, cache=True)
def pad_u8_quads(x, shift, zu, pt, pl, groups, xp, parallel):
    """The u8 input of the "quads" (`vpdpbusd`) int8 kernels:
    xp[n, pt + y, pl + x, g*ICgq + i] = u8(x[n, y, x, g*ICg + i] + shift), the border = zu (the input
    zero point on the u8 grid) and each group's channels padded to a multiple of 4 with zu.

    `shift` is 0 for u8 input and 128 for i8 (i8 + 128 is the same grid on u8, zero point zx + 128).
    The border holds the zero point, so padding taps contribute (zu - zu) * w = 0 once the kernel's
    per-channel correction (bias - zu * sum_k w) is applied.
    """
    rows = xp.shape[0] * xp.shape[1]
    if parallel:
        for row in prange(rows):
            _pad_quads_row(x, shift, zu, pt, pl, groups, xp, np.int64(row))
    else:
        for row in range(rows):
            _pad_quads_row(x, shift, zu, pt, pl, groups, xp, row)


@njit(cache=True)
def tap_offsets(kh, kw, dh, dw, wp, cp):
    """tapoff[kh_i * kw + kw_i] = (kh_i*dh*Wp + kw_i*dw) * Cp: offset of each kernel tap in the padded input."""
    t = np.empty(kh * kw, np.int64)
    for i in range(kh):
        for j in range(kw):
            t[i * kw + j] = (i * dh * wp + j * dw) * cp
    return t


@njit(cache=True)
def pixel_offsets(p0, count, oh, ow, sh, sw, hp, wp, cp, chan0, out):
    """out[i] = offset in the padded input of the receptive field of output pixel p0 + i (i < count),
    then repeated for the rest of `out` (rows a micro-kernel computes but does not store).

    One division locates p0; then the output column, row and image advance by increments: two
    64-bit divisions per pixel cost more than the micro-kernel's work on a short reduction
    (a 1x1 conv over 16 channels)."""
    if count <= 0:
        out[:] = 0
        return
    n = p0 // (oh * ow)
    rem = p0 - n * (oh * ow)
    yo = rem // ow
    xo = rem - yo * ow
    col_step, row_start = sw * cp, ((n * hp + yo * sh) * wp) * cp + chan0
    last = row_start + xo * col_step
    for i in range(out.size):
        if i < count:
            out[i] = last
            xo += 1
            last += col_step
            if xo == ow:
                xo = 0
                yo += 1
                if yo == oh:
                    yo = 0
                    n += 1
                row_start = ((n * hp + yo * sh) * wp) * cp + chan0
                last = row_start
        else:
            out[i] = out[count - 1]

