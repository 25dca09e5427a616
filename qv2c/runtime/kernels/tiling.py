"""How a GEMM-like kernel splits its output into parallel tasks.

A task is (group, tile of `ptile` consecutive output pixels, chunk of weight panels).
Within a task the A tile (im2col rows) is built once and every panel of the chunk
streams over it, so bigger tiles mean more weight reuse; but a layer needs at least a
few tasks per thread to balance 2..N threads, and the A tile should stay in L2.
Tiles are multiples of the micro-kernel height (6 rows).  Small layers (an 8x8 ResNet
stage at batch 1, or an FC layer with one row) get few pixel tiles, so they are also
split across panel chunks: the duplicated im2col work is tiny there.
"""

from __future__ import annotations

from numba import njit

#: bytes of one task's A tile we aim to keep below (half of a Zen 3 L2)
A_TILE_BYTES = 96 * 1024
#: largest pixel tile (rows)
MAX_TILE_ROWS = 96
#: tasks we aim for at least.  A constant rather than a multiple of `numba.get_num_threads()`:
#: calling that inside a kernel makes Numba refuse to cache it (it embeds a ctypes pointer).
#: 16 balances 1, 2, 4 or 8 threads under prange's static schedule.
TARGET_TASKS = 16


@njit(cache=True)
def plan_tiles(npix, groups, panels, row_bytes):
    """(ptile, nptiles, nchunks) for `npix` output pixels, `groups` groups, `panels` weight panels per group."""
    target = TARGET_TASKS
    cap = (A_TILE_BYTES // max(1, row_bytes)) // 6 * 6
    cap = max(6, min(MAX_TILE_ROWS, cap))
    per_group = max(1, -(-target // groups))
    ptile = -(-npix // per_group)
    ptile = max(6, min(cap, -(-ptile // 6) * 6))
    nptiles = -(-npix // ptile)
    nchunks = 1
    if groups * nptiles < target:
        nchunks = min(panels, -(-target // (groups * nptiles)))
    return ptile, nptiles, nchunks
