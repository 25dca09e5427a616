"""Standalone elementwise kernels: clamp (ReLU, clip, int8 qclip), sigmoid, binary arithmetic, softmax.

They run the elementwise ops no conv/GEMM epilogue absorbed.  Layout does not matter
to them: the code generator passes flat views of same-shape tensors, 4-D views for
broadcasting binary ops (every operand already permuted to the output's physical
layout, size-1 axes broadcast), and [outer, n, inner] views for softmax.

Arithmetic is the reference's (`qv2c/ir/reference/elementwise.py`) in the operands'
dtype: clamp = min(max(x, lo), hi) (an int8 ReLU is clamp(x, zero point, qmax), a
qclip clamp(x, quantize(min), quantize(max)); the bounds are computed at compile
time); sigmoid = 1 / (1 + e) or e / (1 + e) with e = exp(-|x|); softmax =
exp(x - max) / sum exp(x - max).  fp32 results match within float tolerance
(exp may differ by an ulp from NumPy's), integer results bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: elements per parallel task
CHUNK = 1 << 15
ADD, SUB, MUL, DIV = 0, 1, 2, 3


@njit(cache=True)
def _clamp_range(x, out, lo, hi, start, stop):
    """(Slices, not indices over the whole arrays: see `ops_quant.CHUNK`.)"""
    xs, outs = x[start:stop], out[start:stop]
    for i in range(xs.size):
        outs[i] = min(max(xs[i], lo), hi)


@njit(parallel=True, cache=True)
def clamp_flat(x, out, lo, hi, parallel):
    """out = min(max(x, lo), hi) elementwise; lo/hi are cast to x's dtype (flat views)."""
    t = x.dtype.type
    lo_t, hi_t = t(lo), t(hi)
    n = x.size
    if parallel:
        for k in prange((n + CHUNK - 1) // CHUNK):
            _clamp_range(x, out, lo_t, hi_t, k * CHUNK, min(n, (k + 1) * CHUNK))
    else:
        _clamp_range(x, out, lo_t, hi_t, 0, n)


@njit(cache=True, inline="always")
def sigmoid_value(v):
    """1 / (1 + exp(-v)) of a float32, written with exp(-|v|) so it never overflows."""
    one = np.float32(1.0)
    e = np.exp(-abs(v))
    return one / (one + e) if v >= 0 else e / (one + e)


@njit(cache=True)
def sigmoid_flat(x, out):
    """out = sigmoid(x) in float32 (`sigmoid_value`)."""
    for i in range(x.size):
        out[i] = sigmoid_value(x[i])


@njit(cache=True, error_model="numpy")
def _apply(op, a, b):
    if op == ADD:
        return a + b
    if op == SUB:
        return a - b
    if op == MUL:
        return a * b
    return a / b


@njit(cache=True, error_model="numpy")
def binary_flat(a, b, out, op):
    """out = a (op) b for same-shape flat fp32 views; op is ADD, SUB, MUL or DIV (x / 0 is inf or nan, as in
    NumPy and the reference: `error_model="numpy"`; Numba's default raises ZeroDivisionError)."""
    if op == ADD:
        for i in range(out.size):
            out[i] = a[i] + b[i]
    elif op == SUB:
        for i in range(out.size):
            out[i] = a[i] - b[i]
    elif op == MUL:
        for i in range(out.size):
            out[i] = a[i] * b[i]
    else:
        for i in range(out.size):
            out[i] = a[i] / b[i]


@njit(cache=True, error_model="numpy")
def binary_bcast4(a, b, out, op):
    """out[i,j,k,l] = a[...] (op) b[...] with NumPy broadcasting of size-1 axes (4-D views, any strides)."""
    n0, n1, n2, n3 = out.shape
    for i in range(n0):
        ia = i if a.shape[0] > 1 else 0
        ib = i if b.shape[0] > 1 else 0
        for j in range(n1):
            ja = j if a.shape[1] > 1 else 0
            jb = j if b.shape[1] > 1 else 0
            for k in range(n2):
                ka = k if a.shape[2] > 1 else 0
                kb = k if b.shape[2] > 1 else 0
                for m in range(n3):
                    out[i, j, k, m] = _apply(op, a[ia, ja, ka, m if a.shape[3] > 1 else 0],
                                             b[ib, jb, kb, m if b.shape[3] > 1 else 0])


@njit(cache=True)
def softmax3(x, out):
    """Softmax along axis 1 of [outer, n, inner] fp32 views."""
    for o in range(x.shape[0]):
        for i in range(x.shape[2]):
            m = x[o, 0, i]
            for j in range(1, x.shape[1]):
                m = max(m, x[o, j, i])
            s = np.float32(0.0)
            for j in range(x.shape[1]):
                e = np.exp(x[o, j, i] - m)
                out[o, j, i] = e
                s += e
            for j in range(x.shape[1]):
                out[o, j, i] = out[o, j, i] / s
