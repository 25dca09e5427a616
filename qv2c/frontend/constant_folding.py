"""Evaluate ONNX nodes whose inputs are all compile-time constants, at import time.

Exporters emit shape arithmetic (`Shape -> Gather -> Unsqueeze -> Concat ->
Reshape`) and build weights from shapes (`ConstantOfShape`). Every shape in the
IR is static, so these subgraphs have known results: we compute them here with
small NumPy implementations and bind the outputs as constants. They never become
IR ops and never run at run time.

    Shape(x: f32[4,512,1,1]) -> [4,512,1,1]; Gather(., 0) -> 4; Concat(4, [-1]) -> [4,-1]
    Reshape(x, [4,-1])  ==>  qv.reshape(x) {shape = [4, 512]}

`Shape` and `Size` only need their input's static type, so they fold even when
the input is computed at run time. A folder raises `ValueError`/`IndexError` for
bad inputs; `try_fold` turns that into a `ShapeError` naming the node.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from qv2c.frontend.context import ImportContext, Node
from qv2c.frontend.onnx_shapes import flatten_shape, resolve_reshape, squeeze_axes, squeeze_shape, unsqueeze_shape

#: folder(ctx, node, args) -> output arrays; args are arrays (None for omitted inputs)
Folder = Callable[[ImportContext, Node, list], list[np.ndarray]]
FOLDERS: dict[str, Folder] = {}
#: op types that need only the static type (shape) of their input, not its value
TYPE_ONLY: set[str] = set()


def folder(*op_types: str, type_only: bool = False):
    """Register a NumPy evaluation of `op_types` on constant inputs."""

    def register(fn: Folder) -> Folder:
        for t in op_types:
            FOLDERS[t] = fn
            if type_only:
                TYPE_ONLY.add(t)
        return fn

    return register


def try_fold(ctx: ImportContext, node: Node) -> bool:
    """Fold `node` if a folder knows its op and every input is constant; returns whether it did."""
    fn = FOLDERS.get(node.op_type)
    if fn is None:
        return False
    args = []
    for name in node.inputs:
        if not name:
            args.append(None)
        elif ctx.is_constant(name):
            args.append(ctx.constant(name))
        elif node.op_type in TYPE_ONLY:
            args.append(ctx.type_of(name))
        else:
            return False
    try:
        outs = fn(ctx, node, args)
    except (ValueError, IndexError, TypeError) as e:
        raise ctx.shape_error(f"cannot evaluate on its constant inputs: {e}") from None
    for name, arr in zip(node.outputs, outs):
        if name:
            ctx.define_constant(name, arr)
    return True


# -- sources ----------------------------------------------------------------------
_CONSTANT_ATTRS = {
    "value": lambda v: v,
    "value_float": lambda v: np.array(v, np.float32),
    "value_floats": lambda v: np.array(v, np.float32),
    "value_int": lambda v: np.array(v, np.int64),
    "value_ints": lambda v: np.array(v, np.int64),
}


@folder("Constant")
def _constant(ctx, node, args):
    for key, convert in _CONSTANT_ATTRS.items():
        if key in node.attrs:
            return [convert(node.attrs[key])]
    raise ctx.unsupported(f"only the attributes {sorted(_CONSTANT_ATTRS)} are supported, got {sorted(node.attrs)}")


@folder("ConstantOfShape")
def _constant_of_shape(ctx, node, args):
    value = node.attrs.get("value", np.zeros(1, np.float32))
    return [np.full(tuple(int(d) for d in args[0]), value.reshape(-1)[0], dtype=value.dtype)]


@folder("Range")
def _range(ctx, node, args):
    start, limit, delta = (a.reshape(()) for a in args)
    return [np.arange(start, limit, delta).astype(start.dtype)]


@folder("Shape", type_only=True)
def _shape(ctx, node, args):
    dims = args[0].shape
    end = node.attrs.get("end", len(dims))
    return [np.array(dims[node.attrs.get("start", 0):end], dtype=np.int64)]


@folder("Size", type_only=True)
def _size(ctx, node, args):
    return [np.array(int(np.prod(args[0].shape, dtype=np.int64)), dtype=np.int64)]


# -- data movement ----------------------------------------------------------------
@folder("Identity", "Dropout")
def _identity(ctx, node, args):
    # Dropout at inference is the identity; its optional mask output is all true.
    return [args[0], np.ones(args[0].shape, dtype=bool)]


@folder("Cast")
def _cast(ctx, node, args):
    return [args[0].astype(onnx.helper.tensor_dtype_to_np_dtype(node.attrs["to"]))]


@folder("Gather")
def _gather(ctx, node, args):
    return [np.take(args[0], args[1].astype(np.int64), axis=node.attrs.get("axis", 0))]


@folder("Slice")
def _slice(ctx, node, args):
    x = args[0]
    if ctx.opset < 10:
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes, steps = node.attrs.get("axes"), None
    else:
        starts, ends = args[1], args[2]
        axes = args[3] if len(args) > 3 else None
        steps = args[4] if len(args) > 4 else None
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        index[int(a) % x.ndim] = slice(int(s), int(e), int(st))
    return [x[tuple(index)]]


@folder("Concat")
def _concat(ctx, node, args):
    return [np.concatenate(args, axis=node.attrs["axis"])]


@folder("Reshape")
def _reshape(ctx, node, args):
    shape = resolve_reshape(args[0].shape, args[1], bool(node.attrs.get("allowzero", 0)))
    return [args[0].reshape(shape)]


@folder("Flatten")
def _flatten(ctx, node, args):
    return [args[0].reshape(flatten_shape(args[0].shape, node.attrs.get("axis", 1)))]


@folder("Squeeze")
def _squeeze(ctx, node, args):
    return [args[0].reshape(squeeze_shape(args[0].shape, squeeze_axes(ctx, node)))]


@folder("Unsqueeze")
def _unsqueeze(ctx, node, args):
    return [args[0].reshape(unsqueeze_shape(args[0].shape, squeeze_axes(ctx, node)))]


@folder("Transpose")
def _transpose(ctx, node, args):
    return [np.transpose(args[0], node.attrs.get("perm"))]


@folder("Expand")
def _expand(ctx, node, args):
    shape = np.broadcast_shapes(args[0].shape, tuple(int(d) for d in args[1]))
    return [np.broadcast_to(args[0], shape).copy()]


# -- arithmetic -------------------------------------------------------------------
def _same_dtype(fn):
    """Wrap a NumPy function so the result keeps the first input's dtype, as ONNX requires."""
    return lambda ctx, node, args: [np.asarray(fn(*args)).astype(args[0].dtype, copy=False)]


def _divide(a, b):
    # ONNX integer Div truncates toward zero (C semantics); NumPy's // floors.
    if np.issubdtype(a.dtype, np.integer):
        return np.trunc(np.true_divide(a, b))
    return np.divide(a, b)


for _op, _fn in {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _divide, "Pow": np.power,
    "Neg": np.negative, "Abs": np.abs, "Floor": np.floor, "Ceil": np.ceil, "Sqrt": np.sqrt,
    "Relu": lambda x: np.maximum(x, 0), "Sum": lambda *xs: sum(xs[1:], xs[0]),
    "Max": lambda *xs: np.maximum.reduce(np.broadcast_arrays(*xs)),
    "Min": lambda *xs: np.minimum.reduce(np.broadcast_arrays(*xs)),
}.items():
    folder(_op)(_same_dtype(_fn))


@folder("Equal")
def _equal(ctx, node, args):
    return [np.equal(args[0], args[1])]


@folder("Where")
def _where(ctx, node, args):
    return [np.where(args[0], args[1], args[2])]
