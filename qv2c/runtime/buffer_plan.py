"""Plan a program's activation buffers once: one arena, offsets reused by liveness.

A buffer is live from the first kernel that touches it (or any view of it) to the
last; model outputs stay live to the end (they are copied out after the run).  Two
buffers may share bytes only if their live ranges do not overlap, so a kernel never
finds its output overlapping an input it still reads.  Placement is greedy, largest
buffer first, at the lowest 64-byte-aligned offset free for its whole live range,
which for a CNN chain is close to the peak of the live set.

    plan = plan_buffers(program)
    plan.total_bytes        # the arena size: the peak activation memory
    plan.unplanned_bytes    # what one buffer per value would need, for comparison

Model inputs are the caller's arrays (bound per run) and take no arena space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qv2c.runtime.program import DTYPE_NAMES, BufferSpec, Program, apply_view

ALIGN = 64


@dataclass(frozen=True)
class BufferPlan:
    #: root buffer id -> byte offset in the arena
    offsets: dict[int, int]
    total_bytes: int
    unplanned_bytes: int


def _root(buffers: tuple[BufferSpec, ...], bid: int) -> int:
    base = buffers[bid].base
    return bid if base is None else base


def live_ranges(program: Program) -> dict[int, tuple[int, int]]:
    """Root buffer id -> (first kernel index, last kernel index) over every kernel touching it or its views."""
    ranges: dict[int, tuple[int, int]] = {}
    for k, spec in enumerate(program.kernels):
        for bid in spec.reads + spec.writes:
            r = _root(program.buffers, bid)
            lo, hi = ranges.get(r, (k, k))
            ranges[r] = (min(lo, k), max(hi, k))
    end = len(program.kernels)
    for _, bid in program.outputs:
        r = _root(program.buffers, bid)
        ranges[r] = (ranges.get(r, (end, end))[0], end)
    return ranges


def plan_buffers(program: Program) -> BufferPlan:
    """Arena offsets for every planned (non-input, non-view) buffer."""
    ranges = live_ranges(program)
    end = len(program.kernels)
    roots = [b for b in program.buffers if b.base is None and b.role != "input"]
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    offsets: dict[int, int] = {}
    for b in sorted(roots, key=lambda b: (-b.nbytes, b.id)):
        first, last = ranges.get(b.id, (end, end))
        size = _aligned(max(b.nbytes, 1))
        offset = 0
        for off, sz, _, _ in sorted(p for p in placed if p[2] <= last and first <= p[3]):
            if offset + size <= off:
                break
            offset = max(offset, off + sz)
        placed.append((offset, size, first, last))
        offsets[b.id] = offset
    total = max((off + sz for off, sz, _, _ in placed), default=0)
    return BufferPlan(offsets, total, sum(_aligned(b.nbytes) for b in roots))


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def materialize(program: Program, plan: BufferPlan) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """(arena, buffers): every planned buffer as an array over the arena, views over their base; inputs None."""
    arena = np.empty(plan.total_bytes + ALIGN, np.uint8)
    shift = (-arena.ctypes.data) % ALIGN
    arrays: list[np.ndarray | None] = [None] * len(program.buffers)
    for b in program.buffers:
        if b.base is None and b.role != "input":
            start = shift + plan.offsets[b.id]
            arrays[b.id] = arena[start:start + b.nbytes].view(DTYPE_NAMES[b.dtype]).reshape(b.shape)
    for b in program.buffers:
        if b.base is not None:
            arrays[b.id] = apply_view(arrays[b.base], b.view)
    return arena, arrays
