"""The in-program layout convention: every rank-4 tensor is NHWC, everything else row-major as in the IR.

The kernels want NHWC (`qv2c/runtime/kernels/`): a pixel's channels are contiguous, so
conv taps and epilogues read runs of channels.  The IR, like ONNX, is NCHW; the code
generator keeps one rule so any value's physical shape follows from its logical one:

    logical f32[1,64,8,8] (N, C, H, W)  ->  physical [1, 8, 8, 64] (N, H, W, C)

Model inputs are converted once at the start, rank-4 outputs once at the end, and the
few ops whose meaning depends on axis order translate their attributes with the
helpers below.  The permutations are the program format's (`runtime/program.py`), which
`runtime/fallback.py` uses to run reference functions on program buffers.
"""

from __future__ import annotations

from qv2c.runtime.program import TO_NHWC

_PHYS_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}  # NCHW axis -> NHWC position


def physical_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The in-program shape of a tensor of logical (ONNX) `shape`: rank 4 is NHWC."""
    return tuple(shape[i] for i in TO_NHWC) if len(shape) == 4 else tuple(shape)


def physical_axis(axis: int, rank: int) -> int:
    """The physical position of logical `axis` (negative counts from the end)."""
    axis %= rank
    return _PHYS_AXIS[axis] if rank == 4 else axis


def nhwc_matches_nchw(shape: tuple[int, ...]) -> bool:
    """Whether a tensor's physical and logical element orders coincide (not rank 4, or H*W == 1, or C == 1)."""
    return len(shape) != 4 or shape[2] * shape[3] == 1 or shape[1] == 1


def compose_perms(*perms) -> tuple[int, ...]:
    """The single permutation equal to applying `perms` one after another (as numpy transposes)."""
    axes = list(range(len(perms[0])))
    for p in perms:
        axes = [axes[i] for i in p]
    return tuple(axes)


def step_shape(shape: tuple[int, ...], step) -> tuple[int, ...]:
    """The shape after one view step ("reshape", "transpose" or "slice"; see `spec.BufferSpec.view`)."""
    kind, arg = step
    if kind == "reshape":
        return tuple(arg)
    if kind == "transpose":
        return tuple(shape[p] for p in arg)
    return tuple(e - s for s, e in arg)
