"""One task of a conv/GEMM driver (`conv_f32.conv_f32_core`, `conv_i8.conv_i8_core`): a pixel tile x a
chunk of 16-channel weight panels, each panel one call of the target's micro-kernel.

The micro-kernel is inlined into this function and is most of its code, so it is inlined once:
full panels write straight into `out`, and a partial last panel (OC not a multiple of 16) runs
the same call on 16-channel scratch (`_EdgePanel`): its residual rows and per-channel parameters
are copied in first, and the first `nc` channels of the result are copied out after.  (A second
call site, or a raw accumulator kernel with a NumPy-level epilogue, would double the code LLVM
has to optimise on every cold compile, for a panel that is at most one in each chunk.)  The
arrays the call reads and writes are chosen once per phase (full panels, then the partial one),
not per panel: choosing them per panel cost a few microseconds per conv call in reference counts
(benchmarks/hot_spots.py).

Epilogue (`ep`): one of the `epilogue_kind` tuples; fp32 drivers pass their bias as `mult` and
`fbias`, which only the int8 epilogues read.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from qv2c.runtime.kernels.convplan import task_bounds
from qv2c.runtime.kernels.epilogue_kind import panel_kernel
from qv2c.runtime.kernels.indirect import pixel_offsets
from qv2c.runtime.kernels.microkernel import PANEL

#: 16-channel scratch of a partial panel: output and residual rows, per-channel parameters
_EdgePanel = namedtuple("_EdgePanel", "out res bias mult fbias")


@njit(cache=True, inline="always")
def _edge_panel(nblk, outf, resf, bias, mult, fbias):
    """Scratch for `nblk` rows of one panel (zeroed, so the unused lanes compute on zeros)."""
    return _EdgePanel(np.zeros(nblk * PANEL, outf.dtype), np.zeros(nblk * PANEL, resf.dtype),
                      np.zeros(PANEL, bias.dtype), np.zeros(PANEL, mult.dtype), np.zeros(PANEL, fbias.dtype))


@njit(cache=True, inline="always")
def _copy_block(src, s_off, s_ld, dst, d_off, d_ld, rows, nc):
    """dst[d_off + r * d_ld + j] = src[s_off + r * s_ld + j] for r < rows, j < nc (elementwise loops:
    a slice assignment would compile a shape check and its error message into every driver)."""
    for r in range(rows):
        for j in range(nc):
            dst[d_off + r * d_ld + j] = src[s_off + r * s_ld + j]


@njit(cache=True)
def conv_task(task, plan, ep, xpf, tapoff, wf, bias, mult, fbias, resf, outf, tgt):
    """Task `task` of `plan` (`convplan.task_bounds`): every panel of its chunk over its pixel tile."""
    g, p0, nrows, nblk, pan0, pan1 = task_bounds(task, plan)
    pix = np.empty(nblk, np.int64)
    pixel_offsets(p0, nrows, plan.oh, plan.ow, plan.sh, plan.sw, plan.hp, plan.wp, plan.cp, g * plan.icgp, pix)
    oc = plan.oc
    # full panels write `out` in place; a partial last panel (at most one per task) runs on scratch.
    # One kernel call site for both, with the arrays chosen once per phase, not per panel.
    nc_last = plan.ocg - (pan1 - 1) * PANEL
    full_end = pan1 - 1 if nc_last < PANEL else pan1
    for phase in range(2 if full_end < pan1 else 1):
        if phase == 0:
            first, last = pan0, full_end
            dst, ld, res_src, ch_b, ch_m, ch_f = outf, oc, resf, bias, mult, fbias
        else:
            first, last = full_end, pan1
            c0 = g * plan.ocg + full_end * PANEL
            edge = _edge_panel(nblk, outf, resf, bias, mult, fbias)
            _copy_block(bias, c0, 0, edge.bias, 0, 0, 1, nc_last)
            _copy_block(mult, c0, 0, edge.mult, 0, 0, 1, nc_last)
            _copy_block(fbias, c0, 0, edge.fbias, 0, 0, 1, nc_last)
            if ep.has_res:
                _copy_block(resf, p0 * oc + c0, oc, edge.res, 0, PANEL, nrows, nc_last)
            dst, ld, res_src, ch_b, ch_m, ch_f = edge.out, PANEL, edge.res, edge.bias, edge.mult, edge.fbias
        for pan in range(first, last):
            c0 = g * plan.ocg + pan * PANEL
            b_off = (g * plan.npan + pan) * plan.kpad * PANEL
            d_off, ch0 = (p0 * oc + c0, c0) if phase == 0 else (0, 0)
            panel_kernel(tgt, ep, nrows, xpf, pix, tapoff, plan.ntaps, plan.kc, wf, b_off, dst, d_off, ld,
                         ch_b, ch_m, ch_f, res_src, ch0)
        if phase == 1:
            _copy_block(dst, 0, PANEL, outf, p0 * oc + g * plan.ocg + full_end * PANEL, oc, nrows, nc_last)
