"""Index-map padding: `qv.pad` in the modes that copy input elements ("reflect", "edge", "wrap"), any dtype.

Every output element of such a pad is some input element: along each axis, output position
i reads input position map[i].  The code generator builds the maps at compile time with
`np.pad` on `arange` (after the crop of a negative pad), so they are the reference's own
(`qv2c/ir/reference/layout.py`, which calls `np.pad` on the data), including NumPy's
repeated reflection when a pad is wider than the axis.  The kernel is then a gather, exact
for every dtype, so an int8 tensor is padded inside its int8 island.

Maps of all axes are concatenated in one int64 array (`starts[ax]` is where axis `ax`'s map
begins), in the physical order of the buffers; `xstr` are the input's strides in that
order.  The output is written row by row (a row is its last physical axis); a row whose
map is the identity (no pad on the last axis: an NHWC tensor padded only in H and W) is
one contiguous copy.  `parallel` splits the rows into tasks.
"""

from __future__ import annotations

from numba import njit, prange

from qv2c.runtime.ops_broadcast import MAX_TASKS, task_bounds


@njit(cache=True)
def _gather_rows(x, out, shape, xstr, maps, starts, last_identity, r0, r1):
    last = len(shape) - 1
    n, s_last, m_last = shape[last], xstr[last], starts[last]
    for row in range(r0, r1):
        off = 0
        r = row
        for ax in range(last - 1, -1, -1):
            d = shape[ax]
            off += maps[starts[ax] + r % d] * xstr[ax]
            r //= d
        dst = out[row * n:(row + 1) * n]
        if last_identity:
            dst[:] = x[off:off + n]
        else:
            for i in range(n):
                dst[i] = x[off + maps[m_last + i] * s_last]


@njit(parallel=True, cache=True)
def pad_gather(x, out, shape, xstr, maps, starts, last_identity, parallel):
    """out[i0, .., ir] = x[map0[i0], .., mapr[ir]] over flat views (`shape`: out's physical shape, int64).

    `last_identity` says the last axis' map is 0..n-1 and its input stride 1 (a contiguous row copy)."""
    rows = out.size // max(shape[len(shape) - 1], 1)
    if parallel and rows > 1:
        tasks = min(rows, MAX_TASKS)
        for t in prange(tasks):
            r0, r1 = task_bounds(t, tasks, rows)
            _gather_rows(x, out, shape, xstr, maps, starts, last_identity, r0, r1)
    else:
        _gather_rows(x, out, shape, xstr, maps, starts, last_identity, 0, rows)
