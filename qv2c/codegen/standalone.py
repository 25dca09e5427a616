"""Lowering of the ops outside conv/GEMM groups: pooling, data movement, quantization, elementwise,
normalisation (LRN, a batch norm left unfolded) and the matrix products no packed kernel runs.

`LOWERERS[op.name](lowerer, op)` appends the op's kernel calls to the program being
built by `lower.py` (through its `operand`, `result_buf`, `view`, `flat`, `const`,
`emit` and `parallel` methods) and returns True, or returns False when no kernel fits
this case; `lower.py` then refuses the op (`_Lowerer.fallback`: an `UnsupportedOpError`,
or with the debugging backend switched on, a call of its NumPy reference).  Kernels live
in `qv2c/runtime/ops_*.py`.

Every op the frontend imports, and every op the passes build from them, has a kernel
(`tests/test_no_fallback.py` holds the inventory).  The cases left without one, and why:

- a `qv.conv`, `qv.qconv` or `qv.qgemm` whose weight (or a conv's bias) is not a constant:
  the conv/GEMM kernels take weights packed at compile time, and CNN exports have constant
  weights (`fold-constants` turns computed ones into constants);
- `qv.maxpool`, `qv.avgpool`, `qv.qavgpool` of rank other than 4: the importers accept 2-D
  windows only, so no imported model has them;
- elementwise ops (arithmetic, ReLU, clip, sigmoid, softmax) on integer tensors that are
  not quantized: the frontend admits only float32 run-time tensors (integer shape
  arithmetic is folded to constants);
- `qv.quantize` to i32 or from a non-f32 tensor: the passes quantize activations to u8/i8
  only (int32 biases are quantized at compile time);
- ops whose operands the reference itself refuses (a quantized sigmoid, softmax, clip or
  average pool; an int8 ReLU whose quantization changes): invalid IR, an error either way;
- a reflect / edge / wrap pad of a rank-0 tensor (nothing to pad).

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
from qv2c.errors import ShapeError
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
    if op.result.type.rank != 4:
        return False
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


def _pooled_views(lw: _Lowerer, op: Op):
    """`op`'s operand and result as the [N, H, W, C] and [N, 1, 1, C] arrays the global pool kernels take.

    Rank 4 is that already (NHWC); any other rank is row-major [N, C, spatial...], seen as
    [N, S, 1, C] (a strided view, S the spatial size) and [N, 1, 1, C], so no copy is made."""
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    shape = op.operands[0].type.shape
    if len(shape) == 4:
        return x, out
    n, c, s = shape[0], shape[1], int(np.prod(shape[2:], dtype=np.int64))
    return (lw.view(x, ("reshape", (n, c, s, 1)), ("transpose", (0, 2, 3, 1))),
            lw.view(out, ("reshape", (n, 1, 1, c))))


def _global_avgpool(lw: _Lowerer, op: Op) -> bool:
    x_t = op.operands[0].type
    if x_t.dtype != "f32" or x_t.quant is not None:
        return False
    x, out = _pooled_views(lw, op)
    lw.emit(_R + "ops_pool:global_avgpool_nhwc", [("x", x), ("out", out)], [out])
    return True


def _qglobal_avgpool(lw: _Lowerer, op: Op) -> bool:
    x_t = op.operands[0].type
    sx, zx = quant_of(op.operands[0])
    sy, zy = quant_of(op.result)
    qlo, qhi = qrange(op.result.type.dtype)
    mult = float(requantize_multiplier(sx, 1.0, sy, int(np.prod(x_t.shape[2:], dtype=np.int64))))
    x, out = _pooled_views(lw, op)
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


def _permute_channels(lw: _Lowerer, op: Op) -> bool:
    """A channel permutation (what `fold-channel-permutation` leaves of a channel shuffle no reader could
    absorb): one parallel gather over [outer, C, inner] views (for NHWC, a pixel's channels), any dtype,
    so an int8 island runs through it on the codes."""
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    x3, o3 = _axis_views(lw, op, x, out, 1)
    lw.emit(_R + "ops_layout:permute_channels", [("x", x3), ("out", o3),
                                                  ("order", _int64(lw, op.attrs["order"], f"{lw.name(op.result)}.order")),
                                                  ("parallel", lw.parallel(op.result.type.size))], [o3])
    return True


def _pad(lw: _Lowerer, op: Op) -> bool:
    """Constant padding, filled with `value` (on a quantized tensor its code: the zero point for
    value 0, so an int8 pad stays int8).  A pad of the two spatial axes of an NHWC tensor (what
    `fold-pad` leaves, e.g. before a non-foldable reader) is one parallel pass of the conv
    kernels' `pad_nhwc`, row by row; any other pad is a fill, then a strided copy of the kept box.
    The modes that copy input elements (reflect, edge, wrap) are `_pad_by_index`'s."""
    if op.attrs["mode"] != "constant":
        return _pad_by_index(lw, op)
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
    sx, zx = quant_of(op.operands[0])
    sy, zy = quant_of(op.result)
    qlo, qhi = qrange(op.result.type.dtype)
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    if op.attrs.get("requant", "float") == "shift":
        from qv2c.codegen.lower import _requant_factors  # here: lower.py imports this module

        shift = int(_requant_factors(op, requantize_multiplier(sx, 1.0, sy))[0])
        lw.emit(_R + "ops_shift:requantize_shift_flat", [("x", lw.flat(x)), ("out", lw.flat(out)), ("zx", zx),
                                                          ("shift", shift), ("zy", zy), ("qlo", qlo), ("qhi", qhi)],
                [lw.flat(out)])
        return True
    lw.emit(_R + "ops_quant:requantize_flat", [("x", lw.flat(x)), ("out", lw.flat(out)), ("zx", zx),
                                               ("mult", float(requantize_multiplier(sx, 1.0, sy))), ("zy", zy),
                                               ("qlo", qlo), ("qhi", qhi),
                                               ("parallel", lw.parallel(op.result.type.size))], [lw.flat(out)])
    return True


def _qadd(lw: _Lowerer, op: Op) -> bool:
    a_v, b_v = op.operands
    t = op.result.type
    (sa, za), (sb, zb), (sy, zy) = quant_of(a_v), quant_of(b_v), quant_of(op.result)
    lo, hi = activation_bounds(op.attrs.get("act", "none"), t.quant, t.dtype)
    if not a_v.type.shape == b_v.type.shape == t.shape:
        return _broadcast_strided(lw, op, "ops_broadcast:qadd_strided",
                                  [("za", za), ("sa", sa), ("zb", zb), ("sb", sb), ("sy", sy), ("zy", zy), ("lo", lo),
                                   ("hi", hi)])
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


def clamp_bounds(op: Op) -> tuple[float, float] | tuple[int, int] | None:
    """The [lo, hi] a qv.relu / qv.clip / qv.qclip clamps its input to, in the input's own numbers (fp32
    values, or integer levels of an int8 tensor), or None where it is not such a clamp."""
    t_in, t_out = op.operands[0].type, op.result.type
    if op.name == "qv.relu":
        if t_in.quant is None and t_in.dtype == "f32":
            return 0.0, _INF
        if t_in.quant is None or t_in.quant.per_channel or t_in.quant != t_out.quant:
            return None
        return int(t_in.quant.zero_point[0]), int(qrange(t_in.dtype)[1])
    if op.name == "qv.clip":
        return (float(op.attrs["min"]), float(op.attrs["max"])) if t_in.quant is None and t_in.dtype == "f32" else None
    if op.name == "qv.qclip":
        lo, hi = (int(quantize(np.float32(op.attrs[k]), t_in.quant, t_in.dtype)) for k in ("min", "max"))
        return lo, hi
    return None


def _clamp_op(lw: _Lowerer, op: Op) -> bool:
    """qv.relu, qv.clip, qv.qclip: one clamp (`clamp_bounds`)."""
    bounds = clamp_bounds(op)
    return bounds is not None and _clamp(lw, op, *bounds)


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
    if t.dtype != "f32" or any(v.type.quant is not None for v in op.operands):
        return False
    code = _BINARY_CODES[op.name]
    if t.rank > 4:
        return _broadcast_strided(lw, op, "ops_broadcast:binary_strided", [("op", code)])
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


def _logical_strides(shape: tuple[int, ...]) -> list[int]:
    """Element strides of the buffer of a tensor of logical `shape`, one per logical axis (rank 4 is NHWC)."""
    phys = physical_shape(tuple(shape))
    row_major = [int(np.prod(phys[i + 1:], dtype=np.int64)) for i in range(len(phys))]
    return [row_major[physical_axis(i, len(shape))] for i in range(len(shape))]


def _aligned_strides(shape, rank: int, strides=None) -> list[int]:
    """The strides (default `_logical_strides(shape)`) of an operand of `shape` broadcast to `rank` axes:
    0 along every axis it is broadcast on (size 1, or missing in front)."""
    strides = _logical_strides(shape) if strides is None else strides
    return [0] * (rank - len(shape)) + [0 if d == 1 else s for d, s in zip(shape, strides)]


def _int64(lw: _Lowerer, values, name: str):
    return lw.const(np.asarray(values, np.int64).reshape(-1), name)


def _broadcast_strided(lw: _Lowerer, op: Op, kernel: str, params: list) -> bool:
    """A binary elementwise op with broadcasting of any rank, as one kernel of `runtime/ops_broadcast.py`:
    flat views of both operands and the result, and each operand's strides along the result's physical axes."""
    t = op.result.type
    order = TO_NHWC if t.rank == 4 else tuple(range(t.rank))
    strides = [[s[i] for i in order] or [0] for s in (_aligned_strides(v.type.shape, t.rank) for v in op.operands)]
    name = lw.name(op.result)
    a, b = (lw.flat(lw.operand(v)) for v in op.operands)
    out = lw.flat(lw.result_buf(op))
    lw.emit(_R + kernel, [("a", a), ("b", b), ("out", out),
                          ("shape", _int64(lw, physical_shape(t.shape) or (1,), f"{name}.shape")),
                          ("astr", _int64(lw, strides[0], f"{name}.astr")),
                          ("bstr", _int64(lw, strides[1], f"{name}.bstr"))]
            + params + [("parallel", lw.parallel(t.size))], [out])
    return True


def _lrn(lw: _Lowerer, op: Op) -> bool:
    t = op.operands[0].type
    if t.dtype != "f32" or t.quant is not None or t.rank < 2:
        return False
    a = op.attrs
    size = a["size"]
    if size < 1:
        raise ShapeError(f"{op.location}: LRN size must be at least 1, got {size}")
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    x3, o3 = _axis_views(lw, op, x, out, 1)
    rows, c, inner = lw.shape_of(x3)
    x2, o2 = (lw.view(v, ("reshape", (rows, c * inner))) for v in (x3, o3))
    lw.emit(_R + "ops_lrn:lrn_rows", [("x", x2), ("out", o2), ("inner", inner), ("size", size),
                                      ("alpha_n", float(np.float32(a["alpha"] / size))), ("bias", float(a["bias"])),
                                      ("beta", float(a["beta"])), ("parallel", lw.parallel(t.size * size))], [o2])
    return True


def _batchnorm(lw: _Lowerer, op: Op) -> bool:
    t = op.operands[0].type
    if any(v.type.dtype != "f32" or v.type.quant is not None for v in op.operands) or t.rank < 2:
        return False
    x, out = lw.operand(op.operands[0]), lw.result_buf(op)
    x3, o3 = _axis_views(lw, op, x, out, 1)
    scale, bias, mean, var = (lw.flat(lw.operand(v)) for v in op.operands[1:])
    lw.emit(_R + "ops_batchnorm:batchnorm3", [("x", x3), ("out", o3), ("scale", scale), ("bias", bias),
                                              ("mean", mean), ("var", var), ("eps", float(op.attrs["epsilon"])),
                                              ("parallel", lw.parallel(t.size))], [o3])
    return True


def _matmul(lw: _Lowerer, op: Op) -> bool:
    """Any fp32 matmul (batched, broadcast, 1-D operands, a constant or a run-time B) as the strided kernel.

    A 2-D matrix times a constant 2-D weight (an FC layer) does not get here: canonicalize rewrites it as
    a `qv.gemm` (`passes/matmul_to_gemm.py`), which runs the packed kernels and can be int8."""
    if op.result.type.dtype != "f32" or any(v.type.quant is not None for v in op.operands):
        return False
    return _matmul_strided(lw, op, *op.operands)


def _gemm(lw: _Lowerer, op: Op) -> bool:
    """A `qv.gemm` no packed kernel runs (a run-time B, trans_a, a bias C that varies by row): the strided kernel."""
    if op.result.type.dtype != "f32" or any(v.type.quant is not None for v in op.operands):
        return False
    a = op.attrs
    c_v = op.operands[2] if len(op.operands) == 3 else None
    return _matmul_strided(lw, op, op.operands[0], op.operands[1], c_v, bool(a["trans_a"]), bool(a["trans_b"]),
                           float(a["alpha"]), float(a["beta"]))


def _matmul_strided(lw: _Lowerer, op: Op, a_v: Value, b_v: Value, c_v: Value | None = None, trans_a: bool = False,
                    trans_b: bool = False, alpha: float = 1.0, beta: float = 1.0) -> bool:
    """alpha * (A @ B) (+ beta * C) with NumPy matmul's broadcasting and 1-D promotion, as one call of
    `ops_matmul.matmul_strided`: transposes, broadcast batch axes and NHWC operands are all strides."""
    t = op.result.type
    a_sh, b_sh = list(a_v.type.shape), list(b_v.type.shape)
    a_st, b_st = _logical_strides(a_sh), _logical_strides(b_sh)
    a_1d, b_1d = len(a_sh) == 1, len(b_sh) == 1
    if a_1d:  # [K] -> [1, K], the 1 dropped from the result
        a_sh, a_st = [1] + a_sh, [0] + a_st
    if b_1d:  # [K] -> [K, 1]
        b_sh, b_st = b_sh + [1], b_st + [0]
    for flag, sh, st in ((trans_a, a_sh, a_st), (trans_b, b_sh, b_st)):
        if flag:
            sh[-2:], st[-2:] = sh[:-3:-1], st[:-3:-1]
    m, k, n = a_sh[-2], a_sh[-1], b_sh[-1]
    batch = tuple(np.broadcast_shapes(tuple(a_sh[:-2]), tuple(b_sh[:-2])))
    nb = len(batch)
    a_all = _aligned_strides(a_sh[:-2], nb, a_st[:-2]) + a_st[-2:]
    b_all = _aligned_strides(b_sh[:-2], nb, b_st[:-2]) + b_st[-2:]
    o_st = _logical_strides(t.shape)
    o_all = o_st[:nb] + [0 if a_1d else o_st[nb], 0 if b_1d else o_st[-1]]
    out = lw.flat(lw.result_buf(op))
    if c_v is not None:
        c, c_all = lw.flat(lw.operand(c_v)), _aligned_strides(c_v.type.shape, 2)
    else:
        c, c_all = out, [0, 0]
    name = lw.name(op.result)
    lw.emit(_R + "ops_matmul:matmul_strided",
            [("a", lw.flat(lw.operand(a_v))), ("b", lw.flat(lw.operand(b_v))), ("c", c), ("out", out),
             ("batch", _int64(lw, batch, f"{name}.batch")), ("astr", _int64(lw, a_all, f"{name}.astr")),
             ("bstr", _int64(lw, b_all, f"{name}.bstr")), ("cstr", _int64(lw, c_all, f"{name}.cstr")),
             ("ostr", _int64(lw, o_all, f"{name}.ostr")), ("m", m), ("k", k), ("n", n), ("alpha", alpha),
             ("beta", beta), ("has_c", c_v is not None), ("parallel", lw.parallel(t.size * k))], [out])
    return True


def _pad_by_index(lw: _Lowerer, op: Op) -> bool:
    """`qv.pad` in a mode that copies input elements ("reflect", "edge", "wrap"), any dtype (int8 stays int8):
    one gather through per-axis index maps (`runtime/ops_pad.py`), built with `np.pad` on `arange` after the
    crop of a negative pad, which is what the reference does to the data.  The lowering `_pad` hands these
    modes to."""
    mode = op.attrs["mode"]
    x_t, y_t = op.operands[0].type, op.result.type
    if mode not in ("reflect", "edge", "wrap") or x_t.rank == 0:
        return False
    r, pads = x_t.rank, op.attrs["pads"]
    maps = []
    for i, d in enumerate(x_t.shape):
        b, e = pads[i], pads[i + r]
        kept = np.arange(d)[max(0, -b):d - max(0, -e)]
        if kept.size == 0 and max(b, e) > 0:
            raise ShapeError(f"{op.location}: cannot {mode}-pad axis {i}, which is empty after cropping; "
                             "use a constant pad there")
        maps.append(np.pad(kept, (max(0, b), max(0, e)), mode=mode))
    order = TO_NHWC if r == 4 else tuple(range(r))
    maps = [maps[i] for i in order]
    x_str = _logical_strides(x_t.shape)
    x_str = [x_str[i] for i in order]
    shape = physical_shape(y_t.shape)
    starts = np.cumsum([0] + [len(m) for m in maps[:-1]])
    last = maps[-1]
    last_identity = len(last) == physical_shape(x_t.shape)[-1] and bool(np.all(last == np.arange(len(last))))
    name = lw.name(op.result)
    x, out = lw.flat(lw.operand(op.operands[0])), lw.flat(lw.result_buf(op))
    lw.emit(_R + "ops_pad:pad_gather", [("x", x), ("out", out), ("shape", _int64(lw, shape, f"{name}.shape")),
                                        ("xstr", _int64(lw, x_str, f"{name}.xstr")),
                                        ("maps", _int64(lw, np.concatenate(maps), f"{name}.maps")),
                                        ("starts", _int64(lw, starts, f"{name}.starts")),
                                        ("last_identity", last_identity),
                                        ("parallel", lw.parallel(y_t.size))], [out])
    return True


LOWERERS = {
    "qv.maxpool": _maxpool, "qv.avgpool": _avgpool, "qv.qavgpool": _qavgpool,
    "qv.global_avgpool": _global_avgpool, "qv.qglobal_avgpool": _qglobal_avgpool,
    "qv.concat": _concat, "qv.reshape": _reshape, "qv.transpose": _transpose,
    "qv.permute_channels": _permute_channels, "qv.pad": _pad,
    "qv.quantize": _quantize, "qv.dequantize": _dequantize, "qv.requantize": _requantize, "qv.qadd": _qadd,
    "qv.relu": _clamp_op, "qv.clip": _clamp_op, "qv.qclip": _clamp_op, "qv.sigmoid": _sigmoid, "qv.softmax": _softmax,
    **dict.fromkeys(_BINARY_CODES, _binary),
    "qv.lrn": _lrn, "qv.batchnorm": _batchnorm, "qv.matmul": _matmul, "qv.gemm": _gemm,
}
