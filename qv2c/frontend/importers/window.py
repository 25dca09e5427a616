"""Sliding-window attributes shared by Conv and the pooling ops.

ONNX lets a window op give its padding as `auto_pad` (SAME_UPPER, SAME_LOWER,
VALID) instead of explicit `pads`; the IR only has explicit pads, so we resolve
them here from the (static) input size:

    SAME_*: output = ceil(in / stride); total = max((out - 1) * stride + span - in, 0)
    SAME_UPPER puts the odd pixel at the end, SAME_LOWER at the beginning.

Only 2-D windows (NCHW inputs) are supported; other ranks are rejected with an
`UnsupportedOpError` naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass

from qv2c.frontend.context import ImportContext, Node


@dataclass(frozen=True)
class Window:
    """Resolved 2-D window attributes in IR form (`pads` = [top, left, bottom, right])."""

    kernel: list[int]
    strides: list[int]
    pads: list[int]
    dilations: list[int]


def read_window(ctx: ImportContext, node: Node, spatial: tuple[int, ...], kernel: list[int] | None = None) -> Window:
    """Parse `kernel_shape`, `strides`, `dilations`, `pads` and `auto_pad` of `node` for an input with
    spatial dims `spatial`. `kernel` overrides `kernel_shape` (Conv takes it from the weight)."""
    a = node.attrs
    if len(spatial) != 2:
        raise ctx.unsupported(f"only 2-D {node.op_type} (4-D NCHW input) is supported, got {len(spatial)} spatial "
                              f"dim(s)")
    if kernel is None:
        kernel = list(a["kernel_shape"])  # required by the schema (checked before import)
    elif "kernel_shape" in a and list(a["kernel_shape"]) != list(kernel):
        raise ctx.shape_error(f"kernel_shape {list(a['kernel_shape'])} does not match the weight's {list(kernel)}")
    strides = list(a.get("strides", [1, 1]))
    dilations = list(a.get("dilations", [1, 1]))
    for key, vals in (("kernel_shape", kernel), ("strides", strides), ("dilations", dilations)):
        if len(vals) != 2 or min(vals) < 1:
            raise ctx.load_error(f"{key} {vals} should be two positive integers")
    auto_pad = a.get("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4 or min(pads) < 0:
            raise ctx.load_error(f"pads {pads} should be four non-negative integers")
    elif auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = same_pads(spatial, kernel, strides, dilations, upper=auto_pad == "SAME_UPPER")
    else:
        raise ctx.unsupported(f"auto_pad {auto_pad!r} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    return Window(kernel, strides, pads, dilations)


def same_pads(spatial, kernel, strides, dilations, upper: bool) -> list[int]:
    """Explicit [top, left, bottom, right] pads that make output = ceil(input / stride)."""
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        out = -(-size // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begins.append(small if upper else big)
        ends.append(big if upper else small)
    return begins + ends
