"""Reference convolution and matrix products: `qv.conv`, `qv.gemm`, `qv.matmul`.

This file also holds the sliding-window helpers that every windowed reference
shares (conv and pooling here, the quantized conv built on top of them later).
They are dtype-generic: nothing in them assumes floats.

- `pad_for_windows` pads the spatial axes of an NCHW array with a chosen value
  (0.0 for fp32 conv, -inf for max-pool, the input zero point for int8 conv),
  including the extra tail a `ceil_mode` pool needs, and returns the output size.
- `window_slices` yields the kh*kw strided slices `xp[:, :, i*dh + sh*oh, j*dw + sw*ow]`;
  summing or maxing them is the cheap form of any per-channel window op
  (depthwise conv, pooling): kh*kw whole-array operations, no Python loop over channels.
- `im2col` lays every window out as a GEMM column, grouped, so a convolution is one
  batched `np.matmul` (`[g, M/g, K] @ [N, g, K, OH*OW]`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from qv2c.ir.ops import window_output_size
from qv2c.ir.reference import reference
from qv2c.ir.reference.elementwise import as_result, require_real

#: Upper bound on the bytes of one im2col buffer; bigger batches are convolved in chunks
#: so that calibration over many 224x224 images does not allocate gigabytes at once.
IM2COL_BUDGET_BYTES = 64 << 20


def pad_for_windows(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int] = (1, 1),
    ceil_mode: bool = False,
    value=0,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad `x` [N,C,H,W] so that every output window lies inside it.

    Returns `(xp, (oh, ow))`. `pads` is `[top, left, bottom, right]`; with `ceil_mode`
    the last window may run past the bottom/right padding, and the array is padded
    further (with the same `value`) so slicing never runs off the end. Callers that
    must not count that tail (avg-pool divisors) account for it themselves.
    """
    h, w = x.shape[2], x.shape[3]
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dilations
    pt, pl, pb, pr = pads
    oh = window_output_size(h, kh, sh, pt, pb, dh, ceil_mode)
    ow = window_output_size(w, kw, sw, pl, pr, dw, ceil_mode)
    tail_h = max(0, (oh - 1) * sh + dh * (kh - 1) + 1 - (h + pt + pb))
    tail_w = max(0, (ow - 1) * sw + dw * (kw - 1) + 1 - (w + pl + pr))
    widths = ((0, 0), (0, 0), (pt, pb + tail_h), (pl, pr + tail_w))
    if any(a or b for a, b in widths):
        x = np.pad(x, widths, mode="constant", constant_values=value)
    return x, (oh, ow)


def window_slices(
    xp: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int], out_hw: tuple[int, int]
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield `(i, j, view)` for each kernel tap: `view[n, c, oh, ow] = xp[n, c, i*dh + oh*sh, j*dw + ow*sw]`.

    `xp` is already padded (see `pad_for_windows`); views share its memory.
    """
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilations, out_hw
    for i in range(kh):
        for j in range(kw):
            r, c = i * dh, j * dw
            yield i, j, xp[:, :, r : r + (oh - 1) * sh + 1 : sh, c : c + (ow - 1) * sw + 1 : sw]


def im2col(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int] = (1, 1),
    pads: Sequence[int] = (0, 0, 0, 0),
    dilations: Sequence[int] = (1, 1),
    group: int = 1,
    pad_value=0,
) -> tuple[np.ndarray, tuple[int, int]]:
    """GEMM columns of a convolution's input windows, for any dtype.

    Returns `(cols, (oh, ow))` with `cols[n, g, (c, i, j), oh*OW + ow]` =
    `xpad[n, g*C/group + c, i*dh + oh*sh, j*dw + ow*sw]`, shape `[N, group, C/group*kh*kw, OH*OW]`
    and the dtype of `x`. Rows are ordered (c, i, j), which is the order of
    `w.reshape(group, M/group, C/group*kh*kw)`, so a convolution is
    `w.reshape(group, M/group, -1) @ cols`. An int8/uint8 conv pads with its input
    zero point (`pad_value`) and casts the columns to int32 before the matmul.
    """
    n, c = x.shape[:2]
    kh, kw = kernel
    xp, (oh, ow) = pad_for_windows(x, kernel, strides, pads, dilations, value=pad_value)
    s_n, s_c, s_h, s_w = xp.strides
    windows = as_strided(
        xp,
        shape=(n, c, kh, kw, oh, ow),
        strides=(s_n, s_c, s_h * dilations[0], s_w * dilations[1], s_h * strides[0], s_w * strides[1]),
        writeable=False,
    )
    return windows.reshape(n, group, (c // group) * kh * kw, oh * ow), (oh, ow)


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    group: int,
) -> np.ndarray:
    """ONNX Conv: x [N,C,H,W], w [M,C/group,kh,kw], b [M] -> [N,M,OH,OW], zero padding.

    Works for any numeric dtype and returns `np.result_type(x, w)`; integer-valued float
    arrays give exact integer sums while they stay below the float's exact-integer range
    (the quantized reference relies on this for BLAS-speed int8 accumulation).
    """
    if w.shape[1] == 1 and group > 1:
        y = _depthwise(x, w, strides, pads, dilations)
    else:
        y = _im2col_conv(x, w, strides, pads, dilations, group)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def _im2col_conv(x, w, strides, pads, dilations, group) -> np.ndarray:
    """One batched matmul (all groups at once) per chunk of images."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    oh = window_output_size(h, kh, strides[0], pads[0], pads[2], dilations[0])
    ow = window_output_size(wd, kw, strides[1], pads[1], pads[3], dilations[1])
    chunk = max(1, IM2COL_BUDGET_BYTES // (c * kh * kw * oh * ow * x.itemsize))
    wg = w.reshape(group, m // group, cg * kh * kw)
    y = np.empty((n, m, oh, ow), dtype=np.result_type(x, w))
    for start in range(0, n, chunk):
        cols, _ = im2col(x[start : start + chunk], (kh, kw), strides, pads, dilations, group)
        y[start : start + chunk] = np.matmul(wg, cols).reshape(-1, m, oh, ow)
    return y


def _depthwise(x, w, strides, pads, dilations) -> np.ndarray:
    """Grouped conv with one input channel per group (depthwise, optional channel multiplier).

    Output channel `m` reads input channel `m // (M/C)`; the result is a sum over the
    kh*kw taps of a shifted input slice times a per-channel weight.
    """
    m, _, kh, kw = w.shape
    mult = m // x.shape[1]
    xp, out_hw = pad_for_windows(x, (kh, kw), strides, pads, dilations)
    if mult > 1:
        xp = np.repeat(xp, mult, axis=1)
    dtype = np.result_type(x, w)
    y = np.zeros((x.shape[0], m) + out_hw, dtype=dtype)
    tmp = np.empty_like(y)
    for i, j, view in window_slices(xp, (kh, kw), strides, dilations, out_hw):
        np.multiply(view, w[:, 0, i, j].reshape(1, m, 1, 1), out=tmp)
        y += tmp
    return y


@reference("qv.conv")
def conv(op, x, w, b=None):
    """2-D convolution, ONNX Conv semantics (cross-correlation, zero padding)."""
    require_real(op)
    a = op.attrs
    y = conv2d(x, w, b, a["strides"], a["pads"], a["dilations"], a["group"])
    return as_result(op, y)


@reference("qv.gemm")
def gemm(op, a, b, c=None):
    """ONNX Gemm: alpha * op(A) @ op(B) + beta * C, computed in the operands' float type."""
    require_real(op)
    at = op.attrs
    a = a.T if at["trans_a"] else a
    b = b.T if at["trans_b"] else b
    dtype = op.result.type.numpy_dtype
    y = np.matmul(a, b)
    if at["alpha"] != 1.0:
        y *= dtype.type(at["alpha"])
    if c is not None:
        y = y + dtype.type(at["beta"]) * c
    return as_result(op, y)


@reference("qv.matmul")
def matmul(op, a, b):
    """NumPy / ONNX MatMul (batched, broadcasting leading dims, 1-D operands promoted)."""
    require_real(op)
    return as_result(op, np.matmul(a, b))
