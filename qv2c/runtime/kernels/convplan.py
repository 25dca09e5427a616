"""The geometry of one conv/GEMM call, shared by the fp32 and int8 drivers.

`make_plan` turns shapes and attributes into a `ConvPlan` (a namedtuple, which Numba
passes by value) once per call: the padded input extent, the task split
(`tiling.plan_tiles`) and the reduction lengths.  `task_bounds` maps a task index to its
group, pixel range and panel range; every task is independent, so the drivers run them
either in a `prange` or, for small layers, in a plain loop (`tiling.run_parallel`).
"""

from __future__ import annotations

from collections import namedtuple

from numba import njit

from qv2c.runtime.kernels.indirect import tap_offsets
from qv2c.runtime.kernels.microkernel import PANEL
from qv2c.runtime.kernels.tiling import plan_tiles, run_parallel

ConvPlan = namedtuple("ConvPlan", [
    "npix",       # output pixels N * OH * OW
    "oh", "ow", "sh", "sw",
    "hp", "wp",   # padded input height and width
    "cp",         # channels per pixel of the padded input
    "icgp",       # channel offset between groups in the padded input
    "ocg", "oc",  # output channels per group, total
    "npan",       # weight panels (16 output channels) per group
    "kpad",       # packed reduction length per panel (elements)
    "kc",         # micro-kernel reduction steps per tap (channels, or channel pairs for int8)
    "ntaps",      # taps: KH * KW, or KH "row taps" of KW * kc steps each (see `make_plan`)
    "ptile", "nptiles", "nchunks", "per_chunk",
    "parallel",
    "row_round",  # pixel-offset rows per task rounded up to this (the target's tile height, `task_bounds`)
])


@njit(cache=True)
def padded_extent(size, out_size, stride, pad_begin, kernel, dilation):
    """Rows (or columns) of a padded input that hold the input and every tap of every output."""
    return max(size + pad_begin, (out_size - 1) * stride + (kernel - 1) * dilation + 1)


@njit(cache=True)
def check_conv_args(x, out, bias, res, has_res, kh, kw, groups, npan, kpad, icgp):
    """Raise ValueError unless the arrays fit together (a mismatch would read or write out of bounds).

    `kpad` is the packed reduction length, `icgp` the input channels per group as packed
    (padded to even for int8).  The compiler validates shapes earlier with proper
    QV2CErrors; this is the kernels' own guard against a wrongly wired call.
    """
    n, c, oc = x.shape[0], x.shape[3], out.shape[3]
    if groups < 1 or c % groups or oc % groups:
        raise ValueError("conv kernel: channels are not divisible by the packed weight's groups")
    if kpad != kh * kw * icgp:
        raise ValueError("conv kernel: packed weight reduction length != KH * KW * input channels per group")
    if oc // groups > npan * PANEL or out.shape[0] != n or bias.size < oc:
        raise ValueError("conv kernel: output channels / batch / bias do not match the packed weight")
    if has_res and res.size != out.size:
        raise ValueError("conv kernel: residual must have the output's shape")


@njit(cache=True)
def make_plan(n, h, wd, oh, ow, oc, kh, kw, sh, sw, pt, pl, dh, dw, groups, npan, kpad, kc, cp, icgp, min_parallel_ops,
              row_round):
    """The fields of a conv's `ConvPlan`, as a plain tuple; `kpad`, `kc`, `cp`, `icgp` and the parallel
    threshold `min_parallel_ops` (`tiling.py`) depend on the precision; `row_round` is the target's
    micro-kernel tile height (`target.TargetSpec.rows`, `dispatch.tile_rows`).

    Row taps: with one group and no horizontal dilation, the KW taps of a kernel row read
    KW adjacent input pixels, whose channels are contiguous in NHWC, so a row is one tap
    of KW * kc reduction steps.  The packed weights are already in that order (tap-major,
    then channel), so only the loop bounds change: fewer, longer reduction loops, which
    matters for convs with few channels per tap (a 3-channel stem has kc = 2 int16 pairs).

    Callers build the namedtuple themselves, `ConvPlan(*make_plan(...))`: Numba's parfor
    lowering fails with a NameError when a prange body uses a namedtuple that was
    returned by a function (numba 0.68), but accepts one constructed in the caller.
    """
    npix = n * oh * ow
    # `kc` counts int16 channel *pairs* for int8, so an int8 conv's `ops` is half its true operation
    # count: with `tiling.PARALLEL_MIN_OPS` (int8) half of `FP32_CONV_PARALLEL_MIN_OPS`, both precisions
    # go parallel at the same true size (500 k operations).
    ops = 2 * npix * kh * kw * kc * groups * npan * PANEL
    parallel = run_parallel(ops, npix, min_parallel_ops)
    ptile, nptiles, nchunks = plan_tiles(npix, groups, npan, ops, parallel, row_round)
    row_taps = groups == 1 and dw == 1
    ntaps, kc_tap = (kh, kw * kc) if row_taps else (kh * kw, kc)
    return (npix, oh, ow, sh, sw, padded_extent(h, oh, sh, pt, kh, dh), padded_extent(wd, ow, sw, pl, kw, dw),
            cp, icgp, oc // groups, oc, npan, kpad, kc_tap, ntaps, ptile, nptiles, nchunks, -(-npan // nchunks),
            parallel, row_round)


@njit(cache=True)
def plan_tap_offsets(plan, kh, kw, dh, dw):
    """`indirect.tap_offsets` for the plan's taps: one per kernel row when `make_plan` merged each row's taps."""
    return tap_offsets(kh, plan.ntaps // kh, dh, dw, plan.wp, plan.cp)


@njit(cache=True)
def task_bounds(task, plan):
    """(group, first pixel, pixel count, rows rounded up to the target's tile height (the pixel-offset and
    scratch rows a tail block may read or write, `microkernel._emit_kernel`), first panel, end panel).

    (Rounding every target to the largest tile height, 12, was measurably slower on AVX2 int8 ResNets
    with the same inner loop: benchmarks/results/ab_compare.md.)"""
    # tiles vary fastest: prange's static schedule hands each thread a run of consecutive tasks, and
    # a run then covers every tile of a few chunks rather than every chunk of one (possibly short) tile
    g = task // (plan.nptiles * plan.nchunks)
    t = task % plan.nptiles
    pan0 = (task // plan.nptiles) % plan.nchunks * plan.per_chunk
    pan1 = min(plan.npan, pan0 + plan.per_chunk)
    p0 = t * plan.ptile
    nrows = min(plan.ptile, plan.npix - p0)
    return g, p0, nrows, -(-nrows // plan.row_round) * plan.row_round, pan0, pan1


@njit(cache=True)
def ntasks(plan, groups):
    return groups * plan.nptiles * plan.nchunks
