"""General fp32 matrix product over explicit strides: `qv.matmul` and the `qv.gemm` cases no packed kernel runs.

A conv or gemm layer with a constant weight runs the packed micro-kernels (`kernels/`).  What
remains is every `qv.matmul` (batched, broadcast, 1-D operands, a constant or a run-time B) and
a gemm with a run-time B, a transposed A or a bias C that varies by row; for these this kernel
computes

    out[b, m, n] = float32(sum_k a[b, m, k] * b[b, k, n]) * alpha  (+ beta * c[b, m, n])

with every operand a flat view of its buffer and the code generator's strides: per batch
axis (0 where the operand is broadcast), then for m and k (a), k and n (b), m and n (c, out).
So a transpose (Gemm's trans_a / trans_b) or an NHWC operand is a matter of strides, with
no copy.  The sum runs over k in order, in float32, with the multiply and add rounded
separately (no FMA contraction, as the reference's `y *= alpha; y + beta * c`); BLAS adds in
another order, so results agree within float tolerance, not bit for bit.  Each output row
accumulates in a contiguous scratch row (a loop over n that LLVM vectorises where b's rows
are contiguous, the usual case).  `parallel` splits the rows (batch x M) into tasks.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from qv2c.runtime.ops_broadcast import MAX_TASKS, index_offset, task_bounds


@njit(cache=True)
def _matmul_rows(a, b, c, out, batch, astr, bstr, cstr, ostr, m, k, n, alpha, beta, has_c, r0, r1):
    nb = len(batch)
    a_m, a_k = astr[nb], astr[nb + 1]
    b_k, b_n = bstr[nb], bstr[nb + 1]
    c_m, c_n = cstr[nb], cstr[nb + 1]
    o_m, o_n = ostr[nb], ostr[nb + 1]
    acc = np.empty(n, np.float32)
    for row in range(r0, r1):
        bi, i = row // m, row % m
        oa = index_offset(bi, batch, astr, nb) + i * a_m
        ob = index_offset(bi, batch, bstr, nb)
        acc[:] = 0
        for kk in range(k):
            av = a[oa + kk * a_k]
            bo = ob + kk * b_k
            if b_n == 1:  # a contiguous row of b: a slice, so the loop vectorises
                brow = b[bo:bo + n]
                for j in range(n):
                    acc[j] += av * brow[j]
            else:
                for j in range(n):
                    acc[j] += av * b[bo + j * b_n]
        oc = index_offset(bi, batch, cstr, nb) + i * c_m
        oo = index_offset(bi, batch, ostr, nb) + i * o_m
        for j in range(n):
            v = acc[j] * alpha
            if has_c:
                v = v + beta * c[oc + j * c_n]
            out[oo + j * o_n] = v


@njit(parallel=True, cache=True)
def matmul_strided(a, b, c, out, batch, astr, bstr, cstr, ostr, m, k, n, alpha, beta, has_c, parallel):
    """out = alpha * (a @ b) (+ beta * c), fp32, over strided flat views (see the module docstring).

    `batch` (int64) is the result's batch shape; each stride array (int64) holds one stride per
    batch axis, then two for the matrix axes.  Without a bias pass any fp32 array as `c`."""
    rows = m
    for d in batch:
        rows *= d
    al, be = np.float32(alpha), np.float32(beta)
    if parallel and rows > 1:
        tasks = min(rows, MAX_TASKS)
        for t in prange(tasks):
            r0, r1 = task_bounds(t, tasks, rows)
            _matmul_rows(a, b, c, out, batch, astr, bstr, cstr, ostr, m, k, n, al, be, has_c, r0, r1)
    else:
        _matmul_rows(a, b, c, out, batch, astr, bstr, cstr, ostr, m, k, n, al, be, has_c, 0, rows)
