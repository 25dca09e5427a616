"""Reference pooling: `qv.maxpool`, `qv.avgpool`, `qv.global_avgpool` (ONNX semantics).

Window ops are a reduction over the kh*kw strided slices of the padded input
(`window_slices`), so they cost kh*kw whole-array operations whatever the channel count.

Max-pool pads with the dtype's lowest finite value (-FLT_MAX, or e.g. 0 for uint8 codes),
which is what onnxruntime starts each window from: padding never beats an input element
that is > lowest, a window lying wholly in padding (possible with dilation) gives lowest
rather than -inf, and because max commutes with the monotone affine map, int8 passes
through exactly. Avg-pool sums with zero padding and divides each output
by the number of window elements that lie inside the input (`count_include_pad=0`) or
inside the padded input (`count_include_pad=1`); with `ceil_mode` the last window may run
past the padded input, and that overhang never counts (as onnxruntime does).
"""

from __future__ import annotations

import numpy as np

from qv2c.ir.reference import reference
from qv2c.ir.reference.conv import pad_for_windows, window_slices
from qv2c.ir.reference.elementwise import as_result, require_real


@reference("qv.maxpool")
def maxpool(op, x):
    """Max over each window; padding is the lowest finite value of the dtype (see above)."""
    a = op.attrs
    lowest = (np.finfo if np.issubdtype(x.dtype, np.floating) else np.iinfo)(x.dtype).min
    kernel, strides, dilations = a["kernel"], a["strides"], a["dilations"]
    xp, out_hw = pad_for_windows(x, kernel, strides, a["pads"], dilations, bool(a["ceil_mode"]), lowest)
    y = None
    for _, _, view in window_slices(xp, kernel, strides, dilations, out_hw):
        y = view.copy() if y is None else np.maximum(y, view, out=y)
    return as_result(op, y)


def window_counts(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, out: int,
                  count_pad: bool) -> np.ndarray:
    """How many elements of each of `out` windows along one axis count in an average.

    Window k covers padded positions [k*stride, k*stride + kernel); the counted range is
    the input, [pad_begin, pad_begin + size), or with `count_pad` the whole padded input,
    [0, pad_begin + size + pad_end).
    """
    lo, hi = (0, pad_begin + size + pad_end) if count_pad else (pad_begin, pad_begin + size)
    start = np.arange(out) * stride
    return np.clip(np.minimum(start + kernel, hi) - np.maximum(start, lo), 0, None)


@reference("qv.avgpool")
def avgpool(op, x):
    """Window sum divided by the counted window size (see the module docstring)."""
    require_real(op)
    a = op.attrs
    kernel, strides, (pt, pl, pb, pr) = a["kernel"], a["strides"], a["pads"]
    xp, (oh, ow) = pad_for_windows(x, kernel, strides, a["pads"], (1, 1), bool(a["ceil_mode"]), 0)
    total = np.zeros(x.shape[:2] + (oh, ow), dtype=x.dtype)
    for _, _, view in window_slices(xp, kernel, strides, (1, 1), (oh, ow)):
        total += view
    count_pad = bool(a["count_include_pad"])
    rows = window_counts(x.shape[2], kernel[0], strides[0], pt, pb, oh, count_pad)
    cols = window_counts(x.shape[3], kernel[1], strides[1], pl, pr, ow, count_pad)
    total /= np.outer(rows, cols).astype(x.dtype)
    return as_result(op, total)


@reference("qv.global_avgpool")
def global_avgpool(op, x):
    """Mean over every spatial axis, keeping them as size-1 dims."""
    require_real(op)
    y = np.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True, dtype=x.dtype)
    return as_result(op, y)
