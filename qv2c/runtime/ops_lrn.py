"""LRN (local response normalisation across channels, ONNX `LRN`) in fp32, on [rows, C * inner] views.

The code generator passes the tensor as rows of `C * inner` elements: an NHWC activation is
[N*H*W, C] (inner = 1, channels contiguous), a rank-3 [N, C, L] tensor is [N, C*L] with
inner = L.  Within a row, channel c + k sits `k * inner` elements after channel c, so the
window sum over channels is a sum of shifted copies of the row's squares, each one
contiguous loop LLVM vectorises, whatever the layout.

Arithmetic, step for step as the reference (`qv2c/ir/reference/elementwise.py`, `lrn`):

    sq[c]  = x[c] * x[c]                                                    float32
    s[c]   = sq[c - lo] + ... + sq[c - lo + size - 1]   (lo = (size-1) // 2; taps outside
             the channels skipped: the reference adds zeros there, which changes no bit)
    d[c]   = bias + alpha_n * s[c]        alpha_n = float32(alpha / size), no FMA contraction
    y[c]   = x[c] / float32(d[c] ** beta)                                   float32 division

so every value before the power is bit-exact.  The power is evaluated in float64 and rounded
once to float32 (the correctly rounded float32 power, bar double-rounding ties), where the
reference's float32 `**` goes to NumPy's float32 power (libm `powf`, or a SIMD version of it),
which may be an ulp off; results therefore agree within a few float32 ulps, not bit for bit.
beta = 0.75, the value of AlexNet, ZFNet and GoogLeNet, is d**0.75 = sqrt(d) * sqrt(sqrt(d)):
square roots vectorise where a call to `pow` does not.

Compiled with NumPy's error model: a zero denominator gives inf or NaN as in the reference
(Python's model would raise instead, and its per-element check keeps the loops scalar).
`parallel` (chosen by the code generator from the tensor size) splits the rows into tasks,
each with its own scratch rows.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

#: at most this many parallel tasks (the work per row is uniform, so more only adds overhead)
MAX_TASKS = 16


@njit(cache=True, error_model="numpy")
def _lrn_rows(x, out, r0, r1, inner, size, lo, alpha_n, bias, beta, sq, acc):
    """Rows [r0, r1) of `lrn_rows`; `sq` and `acc` are scratch float32 rows of x's width."""
    n = x.shape[1]
    three_quarters = beta == 0.75
    for r in range(r0, r1):
        xr, yr = x[r], out[r]
        for j in range(n):
            v = xr[j]
            sq[j] = v * v
            acc[j] = np.float32(0.0)
        for k in range(size):
            d = (k - lo) * inner  # acc[j] += square of channel (j // inner) + k - lo, where there is one
            j0 = max(0, -d)
            j1 = max(j0, min(n, n - d))  # empty when the shift passes the row (a window wider than C)
            dst, src = acc[j0:j1], sq[j0 + d:j1 + d]  # slices: indices known >= 0, so the loop vectorises
            for j in range(dst.size):
                dst[j] += src[j]
        if three_quarters:
            for j in range(n):
                dd = np.float64(bias + alpha_n * acc[j])
                yr[j] = xr[j] / np.float32(math.sqrt(dd) * math.sqrt(math.sqrt(dd)))
        else:
            for j in range(n):
                yr[j] = xr[j] / np.float32(np.float64(bias + alpha_n * acc[j]) ** beta)


@njit(parallel=True, cache=True)
def lrn_rows(x, out, inner, size, alpha_n, bias, beta, parallel):
    """out = LRN(x) over the channels of each row of fp32 [rows, C * inner] views (see the module docstring).

    `alpha_n` is alpha / size, rounded to float32 by the caller as the reference rounds it."""
    rows, n = x.shape
    lo = (size - 1) // 2
    a32, b32, beta64 = np.float32(alpha_n), np.float32(bias), np.float64(beta)
    if parallel and rows > 1:
        tasks = min(rows, MAX_TASKS)
        for t in prange(tasks):
            _lrn_rows(x, out, t * rows // tasks, (t + 1) * rows // tasks, inner, size, lo, a32, b32, beta64,
                      np.empty(n, np.float32), np.empty(n, np.float32))
    else:
        _lrn_rows(x, out, 0, rows, inner, size, lo, a32, b32, beta64, np.empty(n, np.float32),
                  np.empty(n, np.float32))
