"""Reference data-movement ops: `qv.concat`, `qv.reshape`, `qv.transpose`, `qv.permute_channels`, `qv.pad`.

They only move elements, so they work on any dtype and pass int8 codes through
unchanged; results are C-contiguous so later kernels can rely on the layout.
"""

from __future__ import annotations

import numpy as np

from qv2c.errors import VerificationError
from qv2c.ir.reference import reference
from qv2c.ir.reference.elementwise import as_result


@reference("qv.concat")
def concat(op, *xs):
    """Join the operands along `axis` (negative counts from the end)."""
    return as_result(op, np.concatenate(xs, axis=op.attrs["axis"]))


@reference("qv.reshape")
def reshape(op, x):
    """The same elements, in C order, in the static shape `shape`."""
    return as_result(op, np.reshape(x, op.attrs["shape"]))


@reference("qv.transpose")
def transpose(op, x):
    """Result dim i is input dim perm[i]."""
    return as_result(op, np.ascontiguousarray(np.transpose(x, op.attrs["perm"])))


@reference("qv.permute_channels")
def permute_channels(op, x):
    """Result channel c (axis 1) is input channel order[c]."""
    return as_result(op, np.ascontiguousarray(np.take(x, op.attrs["order"], axis=1)))


#: ONNX Pad mode -> np.pad mode (the two agree on what reflect/edge/wrap mean)
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def _pad_code(op, dtype: np.dtype) -> float | int:
    """The element to pad with: `value` itself, or on a quantized tensor the code that means it."""
    value = op.attrs["value"]
    q = op.operands[0].type.quant
    if q is None:
        return value
    if q.per_channel:
        raise VerificationError(f"{op.location}: constant padding of a per-channel quantized tensor is not defined; "
                                "dequantize first")
    info = np.iinfo(dtype)
    return int(np.clip(np.rint(value / q.scale[0]) + q.zero_point[0], info.min, info.max))


@reference("qv.pad")
def pad(op, x):
    """ONNX Pad: pads = [begin_0..begin_{r-1}, end_0..end_{r-1}]; a negative pad crops."""
    mode = op.attrs["mode"]
    if mode not in _PAD_MODES:
        raise VerificationError(f"{op.location}: unknown pad mode {mode!r}; expected one of {sorted(_PAD_MODES)}")
    r = x.ndim
    p = op.attrs["pads"]
    begins, ends = p[:r], p[r:]
    x = x[tuple(slice(max(0, -b), x.shape[i] - max(0, -e)) for i, (b, e) in enumerate(zip(begins, ends)))]
    widths = [(max(0, b), max(0, e)) for b, e in zip(begins, ends)]
    if mode == "constant":
        y = np.pad(x, widths, mode="constant", constant_values=_pad_code(op, x.dtype))
    else:
        y = np.pad(x, widths, mode=_PAD_MODES[mode])
    return as_result(op, y)
