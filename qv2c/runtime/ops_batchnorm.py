"""Inference batch norm (`qv.batchnorm`) in fp32 on [outer, C, inner] views, for the batch norms
`fold-batchnorm` leaves alone (parameters that are not constants) or a module that skipped it.

Step for step as the reference (`qv2c/ir/reference/elementwise.py`, `batchnorm`), all float32:

    k[c] = scale[c] / sqrt(var[c] + eps)          (IEEE sqrt and division: correctly rounded)
    y    = (x - mean[c]) * k[c] + bias[c]         (three roundings, no FMA contraction)

so the results are bit-exact.  The parameters are [C] arrays, constants or run-time buffers
alike; an NHWC activation is the view [N*H*W, C, 1], so the inner loop over channels is
contiguous.  `parallel` splits the outer rows into tasks.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from qv2c.runtime.ops_broadcast import MAX_TASKS, task_bounds


@njit(cache=True)
def _bn_rows(x, out, k, mean, bias, r0, r1):
    if x.shape[2] == 1:  # channels innermost (NHWC): one loop over them, vectorised
        for o in range(r0, r1):
            xo, yo = x[o, :, 0], out[o, :, 0]
            for ch in range(x.shape[1]):
                yo[ch] = (xo[ch] - mean[ch]) * k[ch] + bias[ch]
        return
    for o in range(r0, r1):
        for ch in range(x.shape[1]):
            kc, mc, bc = k[ch], mean[ch], bias[ch]
            for i in range(x.shape[2]):
                out[o, ch, i] = (x[o, ch, i] - mc) * kc + bc


@njit(parallel=True, cache=True)
def batchnorm3(x, out, scale, bias, mean, var, eps, parallel):
    """out = (x - mean) * (scale / sqrt(var + eps)) + bias along axis 1 of fp32 [outer, C, inner] views."""
    e = np.float32(eps)
    k = np.empty(x.shape[1], np.float32)
    for ch in range(x.shape[1]):
        k[ch] = scale[ch] / np.sqrt(var[ch] + e)
    rows = x.shape[0]
    if parallel and rows > 1:
        tasks = min(rows, MAX_TASKS)
        for t in prange(tasks):
            r0, r1 = task_bounds(t, tasks, rows)
            _bn_rows(x, out, k, mean, bias, r0, r1)
    else:
        _bn_rows(x, out, k, mean, bias, 0, rows)
