"""fp32 convolution (dense, grouped, 1x1) on NHWC activations, with a fused epilogue.

Layout: activations are NHWC (`x[n, h, w, c]`, C-contiguous); the op semantics are
ONNX Conv's (NCHW attributes, OIHW weights packed once by `packing.pack_conv_f32`).
NHWC makes every kernel tap a contiguous run of input channels, so the micro-kernel can
read a (zero-padded) input in place, and it gives the epilogue contiguous channels.
`layout.nchw_to_nhwc` / `nhwc_to_nchw` convert at the model boundary.

Loop nest:

    xp = zero-padded copy of x (only if the conv pads)             # indirect.pad_nhwc
    for task in prange(groups * pixel_tiles * panel_chunks):        # tiling.plan_tiles
        pixoff = receptive-field offsets of the task's pixels       # indirect.pixel_offsets
        for panel in chunk:                                         # 16 output channels
            for R-pixel block of the tile:
                out[block, panel] = epilogue(sum_taps sum_ch xp[...] * W[panel])   # dispatch.f32_act,
                                                                                    # one call per panel

The micro-kernel (generated for the target, `target.py`: R = 6 rows of 2 ymm on AVX2, 12 rows
of 1 zmm on AVX-512) keeps an R x 16 accumulator tile in registers over all taps and channels
and applies bias, residual and clamp (and, at an fp32 -> int8 boundary, the quantize)
before its single store.  The weight panel (K x 16 floats) is reused by every block of
the tile while it sits in L1/L2.  A partial last panel (OC not a multiple of 16) goes
through a scratch tile and the NumPy-level epilogues of `epilogue.py`.  Depthwise convs
use `depthwise.py`.

Epilogue: y = clamp(acc + bias (+ residual), lo, hi); with a u8/i8 `out` the value is
then quantized (QuantizeLinear arithmetic) for an fp32 -> int8 precision boundary.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit, prange

from qv2c.runtime.kernels.convplan import (
    ConvPlan,
    check_conv_args,
    make_plan,
    ntasks,
    plan_tap_offsets,
    task_bounds,
)
from qv2c.runtime.kernels.dispatch import f32_act, f32_quant, f32_raw, tile_rows
from qv2c.runtime.kernels.epilogue import store_f32, store_f32_quant
from qv2c.runtime.kernels.indirect import pad_nhwc, pixel_offsets
from qv2c.runtime.kernels.microkernel import PANEL
from qv2c.runtime.kernels.tiling import FP32_CONV_PARALLEL_MIN_OPS, pad_in_parallel

F32Epilogue = namedtuple("F32Epilogue", "lo32 hi32 has_res quant lo hi q_scale q_zp q_lo q_hi")


@njit(cache=True)
def _task(task, plan, ep, groups, xpf, tapoff, wf, bias, resf, outf, tgt):
    """One task of `conv_f32_core`: all its panels over its pixel tile."""
    g, p0, nrows, nblk, pan0, pan1 = task_bounds(task, plan)
    pix = np.empty(nblk, np.int64)
    pixel_offsets(p0, nrows, plan.oh, plan.ow, plan.sh, plan.sw, plan.hp, plan.wp, plan.cp, g * plan.icgp, pix)
    oc = plan.oc
    acc = np.empty(0, np.float32)
    for pan in range(pan0, pan1):
        c0 = g * plan.ocg + pan * PANEL
        nc = min(PANEL, plan.ocg - pan * PANEL)
        b_off = (g * plan.npan + pan) * plan.kpad * PANEL
        if nc == PANEL and ep.quant:
            f32_quant(tgt, nrows, xpf, pix, 0, tapoff, plan.ntaps, plan.kc, wf, b_off, outf, p0 * oc + c0, oc, bias, c0,
                         resf, ep.has_res, ep.lo32, ep.hi32, ep.q_scale, ep.q_zp, ep.q_lo, ep.q_hi)
            continue
        if nc == PANEL:
            f32_act(tgt, nrows, xpf, pix, 0, tapoff, plan.ntaps, plan.kc, wf, b_off,
                       outf, p0 * oc + c0, oc, bias, c0, resf, ep.has_res, ep.lo32, ep.hi32)
            continue
        if acc.size == 0:
            acc = np.empty(nblk * PANEL, np.float32)
        f32_raw(tgt, nrows, xpf, pix, 0, tapoff, plan.ntaps, plan.kc, wf, b_off, acc, 0, PANEL)
        if ep.quant:
            store_f32_quant(acc, PANEL, nrows, nc, outf, p0, oc, c0, bias, resf, ep.has_res, ep.lo, ep.hi,
                            ep.q_scale, ep.q_zp, ep.q_lo, ep.q_hi)
        else:
            store_f32(acc, PANEL, nrows, nc, outf, p0, oc, c0, bias, resf, ep.has_res, ep.lo, ep.hi)


@njit(parallel=True, cache=True)
def conv_f32_core(x, w, bias, res, out, kh, kw, sh, sw, pt, pl, dh, dw, lo, hi, has_res,
                  quant, q_scale, q_zp, q_lo, q_hi, tgt):
    """The driver shared by `conv2d_f32`, `conv2d_f32_quant` and `gemm.gemm_f32` (see module docstring).

    x: f32[N, H, W, C]; w: packed f32[G, panels, K, 16]; bias: f32[OC]; res: like `out`
    (read only if `has_res`); out: f32 or u8/i8 [N, OH, OW, OC] (u8/i8 only with `quant`).
    """
    n, h, wd, c = x.shape
    oh, ow, oc = out.shape[1], out.shape[2], out.shape[3]
    groups, npan, k = w.shape[0], w.shape[1], w.shape[2]
    icg = c // groups
    check_conv_args(x, out, bias, res, has_res, kh, kw, groups, npan, k, icg)
    plan = ConvPlan(*make_plan(n, h, wd, oh, ow, oc, kh, kw, sh, sw, pt, pl, dh, dw, groups, npan, k, icg, c, icg,
                               FP32_CONV_PARALLEL_MIN_OPS, tile_rows(tgt)))
    if plan.hp == h and plan.wp == wd and pt == 0 and pl == 0:
        xp = x
    else:
        xp = np.empty((n, plan.hp, plan.wp, c), np.float32)
        pad_nhwc(x, pt, pl, xp, pad_in_parallel(plan.parallel, xp.size), 0.0)
    xpf = xp.reshape(xp.size)
    wf = w.reshape(w.size)
    outf = out.reshape(out.size)
    resf = res.reshape(res.size)
    tapoff = plan_tap_offsets(plan, kh, kw, dh, dw)
    ep = F32Epilogue(np.float32(lo), np.float32(hi), has_res, quant, lo, hi, q_scale, q_zp, q_lo, q_hi)
    if plan.parallel:
        for task in prange(ntasks(plan, groups)):
            _task(np.int64(task), plan, ep, groups, xpf, tapoff, wf, bias, resf, outf, tgt)
    else:
        for task in range(ntasks(plan, groups)):
            _task(task, plan, ep, groups, xpf, tapoff, wf, bias, resf, outf, tgt)


@njit(cache=True)
def conv2d_f32(x, w, bias, res, out, kh, kw, sh, sw, pt, pl, dh, dw, lo, hi, has_res, tgt):
    """out = clamp(conv(x, w) + bias (+ res), lo, hi); NHWC fp32 in and out.

    x f32[N,H,W,C]; w = `pack_conv_f32(...).data`; bias f32[OC]; res f32[N,OH,OW,OC] (may be
    `out` itself) or any f32 array when `has_res` is False; out f32[N,OH,OW,OC] (its shape gives
    OH, OW), not overlapping x.  All arrays C-contiguous; mismatched shapes raise ValueError.  kh, kw: kernel;
    sh, sw: strides; pt, pl: top/left pads (bottom/right follow from OH, OW); dh, dw: dilations;
    lo, hi: activation clamp (-inf/inf for none, 0/inf relu, 0/6 relu6); tgt: the target marker
    (`target.TargetSpec.marker()`) whose micro-kernels run.
    """
    conv_f32_core(x, w, bias, res, out, kh, kw, sh, sw, pt, pl, dh, dw, lo, hi, has_res,
                  False, 1.0, 0, 0, 0, tgt)


@njit(cache=True)
def conv2d_f32_quant(x, w, bias, res, out, kh, kw, sh, sw, pt, pl, dh, dw, lo, hi, has_res,
                     q_scale, q_zp, q_lo, q_hi, tgt):
    """As `conv2d_f32`, then quantize to u8/i8 `out`: clip(rint(y / q_scale) + q_zp, q_lo, q_hi)."""
    conv_f32_core(x, w, bias, res, out, kh, kw, sh, sw, pt, pl, dh, dw, lo, hi, has_res,
                  True, q_scale, q_zp, q_lo, q_hi, tgt)


def conv_output_hw(h: int, w: int, kernel, strides, pads, dilations) -> tuple[int, int]:
    """ONNX Conv output size for pads [top, left, bottom, right]."""
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = kernel, strides, pads, dilations
    return ((h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1)

