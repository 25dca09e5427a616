"""One task of a conv/GEMM driver (`conv_f32.conv_f32_core`, `conv_i8.conv_i8_core`): a pixel tile x a
chunk of 16-channel weight panels, each panel one call of the target's micro-kernel.

The micro-kernel is inlined into this function and is most of its code, so it is inlined once:
a full panel writes straight into `out`, and a partial last panel (OC not a multiple of 16) runs
the same call on 16-channel scratch (`_EdgePanel`): its residual rows and per-channel parameters
are copied in first, and the first `nc` channels of the result are copied out after.  (A second
call site, or a raw accumulator kernel with a NumPy-level epilogue, would double the code LLVM
has to optimise on every cold compile, for a panel that is at most one in each chunk.)

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
    edge = _edge_panel(0, outf, resf, bias, mult, fbias)
    for pan in range(pan0, pan1):
        c0 = g * plan.ocg + pan * PANEL
        nc = min(PANEL, plan.ocg - pan * PANEL)
        b_off = (g * plan.npan + pan) * plan.kpad * PANEL
        dst, d_off, ld, res_src, ch_b, ch_m, ch_f, ch0 = outf, p0 * oc + c0, oc, resf, bias, mult, fbias, c0
        if nc < PANEL:
            if edge.out.size < nblk * PANEL:
                edge = _edge_panel(nblk, outf, resf, bias, mult, fbias)
            _copy_block(bias, c0, 0, edge.bias, 0, 0, 1, nc)
            _copy_block(mult, c0, 0, edge.mult, 0, 0, 1, nc)
            _copy_block(fbias, c0, 0, edge.fbias, 0, 0, 1, nc)
            if ep.has_res:
                _copy_block(resf, p0 * oc + c0, oc, edge.res, 0, PANEL, nrows, nc)
            dst, d_off, ld, res_src, ch_b, ch_m, ch_f, ch0 = edge.out, 0, PANEL, edge.res, edge.bias, edge.mult, \
                edge.fbias, 0
        panel_kernel(tgt, ep, nrows, xpf, pix, tapoff, plan.ntaps, plan.kc, wf, b_off, dst, d_off, ld,
                     ch_b, ch_m, ch_f, res_src, ch0)
        if nc < PANEL:
            _copy_block(edge.out, 0, PANEL, outf, p0 * oc + c0, oc, nrows, nc)
