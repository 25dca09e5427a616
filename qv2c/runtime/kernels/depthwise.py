"""Depthwise convolution (groups == channels), fp32 and int8, NHWC, with fused epilogues.

A depthwise conv has no reduction over channels, so the GEMM micro-kernel does not
apply; instead every channel is an independent lane.  With NHWC activations and weights
packed as [KH, KW, C] (`packing.pack_depthwise_*`), the innermost loop runs over the
contiguous channels of one input pixel, one weight row and one accumulator row, and LLVM
turns it into 8-lane FMAs (fp32) or 8-lane int32 multiply-adds (int8).

Loop nest (parallel over independent output rows):

    for (n, oh) in prange(N * OH):
        acc[OW, C] = 0
        for ow, kh, kw with the input tap inside the image:   # padding taps are skipped:
            acc[ow, :] += x[n, ih, iw, :] * w[kh, kw, :]      # they add 0 (fp32) or (zx - zx) * w = 0 (int8)
        out[n, oh, :, :] = epilogue(acc)                       # whole row at once, from L1

The accumulator row (OW * C values, e.g. 56 * 144 * 4 B = 32 KB) and the KH input rows it
reads stay in L1/L2; the kernel is bound by L1 load/store bandwidth (one load of acc, x
and w and one store per vector FMA), which for depthwise layers is on par with the memory
traffic anyway.

int8: acc = sum (x - zx) * w + bias, computed as int16 (x - zx) times int16-range weights
into int32, exact; epilogues as in `conv_i8.py` (requantize, requantize + residual qadd, or
dequantize to fp32).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from qv2c.runtime.kernels.conv_i8 import MODE_DEQUANT, MODE_REQUANT, MODE_REQUANT_ADD
from qv2c.runtime.kernels.epilogue import (
    store_dequant,
    store_f32,
    store_f32_quant,
    store_requant,
    store_requant_add,
)


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


@njit(cache=True, fastmath={"contract"})
def _fma_row(acc, x, w):
    """acc += x * w over one pixel's channels (views indexed by the loop counter: vectorises to FMAs)."""
    for ch in range(acc.size):
        acc[ch] += x[ch] * w[ch]


@njit(cache=True)
def _mac_row_i8(acc, x, z, w):
    """acc += (x - z) * w in int32 over one pixel's channels."""
    for ch in range(acc.size):
        acc[ch] += (np.int32(x[ch]) - z) * w[ch]


@njit(parallel=True, cache=True)
def depthwise_f32_core(x, w, bias, res, out, sh, sw, pt, pl, dh, dw, lo, hi, has_res,
                       quant, q_scale, q_zp, q_lo, q_hi):
    """x f32[N,H,W,C]; w f32[KH,KW,C]; out f32 (or u8/i8 with `quant`) [N,OH,OW,C]."""
    n, h, wd, c = x.shape
    oh, ow = out.shape[1], out.shape[2]
    kh, kw = w.shape[0], w.shape[1]
    xf = x.reshape(x.size)
    wf = w.reshape(w.size)
    outf = out.reshape(out.size)
    resf = res.reshape(res.size)
    for row_u in prange(n * oh):
        row = np.int64(row_u)
        b = row // oh
        y = row - b * oh
        acc = np.zeros(ow * c, np.float32)
        ky0, ky1 = _tap_range(y, sh, pt, dh, kh, h)
        for xo in range(ow):
            kx0, kx1 = _tap_range(xo, sw, pl, dw, kw, wd)
            a0 = xo * c
            for ky in range(ky0, ky1):
                ih = y * sh - pt + ky * dh
                for kx in range(kx0, kx1):
                    iw = xo * sw - pl + kx * dw
                    src = ((b * h + ih) * wd + iw) * c
                    wo = (ky * kw + kx) * c
                    _fma_row(acc[a0:a0 + c], xf[src:src + c], wf[wo:wo + c])
        if quant:
            store_f32_quant(acc, c, ow, c, outf, row * ow, c, 0, bias, resf, has_res, lo, hi, q_scale, q_zp, q_lo, q_hi)
        else:
            store_f32(acc, c, ow, c, outf, row * ow, c, 0, bias, resf, has_res, lo, hi)


@njit(cache=True)
def depthwise_f32(x, w, bias, res, out, sh, sw, pt, pl, dh, dw, lo, hi, has_res):
    """out = clamp(depthwise(x, w) + bias (+ res), lo, hi), NHWC fp32; w = `pack_depthwise_f32(...).data`.

    Geometry as in `conv_f32.conv2d_f32` (the kernel size comes from w's shape).
    """
    depthwise_f32_core(x, w, bias, res, out, sh, sw, pt, pl, dh, dw, lo, hi, has_res, False, 1.0, 0, 0, 0)


@njit(cache=True)
def depthwise_f32_quant(x, w, bias, res, out, sh, sw, pt, pl, dh, dw, lo, hi, has_res, q_scale, q_zp, q_lo, q_hi):
    """As `depthwise_f32`, then quantize into u8/i8 `out` (fp32 -> int8 precision boundary)."""
    depthwise_f32_core(x, w, bias, res, out, sh, sw, pt, pl, dh, dw, lo, hi, has_res, True, q_scale, q_zp, q_lo, q_hi)


@njit(parallel=True, cache=True)
def depthwise_i8_core(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw,
                      mode, mult, fbias, res, has_res, zy, lo, hi, z1, lo1, hi1, zr, sr, s1, sy):
    """x u8/i8 [N,H,W,C]; w int32[KH,KW,C]; bias int32[C]; epilogue `mode` as in `conv_i8.conv_i8_core`."""
    n, h, wd, c = x.shape
    oh, ow = out.shape[1], out.shape[2]
    kh, kw = w.shape[0], w.shape[1]
    xf = x.reshape(x.size)
    wf = w.reshape(w.size)
    outf = out.reshape(out.size)
    resf = res.reshape(res.size)
    z = np.int32(zx)
    for row_u in prange(n * oh):
        row = np.int64(row_u)
        b = row // oh
        y = row - b * oh
        acc = np.zeros(ow * c, np.int32)
        ky0, ky1 = _tap_range(y, sh, pt, dh, kh, h)
        for xo in range(ow):
            kx0, kx1 = _tap_range(xo, sw, pl, dw, kw, wd)
            a0 = xo * c
            for ky in range(ky0, ky1):
                ih = y * sh - pt + ky * dh
                for kx in range(kx0, kx1):
                    iw = xo * sw - pl + kx * dw
                    src = ((b * h + ih) * wd + iw) * c
                    wo = (ky * kw + kx) * c
                    _mac_row_i8(acc[a0:a0 + c], xf[src:src + c], z, wf[wo:wo + c])
        if mode == MODE_REQUANT:
            store_requant(acc, c, ow, c, outf, row * ow, c, 0, bias, mult, zy, lo, hi)
        elif mode == MODE_REQUANT_ADD:
            store_requant_add(acc, c, ow, c, outf, row * ow, c, 0, bias, mult, z1, lo1, hi1, resf, zr, sr, s1, sy,
                              zy, lo, hi)
        else:
            store_dequant(acc, c, ow, c, outf, row * ow, c, 0, bias, mult, fbias, resf, has_res, lo, hi)


@njit(cache=True)
def depthwise_i8(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw, mult, zy, lo, hi):
    """Depthwise counterpart of `conv_i8.conv2d_i8` (requantized u8/i8 output); w = `pack_depthwise_i8(...).data`."""
    depthwise_i8_core(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw,
                      MODE_REQUANT, mult, mult, out, False, zy, float(lo), float(hi), 0, 0.0, 0.0, 0, 1.0, 1.0, 1.0)


@njit(cache=True)
def depthwise_i8_add(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw, mult, z1, lo1, hi1, s1, res, zr, sr, sy, zy, lo, hi):
    """Depthwise counterpart of `conv_i8.conv2d_i8_add` (requantize, then `qv.qadd` of an int8 residual)."""
    depthwise_i8_core(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw,
                      MODE_REQUANT_ADD, mult, mult, res, True, zy, float(lo), float(hi), z1, float(lo1), float(hi1),
                      zr, sr, s1, sy)


@njit(cache=True)
def depthwise_i8_dequant(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw, scale, fbias, res, has_res, lo, hi):
    """Depthwise counterpart of `conv_i8.conv2d_i8_dequant` (fp32 output)."""
    depthwise_i8_core(x, zx, w, bias, out, sh, sw, pt, pl, dh, dw,
                      MODE_DEQUANT, scale, fbias, res, has_res, 0, float(lo), float(hi), 0, 0.0, 0.0, 0, 1.0, 1.0, 1.0)
