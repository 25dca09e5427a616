"""fp32 convolution (dense, grouped, 1x1) on NHWC activations, with a fused epilogue.

Layout: activations are NHWC (`x[n, h, w, c]`, C-contiguous); the op semantics are
ONNX Conv's (NCHW attributes, OIHW weights packed once by `packing.pack_conv_f32`).
NHWC makes an im2col row a handful of contiguous channel runs, lets a stride-1 1x1
conv use the input itself as the GEMM A matrix, and gives the epilogue contiguous
channels to vectorise over.  `layout.nchw_to_nhwc` / `nhwc_to_nchw` convert at the
model boundary.

Loop nest (one `prange` over independent output tiles):

    for task in prange(groups * pixel_tiles * panel_chunks):       # tiling.plan_tiles
        A = im2col rows of the task's pixels (or the input itself for 1x1/s1/p0)
        for panel in chunk:                                        # 16 output channels
            for 6-row block of the tile:
                acc[6x16] = A[rows, :K] @ W[panel]                  # microkernel.mk_f32
                out[rows, panel] = epilogue(acc)                    # epilogue.store_f32*

The weight panel (K x 16 floats) is reused by every row block of the tile while it is
in L1/L2; the A tile is reused by every panel.  Depthwise convs go to `depthwise.py`.

Epilogue: y = clamp(acc + bias (+ residual), lo, hi); with a u8/i8 `out` the value is
then quantized (QuantizeLinear arithmetic) for an fp32 -> int8 precision boundary.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from qv2c.runtime.kernels.epilogue import store_f32, store_f32_quant
from qv2c.runtime.kernels.im2col import im2col_f32
from qv2c.runtime.kernels.microkernel import MAX_ROWS, PANEL, mk_f32
from qv2c.runtime.kernels.packing import PackedConv
from qv2c.runtime.kernels.tiling import plan_tiles


@njit(parallel=True, cache=True)
def conv_f32_core(x, w, bias, res, out, kh, kw, sh, sw, pt, pl, dh, dw, lo, hi, has_res,
                  quant, q_scale, q_zp, q_lo, q_hi):
    """The driver shared by `conv2d_f32`, `conv2d_f32_quant` and `gemm.gemm_f32` (see module docstring).

    x: f32[N, H, W, C]; w: packed f32[G, panels, K, 16]; bias: f32[OC]; res: like `out`
    (read only if `has_res`); out: f32 or u8/i8 [N, OH, OW, OC] (u8/i8 only with `quant`).
    """
    n, h, wd, c = x.shape
    oh, ow, oc = out.shape[1], out.shape[2], out.shape[3]
    groups, npan, k = w.shape[0], w.shape[1], w.shape[2]
    icg = c // groups
    ocg = oc // groups
    npix = n * oh * ow
    direct = kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 and oh == h and ow == wd
    xf = x.reshape(x.size)
    wf = w.reshape(w.size)
    outf = out.reshape(out.size)
    resf = res.reshape(res.size)
    ptile, nptiles, nchunks = plan_tiles(npix, groups, npan, 4 * k)
    per_chunk = -(-npan // nchunks)
    for task_u in prange(groups * nptiles * nchunks):
        task = np.int64(task_u)
        g = task // (nptiles * nchunks)
        t = (task // nchunks) % nptiles
        pan0 = (task % nchunks) * per_chunk
        pan1 = min(npan, pan0 + per_chunk)
        p0 = t * ptile
        nrows = min(ptile, npix - p0)
        acc = np.empty(MAX_ROWS * PANEL, np.float32)
        if direct:
            a = xf
            a_off = p0 * c + g * icg
            lda = c
        else:
            a = np.empty(nrows * k, np.float32)
            im2col_f32(xf, h, wd, c, g, icg, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, p0, nrows, a, k)
            a_off = 0
            lda = k
        for pan in range(pan0, pan1):
            c0 = g * ocg + pan * PANEL
            nc = min(PANEL, ocg - pan * PANEL)
            b_off = (g * npan + pan) * k * PANEL
            for r0 in range(0, nrows, MAX_ROWS):
                rows = min(MAX_ROWS, nrows - r0)
                mk_f32(rows, acc, 0, PANEL, a, a_off + r0 * lda, lda, wf, b_off, k)
                if quant:
                    store_f32_quant(acc, PANEL, rows, nc, outf, p0 + r0, oc, c0, bias, resf, has_res, lo, hi,
                                    q_scale, q_zp, q_lo, q_hi)
                else:
                    store_f32(acc, PANEL, rows, nc, outf, p0 + r0, oc, c0, bias, resf, has_res, lo, hi)


@njit(cache=True)
def conv2d_f32(x, w, bias, res, out, kh, kw, sh, sw, pt, pl, dh, dw, lo, hi, has_res):
    """out = clamp(conv(x, w) + bias (+ res), lo, hi); NHWC fp32 in and out.

    x f32[N,H,W,C]; w = `pack_conv_f32(...).data`; bias f32[OC]; res f32[N,OH,OW,OC] or any f32
    array when `has_res` is False; out f32[N,OH,OW,OC] (its shape gives OH, OW).  kh, kw: kernel;
    sh, sw: strides; pt, pl: top/left pads (bottom/right follow from OH, OW); dh, dw: dilations;
    lo, hi: activation clamp (-inf/inf for none, 0/inf relu, 0/6 relu6).
    """
    conv_f32_core(x, w, bias, res, out, kh, kw, sh, sw, pt, pl, dh, dw, lo, hi, has_res,
                  False, 1.0, 0, 0, 0)


@njit(cache=True)
def conv2d_f32_quant(x, w, bias, res, out, kh, kw, sh, sw, pt, pl, dh, dw, lo, hi, has_res,
                     q_scale, q_zp, q_lo, q_hi):
    """As `conv2d_f32`, then quantize to u8/i8 `out`: clip(rint(y / q_scale) + q_zp, q_lo, q_hi)."""
    conv_f32_core(x, w, bias, res, out, kh, kw, sh, sw, pt, pl, dh, dw, lo, hi, has_res,
                  True, q_scale, q_zp, q_lo, q_hi)


def conv_output_hw(h: int, w: int, kernel, strides, pads, dilations) -> tuple[int, int]:
    """ONNX Conv output size for pads [top, left, bottom, right]."""
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = kernel, strides, pads, dilations
    return ((h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1)


def run_conv_f32(x_nhwc: np.ndarray, packed: PackedConv, bias=None, strides=(1, 1), pads=(0, 0, 0, 0),
                 dilations=(1, 1), act=(-np.inf, np.inf), residual=None, out=None) -> np.ndarray:
    """Python convenience wrapper: allocate the NHWC output and call `conv2d_f32`."""
    n, h, w, _ = x_nhwc.shape
    oh, ow = conv_output_hw(h, w, packed.kernel, strides, pads, dilations)
    if out is None:
        out = np.empty((n, oh, ow, packed.out_channels), np.float32)
    bias = np.zeros(packed.out_channels, np.float32) if bias is None else np.asarray(bias, np.float32)
    res = out if residual is None else residual
    conv2d_f32(x_nhwc, packed.data, bias, res, out, *packed.kernel, *strides, pads[0], pads[1], *dilations,
               float(act[0]), float(act[1]), residual is not None)
    return out
