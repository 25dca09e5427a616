"""Broadcasting elementwise kernels over explicit strides: fp32 arithmetic of any rank, and int8 `qv.qadd`.

`ops_elementwise.binary_bcast4` broadcasts rank <= 4 through 4-D views; these kernels take
every operand as a flat view of its buffer plus one stride per axis of the result, in the
result's physical order (0 where the operand is broadcast along that axis), so one kernel
covers any rank and any mix of layouts (an NHWC rank-4 operand broadcast into a rank-5
result, say).  The code generator computes the strides (`codegen/standalone.py`).  The
result is written in its own physical (C) order, row by row: a row is the last physical
axis, so a row of a same-layout operand is one strided loop.

Arithmetic is the reference's, per element: fp32 `a (op) b`, and
qadd = clip(rint((f32(a - za) * sa + f32(b - zb) * sb) / sy) + zy, lo, hi), exactly as
`ops_quant.qadd_flat` (float32 scalars, no FMA contraction), so results are bit-exact.
NumPy's error model: a division by zero gives inf or NaN, as in the reference, not an
exception.  `parallel` splits the rows into tasks.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from qv2c.runtime.ops_elementwise import ADD, MUL, SUB

#: at most this many parallel tasks
MAX_TASKS = 16


@njit(cache=True)
def index_offset(index, shape, strides, ndim):
    """The element offset, in an array with `strides`, of flat `index` in C order over shape[:ndim]
    (a row of the result: ndim = rank - 1; a batch of matrices: ndim = the batch rank)."""
    off = 0
    r = index
    for ax in range(ndim - 1, -1, -1):
        d = shape[ax]
        off += (r % d) * strides[ax]
        r //= d
    return off


@njit(cache=True)
def task_bounds(t, tasks, rows):
    """Rows [start, stop) of task `t` of `tasks` over `rows` rows."""
    return t * rows // tasks, (t + 1) * rows // tasks


@njit(cache=True, error_model="numpy")
def _binary_rows(a, b, out, shape, astr, bstr, op, r0, r1):
    last = len(shape) - 1
    n, sa, sb = shape[last], astr[last], bstr[last]
    for row in range(r0, r1):
        oa, ob, oo = index_offset(row, shape, astr, last), index_offset(row, shape, bstr, last), row * n
        for i in range(n):
            x, y = a[oa + i * sa], b[ob + i * sb]
            if op == ADD:
                out[oo + i] = x + y
            elif op == SUB:
                out[oo + i] = x - y
            elif op == MUL:
                out[oo + i] = x * y
            else:
                out[oo + i] = x / y


@njit(parallel=True, cache=True)
def binary_strided(a, b, out, shape, astr, bstr, op, parallel):
    """out = a (op) b, fp32, broadcast by strides (flat views; `shape` is out's physical shape, int64)."""
    rows = out.size // max(shape[len(shape) - 1], 1)
    if parallel and rows > 1:
        tasks = min(rows, MAX_TASKS)
        for t in prange(tasks):
            r0, r1 = task_bounds(t, tasks, rows)
            _binary_rows(a, b, out, shape, astr, bstr, op, r0, r1)
    else:
        _binary_rows(a, b, out, shape, astr, bstr, op, 0, rows)


@njit(cache=True, error_model="numpy")
def _qadd_rows(a, b, out, shape, astr, bstr, za, sa, zb, sb, sy, zy, lo, hi, r0, r1):
    last = len(shape) - 1
    n, ta, tb = shape[last], astr[last], bstr[last]
    for row in range(r0, r1):
        oa, ob, oo = index_offset(row, shape, astr, last), index_offset(row, shape, bstr, last), row * n
        for i in range(n):
            s = np.float32(np.int32(a[oa + i * ta]) - za) * sa + np.float32(np.int32(b[ob + i * tb]) - zb) * sb
            out[oo + i] = min(max(np.rint(s / sy) + zy, lo), hi)


@njit(parallel=True, cache=True)
def qadd_strided(a, b, out, shape, astr, bstr, za, sa, zb, sb, sy, zy, lo, hi, parallel):
    """`qv.qadd` with broadcasting: quantize(dequantize(a) + dequantize(b)) clamped to [lo, hi] (u8/i8 flat views)."""
    za32, zb32 = np.int32(za), np.int32(zb)
    sa32, sb32, sy32, zy32 = np.float32(sa), np.float32(sb), np.float32(sy), np.float32(zy)
    lo32, hi32 = np.float32(lo), np.float32(hi)
    rows = out.size // max(shape[len(shape) - 1], 1)
    if parallel and rows > 1:
        tasks = min(rows, MAX_TASKS)
        for t in prange(tasks):
            r0, r1 = task_bounds(t, tasks, rows)
            _qadd_rows(a, b, out, shape, astr, bstr, za32, sa32, zb32, sb32, sy32, zy32, lo32, hi32, r0, r1)
    else:
        _qadd_rows(a, b, out, shape, astr, bstr, za32, sa32, zb32, sb32, sy32, zy32, lo32, hi32, 0, rows)
