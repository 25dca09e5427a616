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
the tile while it sits in L1/L2.  A partial last panel (OC not a multiple of 16) runs the
same kernel on 16-channel scratch (`conv_task.py`).  Depthwise convs use `depthwise.py`.

Epilogue: y = clamp(acc + bias (+ residual), lo, hi); with a u8/i8 `out` the value is
then quantized (QuantizeLinear arithmetic) for an fp32 -> int8 precision boundary.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from qv2c.runtime.kernels.conv_task import conv_task
from qv2c.runtime.kernels.convplan import ConvPlan, check_conv_args, make_plan, ntasks, plan_tap_offsets
from qv2c.runtime.kernels.dispatch import tile_rows
from qv2c.runtime.kernels.epilogue_kind import f32_params, f32_quant_params
from qv2c.runtime.kernels.indirect import pad_nhwc
from qv2c.runtime.kernels.tiling import FP32_CONV_PARALLEL_MIN_OPS, pad_in_parallel


@njit(parallel=True, cache=True)
def conv_f32_core(x, w, bias, res, out, kh, kw, sh, sw, pt, pl, dh, dw, ep, tgt):
    """The driver shared by `conv2d_f32`, `conv2d_f32_quant` and `gemm.gemm_f32` (see module docstring).

    x: f32[N, H, W, C]; w: packed f32[G, panels, K, 16]; bias: f32[OC]; res: like `out`
    (read only if `ep.has_res`); out: f32 (`ep` an `F32Act`) or u8/i8 (`F32Quant`) [N, OH, OW, OC].
    """
    n, h, wd, c = x.shape
    oh, ow, oc = out.shape[1], out.shape[2], out.shape[3]
    groups, npan, k = w.shape[0], w.shape[1], w.shape[2]
    icg = c // groups
    check_conv_args(x, out, bias, res, ep.has_res, kh, kw, groups, npan, k, icg)
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
    if plan.parallel:
        for task in prange(ntasks(plan, groups)):
            conv_task(np.int64(task), plan, ep, xpf, tapoff, wf, bias, bias, bias, resf, outf, tgt)
    else:
        for task in range(ntasks(plan, groups)):
            conv_task(task, plan, ep, xpf, tapoff, wf, bias, bias, bias, resf, outf, tgt)


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
    conv_f32_core(x, w, bias, res, out, kh, kw, sh, sw, pt, pl, dh, dw, f32_params(has_res, lo, hi), tgt)


@njit(cache=True)
def conv2d_f32_quant(x, w, bias, res, out, kh, kw, sh, sw, pt, pl, dh, dw, lo, hi, has_res,
                     q_scale, q_zp, q_lo, q_hi, tgt):
    """As `conv2d_f32`, then quantize to u8/i8 `out`: clip(rint(y / q_scale) + q_zp, q_lo, q_hi)."""
    conv_f32_core(x, w, bias, res, out, kh, kw, sh, sw, pt, pl, dh, dw,
                  f32_quant_params(has_res, lo, hi, q_scale, q_zp, q_lo, q_hi), tgt)


def conv_output_hw(h: int, w: int, kernel, strides, pads, dilations) -> tuple[int, int]:
    """ONNX Conv output size for pads [top, left, bottom, right]."""
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = kernel, strides, pads, dilations
    return ((h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1)

