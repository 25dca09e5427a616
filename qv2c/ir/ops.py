"""The op catalogue: every op name the IR knows, its operand count, attributes and
static shape rule.

Each op is declared once with `@op_def(...)` on its shape-inference function. The
verifier, the builder, the parser and the reference interpreter all read this
table, so adding an op means adding one entry here and one reference function in
`qv2c/ir/reference/`.

Conventions (all ops are NCHW, like ONNX):
- spatial attributes are per spatial axis: `strides=[sh, sw]`, `dilations=[dh, dw]`,
  `kernel=[kh, kw]`; `pads=[top, left, bottom, right]` (ONNX order: begins, ends).
- shape inference returns result types without quantization parameters; ops with
  integer results take their result types (with `quant`) from whoever builds them,
  and the verifier checks shape and dtype only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qv2c.errors import ShapeError
from qv2c.ir.types import TensorType

InferFn = Callable[[list[TensorType], dict[str, Any]], list[TensorType]]


@dataclass(frozen=True)
class OpDef:
    """Static description of one op kind."""

    name: str
    infer: InferFn
    min_operands: int
    max_operands: int | None
    #: attribute name -> Python type every op of this kind must carry
    attrs: dict[str, type] = field(default_factory=dict)
    #: attribute name -> default used by builders when the attribute is omitted
    defaults: dict[str, Any] = field(default_factory=dict)
    #: True for ops that only move or select data (int8 passes through unchanged)
    data_movement: bool = False
    doc: str = ""
    #: True when the result dtype is chosen by the builder (e.g. u8 or i8 for
    #: `qv.quantize`), so the verifier checks only the inferred shape
    free_result_dtype: bool = False


OPS: dict[str, OpDef] = {}


def op_def(name: str, operands: int | tuple[int, int | None], attrs=None, defaults=None, data_movement=False,
           free_result_dtype=False):
    """Register the decorated shape function as op `name`."""
    lo, hi = (operands, operands) if isinstance(operands, int) else operands

    def register(fn: InferFn) -> InferFn:
        OPS[name] = OpDef(name, fn, lo, hi, dict(attrs or {}), dict(defaults or {}), data_movement, fn.__doc__ or "",
                          free_result_dtype)
        return fn

    return register


def _fail(msg: str):
    raise ShapeError(msg)


# -- shape helpers ------------------------------------------------------------
def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        _fail(f"shapes {' and '.join(str(list(s)) for s in shapes)} do not broadcast")


def window_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a sliding window (conv/pool) along one axis, as ONNX defines it."""
    span = dilation * (kernel - 1) + 1
    free = size + pad_begin + pad_end - span
    if free < 0:
        _fail(f"window of {span} does not fit an input of {size} padded by {pad_begin}+{pad_end}")
    if ceil_mode:
        out = -(-free // stride) + 1
        # ONNX/PyTorch: the last window must start inside the input or left padding
        if (out - 1) * stride >= size + pad_begin:
            out -= 1
        return out
    return free // stride + 1


def _spatial_out(x: TensorType, kernel, a: dict[str, Any], ceil_mode=False) -> tuple[int, int]:
    sh, sw = a["strides"]
    pt, pl, pb, pr = a["pads"]
    dh, dw = a.get("dilations", (1, 1))
    return (
        window_output_size(x.shape[2], kernel[0], sh, pt, pb, dh, ceil_mode),
        window_output_size(x.shape[3], kernel[1], sw, pl, pr, dw, ceil_mode),
    )


def _same(t: TensorType) -> list[TensorType]:
    return [TensorType(t.shape, t.dtype)]


_WINDOW_ATTRS = {"strides": list, "pads": list, "dilations": list}
_WINDOW_DEFAULTS = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1]}


# -- fp32 compute ops ---------------------------------------------------------
@op_def("qv.conv", (2, 3), {**_WINDOW_ATTRS, "group": int}, {**_WINDOW_DEFAULTS, "group": 1})
def _conv(t, a):
    """2-D convolution: conv(x[N,C,H,W], w[M,C/group,kh,kw], b[M]?) -> [N,M,OH,OW]."""
    x, w = t[0], t[1]
    if x.rank != 4 or w.rank != 4:
        _fail(f"qv.conv needs 4-D input and weight, got {list(x.shape)} and {list(w.shape)}")
    g = a["group"]
    if x.shape[1] != w.shape[1] * g or w.shape[0] % g:
        _fail(f"qv.conv: input channels {x.shape[1]} do not match weight {list(w.shape)} with group={g}")
    if len(t) == 3 and t[2].shape != (w.shape[0],):
        _fail(f"qv.conv: bias shape {list(t[2].shape)} should be [{w.shape[0]}]")
    oh, ow = _spatial_out(x, w.shape[2:], a)
    return [TensorType((x.shape[0], w.shape[0], oh, ow), x.dtype)]


@op_def("qv.gemm", (2, 3), {"alpha": float, "beta": float, "trans_a": int, "trans_b": int},
        {"alpha": 1.0, "beta": 1.0, "trans_a": 0, "trans_b": 0})
def _gemm(t, a):
    """alpha * op(A) @ op(B) + beta * C, ONNX Gemm; op() transposes when trans_* = 1."""
    A, B = t[0], t[1]
    if A.rank != 2 or B.rank != 2:
        _fail(f"qv.gemm needs 2-D operands, got {list(A.shape)} and {list(B.shape)}")
    m, k = A.shape[::-1] if a["trans_a"] else A.shape
    k2, n = B.shape[::-1] if a["trans_b"] else B.shape
    if k != k2:
        _fail(f"qv.gemm: inner dimensions {k} and {k2} differ")
    if len(t) == 3:
        broadcast_shapes(t[2].shape, (m, n))
    return [TensorType((m, n), A.dtype)]


@op_def("qv.matmul", 2)
def _matmul(t, a):
    """NumPy matmul semantics (batched, broadcasting leading dims)."""
    A, B = t
    if A.rank < 1 or B.rank < 1:
        _fail("qv.matmul needs operands of rank >= 1")
    try:
        shape = np.matmul(np.zeros(A.shape, np.float32), np.zeros(B.shape, np.float32)).shape
    except ValueError:
        _fail(f"qv.matmul: shapes {list(A.shape)} and {list(B.shape)} do not multiply")
    return [TensorType(shape, A.dtype)]


@op_def("qv.batchnorm", 5, {"epsilon": float}, {"epsilon": 1e-5})
def _batchnorm(t, a):
    """Inference batch norm: scale * (x - mean) / sqrt(var + eps) + bias, per channel (axis 1)."""
    c = t[0].shape[1]
    for p in t[1:]:
        if p.shape != (c,):
            _fail(f"qv.batchnorm: parameter shape {list(p.shape)} should be [{c}]")
    return _same(t[0])


@op_def("qv.lrn", 1, {"size": int, "alpha": float, "beta": float, "bias": float},
        {"alpha": 1e-4, "beta": 0.75, "bias": 1.0})
def _lrn(t, a):
    """Local response normalisation across channels (ONNX LRN)."""
    return _same(t[0])


# -- elementwise --------------------------------------------------------------
for _name in ("qv.relu", "qv.sigmoid"):
    op_def(_name, 1)(lambda t, a: _same(t[0]))


@op_def("qv.clip", 1, {"min": float, "max": float}, {"min": -math.inf, "max": math.inf})
def _clip(t, a):
    """min(max(x, min), max); ReLU6 is clip(0, 6)."""
    return _same(t[0])


def _binary(t, a):
    """Elementwise with NumPy broadcasting."""
    if t[0].dtype != t[1].dtype:
        _fail(f"operand dtypes {t[0].dtype} and {t[1].dtype} differ")
    return [TensorType(broadcast_shapes(t[0].shape, t[1].shape), t[0].dtype)]


for _name in ("qv.add", "qv.sub", "qv.mul", "qv.div"):
    op_def(_name, 2)(_binary)


@op_def("qv.softmax", 1, {"axis": int}, {"axis": -1})
def _softmax(t, a):
    """Softmax along one axis (ONNX opset >= 13 semantics)."""
    if not -t[0].rank <= a["axis"] < t[0].rank:
        _fail(f"qv.softmax: axis {a['axis']} out of range for rank {t[0].rank}")
    return _same(t[0])


# -- pooling ------------------------------------------------------------------
@op_def("qv.maxpool", 1, {"kernel": list, **_WINDOW_ATTRS, "ceil_mode": int},
        {**_WINDOW_DEFAULTS, "ceil_mode": 0}, data_movement=True)
def _maxpool(t, a):
    """Max over kernel windows; padding never wins (treated as -inf)."""
    oh, ow = _spatial_out(t[0], a["kernel"], a, bool(a["ceil_mode"]))
    return [t[0].with_shape(t[0].shape[:2] + (oh, ow))]


@op_def("qv.avgpool", 1, {"kernel": list, "strides": list, "pads": list, "ceil_mode": int, "count_include_pad": int},
        {"strides": [1, 1], "pads": [0, 0, 0, 0], "ceil_mode": 0, "count_include_pad": 0})
def _avgpool(t, a):
    """Mean over kernel windows; `count_include_pad` says whether padding counts in the divisor."""
    oh, ow = _spatial_out(t[0], a["kernel"], a, bool(a["ceil_mode"]))
    return [TensorType(t[0].shape[:2] + (oh, ow), t[0].dtype)]


@op_def("qv.global_avgpool", 1)
def _global_avgpool(t, a):
    """Mean over all spatial positions: [N,C,H,W] -> [N,C,1,1]."""
    if t[0].rank < 3:
        _fail(f"qv.global_avgpool needs rank >= 3, got {list(t[0].shape)}")
    return [TensorType(t[0].shape[:2] + (1,) * (t[0].rank - 2), t[0].dtype)]


# -- data movement ------------------------------------------------------------
@op_def("qv.concat", (1, None), {"axis": int}, data_movement=True)
def _concat(t, a):
    """Join along `axis`; all other dims equal."""
    ax = a["axis"] % t[0].rank
    base = list(t[0].shape)
    for u in t[1:]:
        if u.rank != t[0].rank or any(d != e for i, (d, e) in enumerate(zip(u.shape, base)) if i != ax):
            _fail(f"qv.concat: shapes {[list(v.shape) for v in t]} differ off axis {ax}")
        base[ax] += u.shape[ax]
    return [t[0].with_shape(base)]


@op_def("qv.reshape", 1, {"shape": list}, data_movement=True)
def _reshape(t, a):
    """Same elements in a new static shape (no -1 or 0: the importer resolves them)."""
    shape = tuple(a["shape"])
    if any(d < 0 for d in shape) or int(np.prod(shape, dtype=np.int64)) != t[0].size:
        _fail(f"qv.reshape: cannot reshape {list(t[0].shape)} to {list(shape)}")
    return [t[0].with_shape(shape)]


@op_def("qv.transpose", 1, {"perm": list}, data_movement=True)
def _transpose(t, a):
    """Permute axes: result dim i is input dim perm[i]."""
    perm = a["perm"]
    if sorted(perm) != list(range(t[0].rank)):
        _fail(f"qv.transpose: perm {perm} is not a permutation of rank {t[0].rank}")
    return [t[0].with_shape(t[0].shape[p] for p in perm)]


@op_def("qv.permute_channels", 1, {"order": list}, data_movement=True)
def _permute_channels(t, a):
    """Reorder axis 1: result channel c is input channel order[c] (a channel shuffle, folded by
    `fold-channel-permutation` where a reader can take it)."""
    order = a["order"]
    if t[0].rank < 2 or sorted(order) != list(range(t[0].shape[1])):
        _fail(f"qv.permute_channels: order {order} is not a permutation of the {t[0].shape[1:2]} channels "
              f"of {list(t[0].shape)}")
    return [t[0].with_shape(t[0].shape)]


@op_def("qv.pad", 1, {"pads": list, "mode": str, "value": float}, {"mode": "constant", "value": 0.0})
def _pad(t, a):
    """Pad every axis: pads = [begin_0..begin_r-1, end_0..end_r-1] (ONNX order)."""
    r = t[0].rank
    p = a["pads"]
    if len(p) != 2 * r:
        _fail(f"qv.pad: {len(p)} pads for rank {r}")
    return [TensorType(tuple(d + p[i] + p[i + r] for i, d in enumerate(t[0].shape)), t[0].dtype)]


# -- quantization -------------------------------------------------------------
@op_def("qv.quantize", 1, free_result_dtype=True)
def _quantize(t, a):
    """f32 -> integer: clip(round_half_even(x / scale) + zero_point); params in the result type."""
    return [TensorType(t[0].shape, "u8")]


@op_def("qv.dequantize", 1)
def _dequantize(t, a):
    """integer -> f32: (q - zero_point) * scale, params from the operand type."""
    return [TensorType(t[0].shape, "f32")]


def result_types(name: str, operand_types: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Infer result types of op `name`; raises ShapeError when shapes do not fit."""
    return OPS[name].infer(operand_types, attrs)

import qv2c.ir.quant_ops  # noqa: F401,E402
