"""int8 convolution: u8/i8 NHWC activations x int8 per-output-channel weights, exact int32 sums.

Arithmetic (the `qv.qconv` contract of `qv2c/ir/quant_ops.py`):

    acc[p, oc] = sum_k (x[p, k] - zx) * w[oc, k] + bias[oc]        exact, int32
    y = requantize(acc)   or   requantize + `qv.qadd` of a residual   or   dequantize to fp32

How it is computed, and why it is exact:

- The A tile (`im2col.im2col_s16`) holds `x - zx` as int16 (|v| <= 255), so zero padding
  is the value 0 (= the input zero point) and no weight-sum correction is needed.
- Weights are packed as int16 pairs (`packing.pack_conv_i8`); the micro-kernel
  (`microkernel.mk_s16`) multiplies int16 x int16 into int32 and adds pairs, i.e. one
  `vpmaddwd` per 16 multiply-accumulates on AVX2 (`vpdpwssd` with AVX-512 VNNI).  Each pair
  sum is at most 2 * 255 * 128 in magnitude, so nothing saturates, unlike the
  `vpmaddubsw` (u8 x s8 -> saturating s16) path that needs 7-bit weights to be safe.
- Sums wrap modulo 2**32 only if the true sum leaves int32, which the reference
  interpreter rejects at compile time (`QV2CError`), so results are bit-exact.

Layout, loop nest and task split are those of `conv_f32.py` (NHWC in and out, a prange
over (group, pixel tile, panel chunk), 6x16 register blocks, epilogue on the L1-hot block);
the only extra pass is the widening im2col, which also serves 1x1 convs.

Epilogues (`epilogue.py`): mode 0 `store_requant`, mode 1 `store_requant_add`,
mode 2 `store_dequant`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from qv2c.runtime.kernels.epilogue import store_dequant, store_requant, store_requant_add
from qv2c.runtime.kernels.im2col import im2col_s16
from qv2c.runtime.kernels.microkernel import MAX_ROWS, PANEL, mk_s16
from qv2c.runtime.kernels.packing import PackedConv
from qv2c.runtime.kernels.tiling import plan_tiles

MODE_REQUANT = 0
MODE_REQUANT_ADD = 1
MODE_DEQUANT = 2


@njit(parallel=True, cache=True)
def conv_i8_core(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw,
                 mode, mult, fbias, res, has_res, zy, lo, hi, z1, lo1, hi1, zr, sr, s1, sy):
    """Driver shared by the int8 conv and GEMM entry points.

    x: u8/i8 [N, H, W, C]; w: packed int16 [G, panels, K/2, 16, 2]; bias: int32[OC];
    out: [N, OH, OW, OC], u8/i8 (modes 0, 1) or f32 (mode 2); `mult` is M[oc] (modes 0, 1)
    or the dequantization scale S[oc] (mode 2); see `epilogue.py` for the other parameters.
    """
    n, h, wd, c = x.shape
    oh, ow, oc = out.shape[1], out.shape[2], out.shape[3]
    groups, npan, kp = w.shape[0], w.shape[1], w.shape[2]
    kpad = 2 * kp
    icg = c // groups
    ocg = oc // groups
    npix = n * oh * ow
    xf = x.reshape(x.size)
    wf = w.reshape(w.size)
    outf = out.reshape(out.size)
    resf = res.reshape(res.size)
    ptile, nptiles, nchunks = plan_tiles(npix, groups, npan, 2 * kpad)
    per_chunk = -(-npan // nchunks)
    for task_u in prange(groups * nptiles * nchunks):
        task = np.int64(task_u)
        g = task // (nptiles * nchunks)
        t = (task // nchunks) % nptiles
        pan0 = (task % nchunks) * per_chunk
        pan1 = min(npan, pan0 + per_chunk)
        p0 = t * ptile
        nrows = min(ptile, npix - p0)
        acc = np.empty(MAX_ROWS * PANEL, np.int32)
        a = np.empty(nrows * kpad, np.int16)
        im2col_s16(xf, zx, h, wd, c, g, icg, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, p0, nrows, a, kpad)
        for pan in range(pan0, pan1):
            c0 = g * ocg + pan * PANEL
            nc = min(PANEL, ocg - pan * PANEL)
            b_off = (g * npan + pan) * kpad * PANEL
            for r0 in range(0, nrows, MAX_ROWS):
                rows = min(MAX_ROWS, nrows - r0)
                mk_s16(rows, acc, 0, PANEL, a, r0 * kpad, kpad, wf, b_off, kp)
                if mode == MODE_REQUANT:
                    store_requant(acc, PANEL, rows, nc, outf, p0 + r0, oc, c0, bias, mult, zy, lo, hi)
                elif mode == MODE_REQUANT_ADD:
                    store_requant_add(acc, PANEL, rows, nc, outf, p0 + r0, oc, c0, bias, mult, z1, lo1, hi1,
                                      resf, zr, sr, s1, sy, zy, lo, hi)
                else:
                    store_dequant(acc, PANEL, rows, nc, outf, p0 + r0, oc, c0, bias, mult, fbias, resf,
                                  has_res, lo, hi)


@njit(cache=True)
def conv2d_i8(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw, mult, zy, lo, hi):
    """u8/i8 NHWC `out` = clip(rint(f32(acc) * mult[oc]) + zy, lo, hi), acc = conv(x - zx, w) + bias.

    x u8/i8 [N,H,W,C] with zero point zx; w = `pack_conv_i8(...).data`; bias int32[OC];
    mult f32[OC] = s_x * s_w[oc] / s_y; [lo, hi] = activation bounds (integers) of the output.
    Geometry arguments as in `conv_f32.conv2d_f32`.
    """
    conv_i8_core(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw,
                 MODE_REQUANT, mult, mult, out, False, zy, float(lo), float(hi), 0, 0.0, 0.0, 0, 1.0, 1.0, 1.0)


@njit(cache=True)
def conv2d_i8_add(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw, mult, z1, lo1, hi1, s1,
                  res, zr, sr, sy, zy, lo, hi):
    """qconv to an intermediate grid (mult, z1, [lo1, hi1], scale s1) fused with `qv.qadd` of `res`.

    res: u8/i8 NHWC like `out`, zero point zr, scale sr; output scale sy, zero point zy, bounds [lo, hi].
    Bit-identical to `conv2d_i8` into a temporary followed by the reference `qv.qadd`.
    """
    conv_i8_core(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw,
                 MODE_REQUANT_ADD, mult, mult, res, True, zy, float(lo), float(hi), z1, float(lo1), float(hi1),
                 zr, sr, s1, sy)


@njit(cache=True)
def conv2d_i8_dequant(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw, scale, fbias, res, has_res, lo, hi):
    """fp32 NHWC `out` = clamp(f32(acc) * scale[oc] + fbias[oc] (+ res), lo, hi): an int8 -> fp32 boundary."""
    conv_i8_core(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw,
                 MODE_DEQUANT, scale, fbias, res, has_res, 0, float(lo), float(hi), 0, 0.0, 0.0, 0, 1.0, 1.0, 1.0)


def run_conv_i8(x_nhwc: np.ndarray, zx: int, packed: PackedConv, bias, mult, zy: int, bounds,
                strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), out=None) -> np.ndarray:
    """Python convenience wrapper around `conv2d_i8` (allocates the output, same dtype as `x_nhwc`)."""
    from qv2c.runtime.kernels.conv_f32 import conv_output_hw

    n, h, w, _ = x_nhwc.shape
    oh, ow = conv_output_hw(h, w, packed.kernel, strides, pads, dilations)
    if out is None:
        out = np.empty((n, oh, ow, packed.out_channels), x_nhwc.dtype)
    bias = np.zeros(packed.out_channels, np.int32) if bias is None else np.asarray(bias, np.int32)
    conv2d_i8(x_nhwc, int(zx), packed.data, bias, out, *packed.kernel, *strides, pads[0], pads[1], *dilations,
              np.asarray(mult, np.float32), int(zy), int(bounds[0]), int(bounds[1]))
    return out
