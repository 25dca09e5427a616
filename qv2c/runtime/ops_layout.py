"""Data-movement kernels: concat, channel permutation, strided copy (transpose, reshape across layouts, pad), fill.

Any dtype; int8 codes move unchanged.  The code generator expresses each op as
copies between views of planned buffers:

- concat: each operand, viewed as [outer, A_i * inner], is copied to columns
  [offset, offset + A_i * inner) of the output viewed as [outer, A * inner]; for a
  channel concat of NHWC tensors outer = N*H*W and every row is one pixel's channels.
- a channel permutation (`qv.permute_channels`, e.g. ShuffleNet's shuffle): `permute_channels`
  over [outer, C, inner] views, one gather of each row's channels;
- transpose, and a reshape whose input and output orders differ (NHWC <-> NCHW):
  `copy_nd(src_view, dst)`, where the source view is already permuted (and the
  destination may be a slice, for constant padding after `fill`).
- the model boundary: `nchw_to_nhwc` / `nhwc_to_nchw`, the transposes of
  `qv2c.runtime.kernels.layout` with a `parallel` switch, because a parallel region
  costs more than converting a CIFAR-sized input (measured ~60 us vs ~2 us).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _rows(x, out, col, start, stop):
    width = x.shape[1]
    for r in range(start, stop):
        src = x[r]
        dst = out[r, col:col + width]
        for j in range(width):
            dst[j] = src[j]


@njit(parallel=True, cache=True)
def concat_part(x, out, col, parallel):
    """out[:, col:col + x.shape[1]] = x for 2-D views [outer, width]."""
    rows = x.shape[0]
    if parallel:
        tasks = 8
        for t in prange(tasks):
            _rows(x, out, col, t * rows // tasks, (t + 1) * rows // tasks)
    else:
        _rows(x, out, col, 0, rows)


@njit(cache=True)
def _permute_part(x, out, order, r0, r1, c0, c1):
    """Rows [r0, r1) and result channels [c0, c1) of `permute_channels`."""
    inner = x.shape[2]
    for r in range(r0, r1):
        xs, os = x[r], out[r]
        if inner == 1:
            for j in range(c0, c1):
                os[j, 0] = xs[order[j], 0]
        else:
            for j in range(c0, c1):
                k = order[j]
                for i in range(inner):
                    os[j, i] = xs[k, i]


@njit(parallel=True, cache=True)
def permute_channels(x, out, order, parallel):
    """out[r, c, :] = x[r, order[c], :] for 3-D views [outer, C, inner] (an NHWC tensor is
    [N*H*W, C, 1]: each pixel's channels gathered in one pass).  In parallel the tasks split
    the rows, or the channels when there are fewer rows than tasks ([1, C, L])."""
    rows, c = x.shape[0], order.size
    if not parallel:
        _permute_part(x, out, order, 0, rows, 0, c)
        return
    tasks = 8
    if rows >= tasks:
        for t in prange(tasks):
            _permute_part(x, out, order, t * rows // tasks, (t + 1) * rows // tasks, 0, c)
    else:
        for t in prange(tasks):
            _permute_part(x, out, order, 0, rows, t * c // tasks, (t + 1) * c // tasks)


@njit(cache=True)
def copy_nd(src, dst):
    """dst[idx] = src[idx] for every index of dst (views of equal shape, any strides and rank)."""
    for idx in np.ndindex(dst.shape):
        dst[idx] = src[idx]


@njit(cache=True)
def copy_flat(src, dst):
    """dst[:] = src for flat views of equal size."""
    for i in range(dst.size):
        dst[i] = src[i]


@njit(cache=True)
def fill_flat(out, value):
    """out[:] = value (cast to out's dtype), for a flat view."""
    v = out.dtype.type(value)
    for i in range(out.size):
        out[i] = v


@njit(cache=True)
def _to_nhwc_rows(x, out, r0, r1):
    """Rows [r0, r1) (flat over N, H): each channel's row is read contiguously and stored with stride C,
    which for an image (C = 3) beats a channel-innermost loop of 3."""
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    for row in range(r0, r1):
        b, y = row // h, row % h
        dst = out[b, y].reshape(w * c)
        for ch in range(c):
            src = x[b, ch, y]
            for xo in range(w):
                dst[xo * c + ch] = src[xo]


@njit(parallel=True, cache=True)
def nchw_to_nhwc(x, out, parallel):
    """out[n, h, w, c] = x[n, c, h, w] (both C-contiguous)."""
    rows = x.shape[0] * x.shape[2]
    if parallel:
        tasks = min(rows, 16)
        for t in prange(tasks):
            _to_nhwc_rows(x, out, t * rows // tasks, (t + 1) * rows // tasks)
    else:
        _to_nhwc_rows(x, out, 0, rows)


@njit(cache=True)
def _to_nchw_planes(x, out, p0, p1):
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    for plane in range(p0, p1):
        b, ch = plane // c, plane % c
        for y in range(h):
            for xo in range(w):
                out[b, ch, y, xo] = x[b, y, xo, ch]


@njit(parallel=True, cache=True)
def nhwc_to_nchw(x, out, parallel):
    """out[n, c, h, w] = x[n, h, w, c] (out C-contiguous)."""
    planes = x.shape[0] * x.shape[3]
    if parallel:
        for plane in prange(planes):
            _to_nchw_planes(x, out, plane, plane + 1)
    else:
        _to_nchw_planes(x, out, 0, planes)
