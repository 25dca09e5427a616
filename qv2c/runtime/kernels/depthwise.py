"""Depthwise convolution (groups == channels), fp32 and int8, NHWC, with fused epilogues.

A depthwise conv has no reduction over channels, so the GEMM micro-kernel does not
apply; every channel is an independent vector lane instead.  With NHWC activations and
weights packed as [KH, KW, C] (`packing.pack_depthwise_*`), one input pixel, one weight
tap and one output pixel are each a contiguous run of channels.

Loop nest (parallel over output rows):

    for (n, oh) in prange(N * OH):
        if every tap of this output row is inside the image:
            for each 32-channel block (AVX-512), then 16-, then one 8-channel block:   # microkernel.DW_KERNELS
                for 4 output pixels of the interior columns at a time:
                    acc[4 px, 32 ch] = sum_taps x[...] * w[tap]          # in registers
                    out = epilogue(acc)                                  # fused, as for convs
        channels left over (C % 8) go through a per-pixel NumPy-level path
        (`_pixel_f32` / `_pixel_i8` + `epilogue.py`)

A padded conv first copies its input with the padding made explicit (`_padded_input`: zeros for
fp32, the zero point for int8), so every output pixel is an interior one: the per-pixel path is
several times slower than the register kernel, and at 8x8 and below most pixels touch a border.

The register kernel loads each weight vector once per 4 pixels and keeps the 4 x 32 (AVX-512) or
4 x 16 accumulators in registers over all taps, so each output is stored once; the border path
skips taps outside the image (they would add 0 for fp32 and (zx - zx) * w = 0 for int8).

int8: acc = sum (x - zx) * w + bias, exact in int32.  The register kernel multiplies raw
u8/i8 x by int16 weights in int32 lanes (no per-tap zero-point subtraction) and gets
bias - zx * sum_t w[t] as its bias, which is the same integer because every tap of an
interior pixel is inside the image; the border path subtracts zx per tap and skips
outside taps.  Then requantize / requantize + residual `qv.qadd` / dequantize exactly as
`conv_i8.py`.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit, prange
from numba.extending import overload

from qv2c.runtime.kernels.convplan import padded_extent
from qv2c.runtime.kernels.epilogue_kind import (
    dequant_params,
    dw_kernel,
    f32_params,
    f32_quant_params,
    requant_add_params,
    requant_params,
    store_block,
)
from qv2c.runtime.kernels.indirect import pad_nhwc, tap_offsets
from qv2c.runtime.kernels.target import spec_of_marker_type
from qv2c.runtime.kernels.tiling import pad_in_parallel, run_parallel


@njit(cache=True)
def _tap_range(o, stride, pad, dil, k, size):
    """[k0, k1): the kernel taps whose input coordinate o*stride - pad + t*dil lies inside [0, size)."""
    base = o * stride - pad
    k0 = 0
    while k0 < k and base + k0 * dil < 0:
        k0 += 1
    k1 = k
    while k1 > k0 and base + (k1 - 1) * dil >= size:
        k1 -= 1
    return k0, k1


@njit(cache=True)
def _interior_columns(ow, sw, pl, kw, dw, w):
    """[xa, xb): output columns whose taps all lie inside the input row."""
    xa = 0
    while xa < ow and xa * sw - pl < 0:
        xa += 1
    xb = ow
    while xb > xa and (xb - 1) * sw - pl + (kw - 1) * dw > w - 1:
        xb -= 1
    return xa, xb


@njit(cache=True, fastmath={"contract"})
def _fma_row(acc, x, w):
    """acc += x * w over a run of channels (1-D views indexed by the loop counter: vectorises)."""
    for ch in range(acc.size):
        acc[ch] += x[ch] * w[ch]


@njit(cache=True)
def _mac_row_i8(acc, x, z, w):
    """acc += (x - z) * w in int32 over a run of channels."""
    for ch in range(acc.size):
        acc[ch] += (np.int32(x[ch]) - z) * np.int32(w[ch])


@njit(cache=True)
def _pixel_f32(xf, wf, acc, b, y, xo, h, wd, c, kh, kw, sh, sw, pt, pl, dh, dw, ca, cb):
    """acc[ca:cb] = depthwise sum of output pixel (b, y, xo) over in-image taps, channels [ca, cb)."""
    a = acc[ca:cb]
    a[:] = 0
    ky0, ky1 = _tap_range(y, sh, pt, dh, kh, h)
    kx0, kx1 = _tap_range(xo, sw, pl, dw, kw, wd)
    for ky in range(ky0, ky1):
        ih = y * sh - pt + ky * dh
        for kx in range(kx0, kx1):
            src = ((b * h + ih) * wd + xo * sw - pl + kx * dw) * c
            wo = (ky * kw + kx) * c
            _fma_row(a, xf[src + ca:src + cb], wf[wo + ca:wo + cb])


@njit(cache=True)
def _pixel_i8(xf, z, wf, acc, b, y, xo, h, wd, c, kh, kw, sh, sw, pt, pl, dh, dw, ca, cb):
    """int8 twin of `_pixel_f32`: acc[ca:cb] = sum (x - z) * w over in-image taps."""
    a = acc[ca:cb]
    a[:] = 0
    ky0, ky1 = _tap_range(y, sh, pt, dh, kh, h)
    kx0, kx1 = _tap_range(xo, sw, pl, dw, kw, wd)
    for ky in range(ky0, ky1):
        ih = y * sh - pt + ky * dh
        for kx in range(kx0, kx1):
            src = ((b * h + ih) * wd + xo * sw - pl + kx * dw) * c
            wo = (ky * kw + kx) * c
            _mac_row_i8(a, xf[src + ca:src + cb], z, wf[wo + ca:wo + cb])


@njit(cache=True)
def _padded_input(x, out, kh, kw, sh, sw, pt, pl, dh, dw, fill, parallel):
    """x with its padding written out (border = `fill`, of x's dtype), or x itself when every tap of
    every output pixel lies inside it; the caller then runs the conv with no padding."""
    n, h, wd, c = x.shape
    hp = padded_extent(h, out.shape[1], sh, pt, kh, dh)
    wp = padded_extent(wd, out.shape[2], sw, pl, kw, dw)
    if hp == h and wp == wd and pt == 0 and pl == 0:
        return x
    xp = np.empty((n, hp, wp, c), x.dtype)
    pad_nhwc(x, pt, pl, xp, pad_in_parallel(parallel, xp.size), fill)
    return xp


DwPlan = namedtuple("DwPlan", "h wd c oh ow kh kw sh sw pt pl dh dw xa xb c32 c16 c8")


def dw_wide(tgt):
    """Whether target marker `tgt` runs 32-channel depthwise blocks (a compile-time constant)."""
    raise NotImplementedError("compiled by Numba only")


@overload(dw_wide, inline="always")
def _dw_wide(tgt):
    wide = spec_of_marker_type(tgt).lanes >= 16  # 32 vector registers: 4 pixels x 2 zmm of accumulators
    return lambda tgt: wide


@njit(cache=True)
def _check_args(x, w, out, bias, res, has_res):
    """Raise ValueError unless the arrays fit together (a mismatch would read or write out of bounds)."""
    c = x.shape[3]
    if w.shape[2] != c or out.shape[3] != c or out.shape[0] != x.shape[0] or bias.size < c:
        raise ValueError("depthwise kernel: input, packed weight, output and bias channels differ")
    if has_res and res.size != out.size:
        raise ValueError("depthwise kernel: residual must have the output's shape")


@njit(cache=True)
def _dw_plan(x, out, kh, kw, sh, sw, pt, pl, dh, dw, wide):
    """Fields of the `DwPlan` (a tuple; see `convplan.make_plan` for why callers build the namedtuple):
    channels [0, c32) run in 32-channel blocks (only if `wide`), [c32, c16) in 16s, [c16, c8) in one 8."""
    h, wd, c = x.shape[1], x.shape[2], x.shape[3]
    oh, ow = out.shape[1], out.shape[2]
    xa, xb = _interior_columns(ow, sw, pl, kw, dw, wd)
    c32 = c // 32 * 32 if wide else 0
    c16 = c32 + (c - c32) // 16 * 16
    return (h, wd, c, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw, xa, xb, c32, c16, c16 + 8 if c - c16 >= 8 else c16)


@njit(cache=True)
def _row_f32(row, q, ep, tgt, xf, tapoff, wf, bias, resf, outf):
    """Output row `row` (flat over N, OH) of `depthwise_f32_core`."""
    b = row // q.oh
    y = row - b * q.oh
    c = q.c
    iy0 = y * q.sh - q.pt
    fast = iy0 >= 0 and iy0 + (q.kh - 1) * q.dh <= q.h - 1 and q.xb > q.xa
    if fast:
        x0 = ((b * q.h + iy0) * q.wd + q.xa * q.sw - q.pl) * c
        o0 = (row * q.ow + q.xa) * c
        npx, ntaps, xstep = q.xb - q.xa, q.kh * q.kw, q.sw * c
        if dw_wide(tgt):
            for c0 in range(0, q.c32, 32):
                dw_kernel(ep, 4, npx, xf, x0 + c0, xstep, tapoff, ntaps, wf, c0, c, outf, o0 + c0, c, bias, bias,
                          bias, resf, c0)
        for c0 in range(q.c32, q.c16, 16):
            dw_kernel(ep, 2, npx, xf, x0 + c0, xstep, tapoff, ntaps, wf, c0, c, outf, o0 + c0, c, bias, bias,
                      bias, resf, c0)
        if q.c8 > q.c16:
            dw_kernel(ep, 1, npx, xf, x0 + q.c16, xstep, tapoff, ntaps, wf, q.c16, c, outf, o0 + q.c16, c, bias,
                      bias, bias, resf, q.c16)
    acc = np.empty(c, np.float32)
    for xo in range(q.ow):
        ca = q.c8 if fast and q.xa <= xo < q.xb else 0
        if ca == c:
            continue
        _pixel_f32(xf, wf, acc, b, y, xo, q.h, q.wd, c, q.kh, q.kw, q.sh, q.sw, q.pt, q.pl, q.dh, q.dw, ca, c)
        store_block(ep, acc[ca:], c, 1, c - ca, outf, row * q.ow + xo, c, ca, bias, bias, bias, resf)


@njit(parallel=True, cache=True)
def depthwise_f32_core(x, w, bias, res, out, sh, sw, pt, pl, dh, dw, ep, tgt):
    """x f32[N,H,W,C]; w f32[KH,KW,C]; out f32 (`ep` an `F32Act`) or u8/i8 (`F32Quant`) [N,OH,OW,C];
    `tgt` the target marker (`target.TargetSpec.marker`)."""
    _check_args(x, w, out, bias, res, ep.has_res)
    kh, kw = w.shape[0], w.shape[1]
    parallel = run_parallel(2 * out.size * kh * kw)
    x = _padded_input(x, out, kh, kw, sh, sw, pt, pl, dh, dw, 0.0, parallel)
    q = DwPlan(*_dw_plan(x, out, kh, kw, sh, sw, 0, 0, dh, dw, dw_wide(tgt)))
    xf = x.reshape(x.size)
    wf = w.reshape(w.size)
    outf = out.reshape(out.size)
    resf = res.reshape(res.size)
    tapoff = tap_offsets(kh, kw, dh, dw, q.wd, q.c)
    rows = x.shape[0] * q.oh
    if parallel:
        for row in prange(rows):
            _row_f32(np.int64(row), q, ep, tgt, xf, tapoff, wf, bias, resf, outf)
    else:
        for row in range(rows):
            _row_f32(row, q, ep, tgt, xf, tapoff, wf, bias, resf, outf)


@njit(cache=True)
def depthwise_f32(x, w, bias, res, out, sh, sw, pt, pl, dh, dw, lo, hi, has_res, tgt):
    """out = clamp(depthwise(x, w) + bias (+ res), lo, hi), NHWC fp32; w = `pack_depthwise_f32(...).data`.

    Geometry and target marker `tgt` as in `conv_f32.conv2d_f32` (the kernel size comes from w's shape).
    """
    depthwise_f32_core(x, w, bias, res, out, sh, sw, pt, pl, dh, dw, f32_params(has_res, lo, hi), tgt)


@njit(cache=True)
def depthwise_f32_quant(x, w, bias, res, out, sh, sw, pt, pl, dh, dw, lo, hi, has_res, q_scale, q_zp, q_lo, q_hi,
                        tgt):
    """As `depthwise_f32`, then quantize into u8/i8 `out` (fp32 -> int8 precision boundary)."""
    depthwise_f32_core(x, w, bias, res, out, sh, sw, pt, pl, dh, dw,
                       f32_quant_params(has_res, lo, hi, q_scale, q_zp, q_lo, q_hi), tgt)


@njit(cache=True)
def _row_i8(row, q, ep, tgt, zx, xf, tapoff, wf, bias, interior_bias, mult, fbias, resf, outf):
    """Output row `row` (flat over N, OH) of `depthwise_i8_core`."""
    b = row // q.oh
    y = row - b * q.oh
    c = q.c
    iy0 = y * q.sh - q.pt
    fast = iy0 >= 0 and iy0 + (q.kh - 1) * q.dh <= q.h - 1 and q.xb > q.xa
    if fast:
        x0 = ((b * q.h + iy0) * q.wd + q.xa * q.sw - q.pl) * c
        o0 = (row * q.ow + q.xa) * c
        npx = q.xb - q.xa
        ntaps = q.kh * q.kw
        xstep = q.sw * c
        if dw_wide(tgt):
            for c0 in range(0, q.c32, 32):
                dw_kernel(ep, 4, npx, xf, x0 + c0, xstep, tapoff, ntaps, wf, c0, c, outf, o0 + c0, c,
                          interior_bias, mult, fbias, resf, c0)
        for c0 in range(q.c32, q.c16, 16):
            dw_kernel(ep, 2, npx, xf, x0 + c0, xstep, tapoff, ntaps, wf, c0, c, outf, o0 + c0, c,
                      interior_bias, mult, fbias, resf, c0)
        if q.c8 > q.c16:
            dw_kernel(ep, 1, npx, xf, x0 + q.c16, xstep, tapoff, ntaps, wf, q.c16, c, outf, o0 + q.c16, c,
                      interior_bias, mult, fbias, resf, q.c16)
    acc = np.empty(c, np.int32)
    z = np.int32(zx)
    for xo in range(q.ow):
        ca = q.c8 if fast and q.xa <= xo < q.xb else 0
        if ca == c:
            continue
        _pixel_i8(xf, z, wf, acc, b, y, xo, q.h, q.wd, c, q.kh, q.kw, q.sh, q.sw, q.pt, q.pl, q.dh, q.dw, ca, c)
        store_block(ep, acc[ca:], c, 1, c - ca, outf, row * q.ow + xo, c, ca, bias, mult, fbias, resf)


@njit(parallel=True, cache=True)
def depthwise_i8_core(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw, ep, mult, fbias, res, tgt):
    """x u8/i8 [N,H,W,C]; w int16[KH,KW,C]; bias int32[C]; `ep`, `mult`, `fbias`, `tgt` as in `conv_i8.conv_i8_core`."""
    _check_args(x, w, out, bias, res, ep.has_res)
    kh, kw = w.shape[0], w.shape[1]
    parallel = run_parallel(2 * out.size * kh * kw)
    x = _padded_input(x, out, kh, kw, sh, sw, pt, pl, dh, dw, zx, parallel)
    q = DwPlan(*_dw_plan(x, out, kh, kw, sh, sw, 0, 0, dh, dw, dw_wide(tgt)))
    xf = x.reshape(x.size)
    wf = w.reshape(w.size)
    outf = out.reshape(out.size)
    resf = res.reshape(res.size)
    tapoff = tap_offsets(kh, kw, dh, dw, q.wd, q.c)
    # interior pixels sum raw x * w; sum (x - zx) * w = that - zx * sum_t w[t], folded into the bias
    interior_bias = bias.copy()
    for t in range(kh * kw):
        for ch in range(q.c):
            interior_bias[ch] -= zx * wf[t * q.c + ch]
    rows = x.shape[0] * q.oh
    if parallel:
        for row in prange(rows):
            _row_i8(np.int64(row), q, ep, tgt, zx, xf, tapoff, wf, bias, interior_bias, mult, fbias, resf, outf)
    else:
        for row in range(rows):
            _row_i8(row, q, ep, tgt, zx, xf, tapoff, wf, bias, interior_bias, mult, fbias, resf, outf)


@njit(cache=True)
def depthwise_i8(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw, mult, zy, lo, hi, tgt):
    """Depthwise counterpart of `conv_i8.conv2d_i8` (requantized u8/i8 output); w = `pack_depthwise_i8(...).data`."""
    depthwise_i8_core(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw, requant_params(zy, lo, hi), mult, mult, out, tgt)


@njit(cache=True)
def depthwise_i8_add(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw, mult, z1, lo1, hi1, s1, res, zr, sr, sy, zy, lo, hi,
                     tgt):
    """Depthwise counterpart of `conv_i8.conv2d_i8_add` (requantize, then `qv.qadd` of an int8 residual)."""
    depthwise_i8_core(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw,
                      requant_add_params(z1, lo1, hi1, s1, zr, sr, sy, zy, lo, hi), mult, mult, res, tgt)


@njit(cache=True)
def depthwise_i8_requant(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw, mult, z1, lo1, hi1, s1, res, has_res, zr, sr, sy,
                         zy, lo, hi, tgt):
    """Depthwise counterpart of `conv_i8.conv2d_i8_requant` (`depthwise_i8_add` or `depthwise_i8` by `has_res`)."""
    if has_res:
        depthwise_i8_core(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw,
                          requant_add_params(z1, lo1, hi1, s1, zr, sr, sy, zy, lo, hi), mult, mult, res, tgt)
    else:
        depthwise_i8_core(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw, requant_params(z1, lo1, hi1), mult, mult, out, tgt)


@njit(cache=True)
def depthwise_i8_dequant(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw, scale, fbias, res, has_res, lo, hi, tgt):
    """Depthwise counterpart of `conv_i8.conv2d_i8_dequant` (fp32 output)."""
    depthwise_i8_core(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw, dequant_params(has_res, lo, hi), scale, fbias, res, tgt)
