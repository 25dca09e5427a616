"""NCHW <-> NHWC conversion at the model boundary.

The kernels keep activations NHWC between layers (see `conv_f32.py` for why); a model's
inputs and outputs are NCHW (ONNX).  These parallel copies convert once at the boundary.
They are plain transposes: the destination is written contiguously and the source is
read with a stride, one image plane (or pixel row) per task.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def nchw_to_nhwc_into(x, out):
    """out[n, h, w, c] = x[n, c, h, w]; `out` preallocated, C-contiguous."""
    n, c, h, w = x.shape
    for row in prange(n * h):
        b = row // h
        y = row % h
        for xo in range(w):
            for ch in range(c):
                out[b, y, xo, ch] = x[b, ch, y, xo]


@njit(parallel=True, cache=True)
def nhwc_to_nchw_into(x, out):
    """out[n, c, h, w] = x[n, h, w, c]; `out` preallocated, C-contiguous."""
    n, h, w, c = x.shape
    for plane in prange(n * c):
        b = plane // c
        ch = plane % c
        for y in range(h):
            for xo in range(w):
                out[b, ch, y, xo] = x[b, y, xo, ch]


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    """A new C-contiguous NHWC copy of NCHW `x`."""
    out = np.empty((x.shape[0], x.shape[2], x.shape[3], x.shape[1]), x.dtype)
    nchw_to_nhwc_into(x, out)
    return out


def nhwc_to_nchw(x: np.ndarray) -> np.ndarray:
    """A new C-contiguous NCHW copy of NHWC `x`."""
    out = np.empty((x.shape[0], x.shape[3], x.shape[1], x.shape[2]), x.dtype)
    nhwc_to_nchw_into(x, out)
    return out
