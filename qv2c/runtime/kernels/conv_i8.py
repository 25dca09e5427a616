"""int8 convolution: u8/i8 NHWC activations x int8 per-output-channel weights, exact int32 sums.

Arithmetic (the `qv.qconv` contract of `qv2c/ir/quant_ops.py`):

    acc[p, oc] = sum_k (x[p, k] - zx) * w[oc, k] + bias[oc]        exact, int32
    y = requantize(acc)   or   requantize + `qv.qadd` of a residual   or   dequantize to fp32

How it is computed, and why it is exact:

Two dot products, chosen by the packed weight (`packing.pack_conv_i8(..., dot)`, see `target.py`;
the input preparation that goes with each is in `i8_input.py`):

- "pairs": the input is first widened once to int16 `x - zx` with a zero border
  (`indirect.pad_widen_s16`), so padding is exactly the input zero point and no weight-sum
  correction term is needed; each group's channels are padded to an even count.  Weights are
  int16 pairs; the micro-kernel multiplies int16 x int16 into int32 and adds pairs: one
  `vpmaddwd` (+ `vpaddd`) per 16 multiply-accumulates on AVX2.  A pair sum is at most
  2 * 255 * 128 in magnitude, so nothing saturates, unlike the `vpmaddubsw` (u8 x s8 ->
  saturating s16) path, which is exact only with 7-bit weights.
- "quads" (AVX-512 VNNI): the input stays u8 (read in place when nothing needs padding), weights
  are int8 in groups of 4, and one `vpdpbusd` adds 4 u8 x s8 products per int32 lane without
  saturating.  The zero point comes out through the bias: bias - zx * sum_k w[oc, k], with the
  padding border holding zx so its taps cancel exactly.
- Sums wrap modulo 2**32 only if the true sum leaves int32, which the reference
  interpreter rejects (`QV2CError`), so results are bit-exact.

Layout, loop nest and task split are those of `conv_f32.py`: NHWC in and out, a prange
over (group, pixel tile, panel chunk), 6 x 16 register tiles read in place through tap
offsets, epilogue fused into the micro-kernel's store.  A partial last panel runs the same
kernel on 16-channel scratch (`conv_task.py`).

Epilogues (`epilogue_kind.py`): requantize, requantize + residual `qv.qadd`, or dequantize
to fp32, chosen by the type of the parameter tuple each entry point passes, so a compiled
driver holds only its own.  `mult` is float32 multipliers or, for "shift" requantization,
int32 shifts.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from qv2c.runtime.kernels.conv_task import conv_task
from qv2c.runtime.kernels.convplan import ConvPlan, check_conv_args, make_plan, ntasks, plan_tap_offsets
from qv2c.runtime.kernels.dispatch import tile_rows
from qv2c.runtime.kernels.epilogue_kind import dequant_params, requant_add_params, requant_params
from qv2c.runtime.kernels.i8_input import dot_width, effective_bias, packed_k, prepare_input
from qv2c.runtime.kernels.tiling import PARALLEL_MIN_OPS


@njit(parallel=True, cache=True)
def conv_i8_core(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw, ep, mult, fbias, res, tgt):
    """Driver shared by the int8 conv and GEMM entry points.

    x: u8/i8 [N, H, W, C]; w: packed `pack_conv_i8(..., dot)`: int16 [G, panels, Kp/2, 16, 2] ("pairs")
    or int8 [G, panels, Kp/4 + 1, 16, 4] ("quads"); bias: int32[OC];
    out: [N, OH, OW, OC], u8/i8 (`Requant`, `RequantAdd`) or f32 (`Dequant`); `ep` one of the
    `epilogue_kind` tuples; `mult` is M[oc] (float32) or shifts (int32) when requantizing, the
    dequantization scale S[oc] for `Dequant`; `fbias` the fp32 bias of `Dequant`, `res` the residual;
    `tgt` the target marker whose micro-kernels run.
    """
    n, h, wd, c = x.shape
    oh, ow, oc = out.shape[1], out.shape[2], out.shape[3]
    groups, npan = w.shape[0], w.shape[1]
    width = dot_width(w)
    kpad = packed_k(w)
    icg = c // groups
    icp = -(-icg // width) * width
    check_conv_args(x, out, bias, res, ep.has_res, kh, kw, groups, npan, kpad, icp)
    plan = ConvPlan(*make_plan(n, h, wd, oh, ow, oc, kh, kw, sh, sw, pt, pl, dh, dw, groups, npan,
                               w.shape[2] * width, icp // width, groups * icp, icp, PARALLEL_MIN_OPS * 2 // width,
                               tile_rows(tgt)))
    xpf = prepare_input(w, x, zx, pt, pl, groups, plan.hp, plan.wp, icp, plan.parallel)
    beff = effective_bias(w, x, zx, bias, oc)
    wf = w.reshape(w.size)
    outf = out.reshape(out.size)
    resf = res.reshape(res.size)
    tapoff = plan_tap_offsets(plan, kh, kw, dh, dw)
    if plan.parallel:
        for task in prange(ntasks(plan, groups)):
            conv_task(np.int64(task), plan, ep, xpf, tapoff, wf, beff, mult, fbias, resf, outf, tgt)
    else:
        for task in range(ntasks(plan, groups)):
            conv_task(task, plan, ep, xpf, tapoff, wf, beff, mult, fbias, resf, outf, tgt)


@njit(cache=True)
def conv2d_i8(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw, mult, zy, lo, hi, tgt):
    """u8/i8 NHWC `out` = clip(requantize(acc, mult[oc]) + zy, lo, hi), acc = conv(x - zx, w) + bias.

    x u8/i8 [N,H,W,C] with zero point zx; w = `pack_conv_i8(...).data`; bias int32[OC];
    mult f32[OC] = s_x * s_w[oc] / s_y ("float": rint(f32(acc) * mult)) or int32[OC] shifts
    ("shift": integer round-half-up shift, `quant_math.requantize_shift`);
    [lo, hi] = activation bounds (integers) of the output.  Geometry as in `conv_f32.conv2d_f32`.
    """
    conv_i8_core(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw, requant_params(zy, lo, hi), mult, mult, out,
                 tgt)


@njit(cache=True)
def conv2d_i8_add(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw, mult, z1, lo1, hi1, s1,
                  res, zr, sr, sy, zy, lo, hi, tgt):
    """qconv to an intermediate grid (mult, z1, [lo1, hi1], scale s1) fused with `qv.qadd` of `res`.

    res: u8/i8 NHWC like `out`, zero point zr, scale sr; output scale sy, zero point zy, bounds [lo, hi].
    Bit-identical to `conv2d_i8` into a temporary followed by the reference `qv.qadd`.
    """
    conv_i8_core(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw,
                 requant_add_params(z1, lo1, hi1, s1, zr, sr, sy, zy, lo, hi), mult, mult, res, tgt)


@njit(cache=True)
def conv2d_i8_requant(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw, mult, z1, lo1, hi1, s1,
                      res, has_res, zr, sr, sy, zy, lo, hi, tgt):
    """`conv2d_i8_add` if `has_res`, else `conv2d_i8` into (z1, [lo1, hi1]) (the residual parameters then
    unread): the one int8 -> int8 entry point compiled programs call, so a network's convs with and
    without a residual, and its GEMMs run as 1x1 convs, share one compiled entry point.  The two
    epilogues are two driver specialisations under it, so each driver's task holds one micro-kernel
    (one driver holding both behind a run-time branch compiles faster, but looked slower in the A/B
    runs of benchmarks/results/ab_compare.md; the evidence is within that machine's noise)."""
    if has_res:
        conv_i8_core(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw,
                     requant_add_params(z1, lo1, hi1, s1, zr, sr, sy, zy, lo, hi), mult, mult, res, tgt)
    else:
        conv_i8_core(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw, requant_params(z1, lo1, hi1), mult, mult,
                     out, tgt)


@njit(cache=True)
def conv2d_i8_dequant(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw, scale, fbias, res, has_res, lo, hi,
                      tgt):
    """fp32 NHWC `out` = clamp(f32(acc) * scale[oc] + fbias[oc] (+ res), lo, hi): an int8 -> fp32 boundary."""
    conv_i8_core(x, zx, w, bias, out, kh, kw, sh, sw, pt, pl, dh, dw, dequant_params(has_res, lo, hi), scale, fbias,
                 res, tgt)
