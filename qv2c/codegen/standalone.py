"""Lowering of the ops outside conv/GEMM groups: pooling, data movement, quantization, elementwise.

`LOWERERS[op.name](lowerer, op)` appends the op's kernel calls to the program being
built by `lower.py` (through its `operand`, `result_buf`, `view`, `flat`, `const`,
`emit` and `parallel` methods) and returns True, or returns False when no kernel fits
this case (a reflect pad, a broadcasting qadd, a "shift" requantize...), and the op
then runs through its NumPy reference.  Kernels live in `qv2c/runtime/ops_*.py`.

Layout (see `layout.py`): rank-4 activations are NHWC, so an axis attribute is mapped
to its physical position, a reshape is a free view when the element orders agree and
a copy through NCHW otherwise, and a transpose composes its permutation with the
layout's.  Static parameters (integer bounds, per-position multipliers of an average
pool, pad codes) are computed here with the reference's own helpers, so the kernels
only repeat the reference's arithmetic.

    %p = qv.maxpool(%r) {kernel = [3, 3], strides = [2, 2], ...} : u8[1,64,55,55]{...}
    ->  maxpool_nhwc(b[4], b[5], 3, 3, 2, 2, 0, 0, 1, 1, 0, False, True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from qv2c.codegen.layout import compose_perms, nhwc_matches_nchw, physical_axis, physical_shape
from qv2c.ir.core import Op, Value
from qv2c.ir.quant_math import activation_bounds, qrange, quantize, requantize_multiplier
from qv2c.ir.reference.layout import _pad_code
from qv2c.ir.reference.pooling import window_counts
from qv2c.ir.types import DTYPES
from qv2c.runtime.program import RUNTIME as _R
from qv2c.runtime.program import TO_NCHW, TO_NHWC

if TYPE_CHECKING:
    from qv2c.codegen.lower import _Lowerer

_INF = float("inf")


def quant_of(v: Value) -> tuple[float, int]:
    """(scale, zero point) of a per-tensor quantized value."""
    q = v.type.quant
    return q.scale[0], q.zero_point[0]


def _maxpool(lw: _Lowerer, op: Op) -> bool:
    if op.result.type.rank != 4:
        return False
    a = op.attrs
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    dt = DTYPES[op.result.type.dtype]
    lowest = float(np.finfo(dt).min) if dt.kind == "f" else int(np.iinfo(dt).min)
    (kh, kw), (sh, sw), (pt, pl, _, _), (dh, dw) = a["kernel"], a["strides"], a["pads"], a["dilations"]
    lw.emit(_R + "ops_pool:maxpool_nhwc", [("x", x), ("out", out), ("kh", kh), ("kw", kw), ("sh", sh), ("sw", sw),
                                           ("pt", pt), ("pl", pl), ("dh", dh), ("dw", dw), ("lowest", lowest),
                                           ("separable", dt.kind == "f"),
                                           ("parallel", lw.parallel(op.result.type.size * kh * kw))], [out])
    return True


def _window_counts(op: Op) -> np.ndarray:
    """The counted window size of each output position [OH, OW] (as `reference/pooling.py`)."""
    a = op.attrs
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = a["kernel"], a["strides"], a["pads"]
    _, _, h, w = op.operands[0].type.shape
    _, _, oh, ow = op.result.type.shape
    count_pad = bool(a["count_include_pad"])
    return np.outer(window_counts(h, kh, sh, pt, pb, oh, count_pad), window_counts(w, kw, sw, pl, pr, ow, count_pad))


def _avgpool(lw: _Lowerer, op: Op) -> bool:
    x_t = op.operands[0].type
    if x_t.rank != 4 or x_t.dtype != "f32" or x_t.quant is not None:
        return False
    a = op.attrs
    (kh, kw), (sh, sw), (pt, pl, _, _) = a["kernel"], a["strides"], a["pads"]
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    counts = lw.const(_window_counts(op).astype(np.float32), f"{lw.name(op.result)}.counts")
    lw.emit(_R + "ops_pool:avgpool_nhwc", [("x", x), ("out", out), ("kh", kh), ("kw", kw), ("sh", sh), ("sw", sw),
                                           ("pt", pt), ("pl", pl), ("counts", counts),
                                           ("parallel", lw.parallel(op.result.type.size * kh * kw))], [out])
    return True


def _qavgpool(lw: _Lowerer, op: Op) -> bool:
    a = op.attrs
    (kh, kw), (sh, sw), (pt, pl, _, _) = a["kernel"], a["strides"], a["pads"]
    sx, zx = quant_of(op.operands[0])
    sy, zy = quant_of(op.result)
    qlo, qhi = qrange(op.result.type.dtype)
    mult = requantize_multiplier(sx, 1.0, sy, np.maximum(_window_counts(op), 1))
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    lw.emit(_R + "ops_pool:qavgpool_nhwc", [("x", x), ("out", out), ("zx", zx), ("kh", kh), ("kw", kw), ("sh", sh),
                                            ("sw", sw), ("pt", pt), ("pl", pl),
                                            ("mult", lw.const(mult, f"{lw.name(op.result)}.mult")), ("zy", zy),
                                            ("qlo", qlo), ("qhi", qhi),
                                            ("parallel", lw.parallel(op.result.type.size * kh * kw))], [out])
    return True


def _global_avgpool(lw: _Lowerer, op: Op) -> bool:
    x_t = op.operands[0].type
    if x_t.rank != 4 or x_t.dtype != "f32" or x_t.quant is not None:
        return False
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    lw.emit(_R + "ops_pool:global_avgpool_nhwc", [("x", x), ("out", out)], [out])
    return True


def _qglobal_avgpool(lw: _Lowerer, op: Op) -> bool:
    x_t = op.operands[0].type
    if x_t.rank != 4:
        return False
    sx, zx = quant_of(op.operands[0])
    sy, zy = quant_of(op.result)
    qlo, qhi = qrange(op.result.type.dtype)
    mult = float(requantize_multiplier(sx, 1.0, sy, x_t.shape[2] * x_t.shape[3]))
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    lw.emit(_R + "ops_pool:qglobal_avgpool_nhwc", [("x", x), ("out", out), ("zx", zx), ("mult", mult), ("zy", zy),
                                                   ("qlo", qlo), ("qhi", qhi)], [out])
    return True


def _concat(lw: _Lowerer, op: Op) -> bool:
    t = op.result.type
    phys = physical_shape(t.shape)
    ax = physical_axis(op.attrs["axis"], t.rank)
    outer, inner = int(np.prod(phys[:ax], dtype=np.int64)), int(np.prod(phys[ax + 1:], dtype=np.int64))
    out = lw.result_buf(op)
    out2 = lw.view(out, ("reshape", (outer, phys[ax] * inner)))
    col = 0
    for v in op.operands:
        width = physical_shape(v.type.shape)[ax] * inner
        x2 = lw.view(lw.operand(v), ("reshape", (outer, width)))
        lw.emit(_R + "ops_layout:concat_part", [("x", x2), ("out", out2), ("col", col),
                                                ("parallel", lw.parallel(outer * width))], [out2])
        col += width
    return True


def _reshape(lw: _Lowerer, op: Op) -> bool:
    x_t, y_t = op.operands[0].type, op.result.type
    x = lw.operand(op.operands[0])
    if not nhwc_matches_nchw(x_t.shape):  # bring the elements into NCHW order first
        tmp = lw.new_buf(x_t.shape, x_t.dtype, f"{lw.name(op.result)}.nchw", "nchw")
        lw.emit(_R + "ops_layout:copy_nd", [("src", lw.view(x, ("transpose", TO_NCHW))), ("dst", tmp)], [tmp])
        x = tmp
    if nhwc_matches_nchw(y_t.shape):
        lw.where[id(op.result)] = lw.view(x, ("reshape", physical_shape(y_t.shape)))
        return True
    src = lw.view(x, ("reshape", y_t.shape), ("transpose", TO_NHWC))
    out = lw.result_buf(op)
    lw.emit(_R + "ops_layout:copy_nd", [("src", src), ("dst", out)], [out])
    return True


def _transpose(lw: _Lowerer, op: Op) -> bool:
    x_t, y_t = op.operands[0].type, op.result.type
    perms = ([TO_NCHW] if x_t.rank == 4 else []) + [tuple(op.attrs["perm"])] + ([TO_NHWC] if y_t.rank == 4 else [])
    perm = compose_perms(*perms)
    x = lw.operand(op.operands[0])
    if perm == tuple(range(len(perm))):
        lw.where[id(op.result)] = x
        return True
    out = lw.result_buf(op)
    lw.emit(_R + "ops_layout:copy_nd", [("src", lw.view(x, ("transpose", perm))), ("dst", out)], [out])
    return True


def _pad(lw: _Lowerer, op: Op) -> bool:
    """Constant padding, filled with `value` (on a quantized tensor its code: the zero point for
    value 0, so an int8 pad stays int8).  A pad of the two spatial axes of an NHWC tensor (what
    `fold-pad` leaves, e.g. before a non-foldable reader) is one parallel pass of the conv
    kernels' `pad_nhwc`, row by row; any other pad is a fill, then a strided copy of the kept box."""
    if op.attrs["mode"] != "constant":
        return False
    x_t, y_t = op.operands[0].type, op.result.type
    r = x_t.rank
    pads = op.attrs["pads"]
    code = _pad_code(op, DTYPES[x_t.dtype])
    fill = float(code) if DTYPES[y_t.dtype].kind == "f" else int(code)
    x = lw.operand(op.operands[0])
    out = lw.result_buf(op)
    if r == 4 and min(pads) >= 0 and not any(pads[i] for i in (0, 1, 4, 5)):
        lw.emit(_R + "kernels.indirect:pad_nhwc", [("x", x), ("pt", pads[2]), ("pl", pads[3]), ("xp", out),
                                                   ("parallel", lw.parallel(y_t.size)), ("fill", fill)], [out])
        return True
    order = TO_NHWC if r == 4 else tuple(range(r))
    begins, ends = [pads[i] for i in order], [pads[i + r] for i in order]
    xs, ys = physical_shape(x_t.shape), physical_shape(y_t.shape)
    src_box = tuple((max(0, -b), xs[i] - max(0, -e)) for i, (b, e) in enumerate(zip(begins, ends)))
    dst_box = tuple((max(0, b), ys[i] - max(0, e)) for i, (b, e) in enumerate(zip(begins, ends)))
    lw.emit(_R + "ops_layout:fill_flat", [("out", lw.flat(out)), ("value", fill)], [lw.flat(out)])
    if y_t.size and all(e > s for s, e in src_box):
        dst = lw.view(out, ("slice", dst_box))
        lw.emit(_R + "ops_layout:copy_nd", [("src", lw.view(x, ("slice", src_box))), ("dst", dst)], [dst])
    return True


def _axis_views(lw: _Lowerer, op: Op, x, out, axis: int):
    """[outer, C, inner] views of `x` and `out` around the physical position of logical `axis`."""
    shape = physical_shape(op.result.type.shape)
    ax = physical_axis(axis, len(shape))
    v3 = ("reshape", (int(np.prod(shape[:ax], dtype=np.int64)), shape[ax], int(np.prod(shape[ax + 1:], dtype=np.int64))))
    return lw.view(x, v3), lw.view(out, v3)


def _quantize(lw: _Lowerer, op: Op) -> bool:
    t = op.result.type
    if t.dtype not in ("u8", "i8") or op.operands[0].type.dtype != "f32":
        return False
    qlo, qhi = qrange(t.dtype)
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    q = t.quant
    if q.per_channel:
        x3, o3 = _axis_views(lw, op, x, out, q.axis)
        lw.emit(_R + "ops_quant:quantize_axis", [("x", x3), ("out", o3),
                                                  ("scales", lw.const(np.asarray(q.scale, np.float32), "scales")),
                                                  ("zps", lw.const(np.asarray(q.zero_point, np.int32), "zps")),
                                                  ("qlo", qlo), ("qhi", qhi)], [o3])
        return True
    lw.emit(_R + "ops_quant:quantize_flat", [("x", lw.flat(x)), ("out", lw.flat(out)), ("scale", q.scale[0]),
                                             ("zp", q.zero_point[0]), ("qlo", qlo), ("qhi", qhi),
                                             ("parallel", lw.parallel(t.size))], [lw.flat(out)])
    return True


def _dequantize(lw: _Lowerer, op: Op) -> bool:
    q = op.operands[0].type.quant
    if q is None or op.result.type.dtype != "f32":
        return False
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    if q.per_channel:
        x3, o3 = _axis_views(lw, op, x, out, q.axis)
        lw.emit(_R + "ops_quant:dequantize_axis", [("q", x3), ("out", o3),
                                                    ("scales", lw.const(np.asarray(q.scale, np.float32), "scales")),
                                                    ("zps", lw.const(np.asarray(q.zero_point, np.int32), "zps"))],
                [o3])
        return True
    lw.emit(_R + "ops_quant:dequantize_flat", [("q", lw.flat(x)), ("out", lw.flat(out)), ("scale", q.scale[0]),
                                               ("zp", q.zero_point[0]), ("parallel", lw.parallel(op.result.type.size))],
            [lw.flat(out)])
    return True


def _requantize(lw: _Lowerer, op: Op) -> bool:
    if op.attrs.get("requant", "float") != "float":
        return False
    sx, zx = quant_of(op.operands[0])
    sy, zy = quant_of(op.result)
    qlo, qhi = qrange(op.result.type.dtype)
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    lw.emit(_R + "ops_quant:requantize_flat", [("x", lw.flat(x)), ("out", lw.flat(out)), ("zx", zx),
                                               ("mult", float(requantize_multiplier(sx, 1.0, sy))), ("zy", zy),
                                               ("qlo", qlo), ("qhi", qhi),
                                               ("parallel", lw.parallel(op.result.type.size))], [lw.flat(out)])
    return True


def _qadd(lw: _Lowerer, op: Op) -> bool:
    a_v, b_v = op.operands
    t = op.result.type
    if not a_v.type.shape == b_v.type.shape == t.shape:
        return False
    (sa, za), (sb, zb), (sy, zy) = quant_of(a_v), quant_of(b_v), quant_of(op.result)
    lo, hi = activation_bounds(op.attrs.get("act", "none"), t.quant, t.dtype)
    a, b, out = lw.operand(a_v), lw.operand(b_v), lw.result_buf(op)
    lw.emit(_R + "ops_quant:qadd_flat", [("a", lw.flat(a)), ("b", lw.flat(b)), ("out", lw.flat(out)), ("za", za),
                                         ("sa", sa), ("zb", zb), ("sb", sb), ("sy", sy), ("zy", zy), ("lo", lo),
                                         ("hi", hi), ("parallel", lw.parallel(t.size))], [lw.flat(out)])
    return True


def _clamp(lw: _Lowerer, op: Op, lo, hi) -> bool:
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    lw.emit(_R + "ops_elementwise:clamp_flat", [("x", lw.flat(x)), ("out", lw.flat(out)), ("lo", lo), ("hi", hi),
                                                ("parallel", lw.parallel(op.result.type.size))], [lw.flat(out)])
    return True


def _relu(lw: _Lowerer, op: Op) -> bool:
    t_in, t_out = op.operands[0].type, op.result.type
    if t_in.quant is None and t_in.dtype == "f32":
        return _clamp(lw, op, 0.0, _INF)
    if t_in.quant is None or t_in.quant.per_channel or t_in.quant != t_out.quant:
        return False
    return _clamp(lw, op, t_in.quant.zero_point[0], qrange(t_in.dtype)[1])


def _clip(lw: _Lowerer, op: Op) -> bool:
    t = op.operands[0].type
    if t.quant is not None or t.dtype != "f32":
        return False
    return _clamp(lw, op, float(op.attrs["min"]), float(op.attrs["max"]))


def _qclip(lw: _Lowerer, op: Op) -> bool:
    t = op.operands[0].type
    lo, hi = (int(quantize(np.float32(op.attrs[k]), t.quant, t.dtype)) for k in ("min", "max"))
    return _clamp(lw, op, lo, hi)


def _sigmoid(lw: _Lowerer, op: Op) -> bool:
    t = op.operands[0].type
    if t.quant is not None or t.dtype != "f32":
        return False
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    lw.emit(_R + "ops_elementwise:sigmoid_flat", [("x", lw.flat(x)), ("out", lw.flat(out))], [lw.flat(out)])
    return True


def _softmax(lw: _Lowerer, op: Op) -> bool:
    t = op.operands[0].type
    if t.quant is not None or t.dtype != "f32":
        return False
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    x3, o3 = _axis_views(lw, op, x, out, op.attrs["axis"])
    lw.emit(_R + "ops_elementwise:softmax3", [("x", x3), ("out", o3)], [o3])
    return True


_BINARY_CODES = {"qv.add": 0, "qv.sub": 1, "qv.mul": 2, "qv.div": 3}


def _binary(lw: _Lowerer, op: Op) -> bool:
    t = op.result.type
    if t.dtype != "f32" or t.rank > 4 or any(v.type.quant is not None for v in op.operands):
        return False
    code = _BINARY_CODES[op.name]
    a, b = (lw.operand(v) for v in op.operands)
    out = lw.result_buf(op)
    if all(v.type.shape == t.shape for v in op.operands):
        lw.emit(_R + "ops_elementwise:binary_flat", [("a", lw.flat(a)), ("b", lw.flat(b)), ("out", lw.flat(out)),
                                                     ("op", code)], [lw.flat(out)])
        return True
    views = [_broadcast_view(lw, ref, v.type.shape, t.rank) for ref, v in zip((a, b), op.operands)]
    out4 = lw.view(out, ("reshape", (1,) * (4 - t.rank) + physical_shape(t.shape)))
    lw.emit(_R + "ops_elementwise:binary_bcast4", [("a", views[0]), ("b", views[1]), ("out", out4), ("op", code)],
            [out4])
    return True


def _broadcast_view(lw: _Lowerer, ref, shape: tuple[int, ...], rank: int):
    """A 4-D view of operand `ref` (logical `shape`) aligned with a result of `rank` in program layout."""
    steps = [("transpose", TO_NCHW)] if len(shape) == 4 else []
    logical = (1,) * (rank - len(shape)) + tuple(shape)
    steps.append(("reshape", logical))
    if rank == 4:
        steps.append(("transpose", TO_NHWC))
    steps.append(("reshape", (1,) * (4 - rank) + physical_shape(logical)))
    return lw.view(ref, *steps)


LOWERERS = {
    "qv.maxpool": _maxpool, "qv.avgpool": _avgpool, "qv.qavgpool": _qavgpool,
    "qv.global_avgpool": _global_avgpool, "qv.qglobal_avgpool": _qglobal_avgpool,
    "qv.concat": _concat, "qv.reshape": _reshape, "qv.transpose": _transpose, "qv.pad": _pad,
    "qv.quantize": _quantize, "qv.dequantize": _dequantize, "qv.requantize": _requantize, "qv.qadd": _qadd,
    "qv.relu": _relu, "qv.clip": _clip, "qv.qclip": _qclip, "qv.sigmoid": _sigmoid, "qv.softmax": _softmax,
    **dict.fromkeys(_BINARY_CODES, _binary),
}
