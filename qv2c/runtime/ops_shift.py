"""Standalone integer-only requantization (`qv.requantize` with requant="shift"), u8/i8 flat views.

With power-of-2 scales the multiplier s_x / s_y is 2**-shift, and the reference
(`quant_math.requantize_shift`) requantizes in integers, ties rounded half up:

    y = clamp(((int64(x - zx) + 2**(shift-1)) >> shift) << -shift, qlo - zy, qhi - zy) + zy

which is what the int8 conv epilogues do with their per-channel shifts; this kernel calls the same
function (`kernels.epilogue.requantized`, whose integer specialisation is that formula), so the
standalone op and the fused epilogue cannot drift apart.  Exact.  Serial: no pass builds this op
today (realize-quant's requantizes of concat operands are "float" even with power-of-2 scales),
so it only has to be right.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qv2c.runtime.kernels.epilogue import requantized


@njit(cache=True)
def requantize_shift_flat(x, out, zx, shift, zy, qlo, qhi):
    """Integer to integer by a power of two: requantize_shift(x - zx, shift) + zy into [qlo, qhi]."""
    z, s = np.int32(zx), np.int32(shift)
    tlo, thi, zf = np.float32(qlo - zy), np.float32(qhi - zy), np.float32(zy)
    for i in range(x.size):
        out[i] = requantized(np.int32(x[i]) - z, s, tlo, thi) + zf
