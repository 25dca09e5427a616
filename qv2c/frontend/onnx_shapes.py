"""ONNX's shape semantics as pure functions, shared by the importers and the constant folder.

Reshape's `0`/`-1`, Flatten's 2-D coercion, Squeeze/Unsqueeze axes (an attribute
before opset 13, an input from 13 on) and negative-axis normalisation are defined
once here, so a folded constant and an imported op can never disagree. Functions
raise `ValueError` with a short reason; callers add the node and file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from qv2c.frontend.context import ImportContext, Node


def normalize_axis(axis: int, rank: int) -> int:
    """`axis` in [-rank, rank) as a non-negative index."""
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def resolve_reshape(shape: tuple[int, ...], target, allowzero: bool = False) -> tuple[int, ...]:
    """The static shape ONNX Reshape produces: `0` copies the input dim (unless `allowzero`),
    one `-1` takes whatever size is left."""
    out = [int(d) for d in np.asarray(target).reshape(-1)]
    if not allowzero:
        for i, d in enumerate(out):
            if d == 0:
                if i >= len(shape):
                    raise ValueError(f"target {out} copies dim {i} (0) but the input has rank {len(shape)}")
                out[i] = shape[i]
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise ValueError(f"target {out} has more than one -1 or a negative size")
    total = int(np.prod(shape, dtype=np.int64))
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1], dtype=np.int64))
        if known == 0 or total % known:
            raise ValueError(f"cannot reshape {list(shape)} ({total} elements) to {out}")
        out[out.index(-1)] = total // known
    if int(np.prod(out, dtype=np.int64)) != total:
        raise ValueError(f"cannot reshape {list(shape)} ({total} elements) to {out}")
    return tuple(out)


def flatten_shape(shape: tuple[int, ...], axis: int) -> tuple[int, int]:
    """ONNX Flatten: dims before `axis` become the rows, the rest the columns."""
    rank = len(shape)
    if not -rank <= axis <= rank:
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    axis = axis + rank if axis < 0 else axis
    return int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64))


def squeeze_shape(shape: tuple[int, ...], axes: list[int] | None) -> tuple[int, ...]:
    """Drop the listed size-1 dims, or every size-1 dim when `axes` is None."""
    if axes is None:
        return tuple(d for d in shape if d != 1)
    drop = {normalize_axis(a, len(shape)) for a in axes}
    for a in drop:
        if shape[a] != 1:
            raise ValueError(f"cannot squeeze axis {a} of size {shape[a]} in {list(shape)}")
    return tuple(d for i, d in enumerate(shape) if i not in drop)


def unsqueeze_shape(shape: tuple[int, ...], axes: list[int]) -> tuple[int, ...]:
    """Insert size-1 dims at `axes`, which index the *result* (rank + len(axes))."""
    rank = len(shape) + len(axes)
    where = sorted(normalize_axis(a, rank) for a in axes)
    if len(set(where)) != len(where):
        raise ValueError(f"axes {axes} repeat an axis")
    out = list(shape)
    for a in where:
        out.insert(a, 1)
    return tuple(out)


def squeeze_axes(ctx: ImportContext, node: Node) -> list[int] | None:
    """Squeeze/Unsqueeze axes: the `axes` attribute before opset 13, the second input from 13 on."""
    if ctx.opset < 13:
        axes = node.attrs.get("axes")
    else:
        name = node.input(1)
        axes = None if name is None else ctx.constant(name, "the axes input")
    return None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
