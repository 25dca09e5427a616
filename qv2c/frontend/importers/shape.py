"""Importers of the data-movement ops: Reshape, Flatten, Squeeze, Unsqueeze, Transpose,
Concat, Pad, and the inference no-ops Identity, Dropout and Cast-to-float.

Every reshaping op becomes `qv.reshape` with a static target shape, resolved here
with ONNX semantics (`onnx_shapes.py`):

    Flatten(x: f32[N,512,1,1])          ==> qv.reshape(%x) {shape = [N, 512]}
    Unsqueeze(x: f32[N,10], axes=[2,3]) ==> qv.reshape(%x) {shape = [N, 10, 1, 1]}

Identity and Dropout emit nothing: their output is bound to their input.

Batch rebinding: a model exported with batch 1 often reshapes to a literal target such
as [1, 1280].  When the importer imposed another batch (`batch_size=N`), the Reshape's
input starts with N, and the target is a valid reshape of one sample (it was at batch
1), the literal 1 is read as the batch: the target becomes [N, 1280], which applies the
exported per-sample reshape to every image and never mixes images.  `0` and `-1` as the
first target dim follow the batch anyway (and Flatten always does).  Any other target
that no longer fits raises a `ShapeError` that names the imposed batch.
"""

from __future__ import annotations

import numpy as np
import onnx

from qv2c.frontend.onnx_shapes import (
    flatten_shape,
    normalize_axis,
    resolve_reshape,
    squeeze_axes,
    squeeze_shape,
    unsqueeze_shape,
)
from qv2c.frontend.registry import importer


def _reshape_to(ctx, node, shape_fn):
    """Emit `qv.reshape` of input 0 to `shape_fn(input_shape)`; ValueErrors become ShapeErrors."""
    x = ctx.value(node.inputs[0])
    try:
        shape = shape_fn(x.type.shape)
    except ValueError as e:
        hint = "" if ctx.bound_batch in (None, 1) else (
            f" (the model is imported with batch {ctx.bound_batch}; export it with a dynamic batch)")
        raise ctx.shape_error(f"{e}{hint}") from None
    ctx.define(node.outputs[0], ctx.emit("qv.reshape", [x], shape=[int(d) for d in shape]))


@importer("Reshape")
def reshape(ctx, node):
    target = np.asarray(ctx.constant(node.inputs[1], "the shape input")).reshape(-1)
    x_shape = ctx.type_of(node.inputs[0]).shape
    allowzero = bool(node.attrs.get("allowzero", 0))
    if _reshapes_one_sample(ctx.bound_batch, x_shape, target, allowzero):
        target = np.concatenate([[x_shape[0]], target[1:]])  # the exported per-sample reshape, at batch N
    _reshape_to(ctx, node, lambda s: resolve_reshape(s, target, allowzero))


def _reshapes_one_sample(batch, x_shape, target, allowzero: bool) -> bool:
    """Whether `target` hard-codes batch 1 for an input the importer rebound to batch N != 1: its first
    dim is a literal 1, the input's first dim is N, and the target reshapes a single sample."""
    if batch in (None, 1) or not x_shape or x_shape[0] != batch or not target.size or int(target[0]) != 1:
        return False
    try:
        resolve_reshape((1, *x_shape[1:]), target, allowzero)
    except ValueError:
        return False
    return True


@importer("Flatten")
def flatten(ctx, node):
    _reshape_to(ctx, node, lambda s: flatten_shape(s, node.attrs.get("axis", 1)))


@importer("Squeeze")
def squeeze(ctx, node):
    axes = squeeze_axes(ctx, node)
    _reshape_to(ctx, node, lambda s: squeeze_shape(s, axes))


@importer("Unsqueeze")
def unsqueeze(ctx, node):
    axes = squeeze_axes(ctx, node)  # required by the schema (checked before import)
    _reshape_to(ctx, node, lambda s: unsqueeze_shape(s, axes))


@importer("Transpose")
def transpose(ctx, node):
    x = ctx.value(node.inputs[0])
    perm = node.attrs.get("perm", list(range(x.type.rank))[::-1])
    ctx.define(node.outputs[0], ctx.emit("qv.transpose", [x], perm=[int(p) for p in perm]))


@importer("Concat")
def concat(ctx, node):
    operands = [ctx.value(n) for n in node.inputs if n]
    try:
        axis = normalize_axis(int(node.attrs["axis"]), operands[0].type.rank)
    except ValueError as e:
        raise ctx.shape_error(f"bad axis: {e}") from None
    ctx.define(node.outputs[0], ctx.emit("qv.concat", operands, axis=axis))


@importer("Pad")
def pad(ctx, node):
    """Padding in the modes "constant", "reflect", "edge" and ("wrap", opset 19 on); pads are an attribute
    before opset 11, constant inputs from 11 on.  A reflect pad must be narrower than its axis (the
    reflection of a reflection is where NumPy and ONNX runtimes part ways)."""
    mode = node.attrs.get("mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if mode not in ("constant", "reflect", "edge", "wrap") or (mode == "wrap" and ctx.opset < 19):
        raise ctx.unsupported(f"mode {mode!r} is not supported at opset {ctx.opset}; 'constant', 'reflect' and "
                              "'edge' are (and 'wrap' from opset 19)")
    x = ctx.value(node.inputs[0])
    rank = x.type.rank
    if ctx.opset < 11:
        pads = list(node.attrs.get("pads", node.attrs.get("paddings", [])))
        value = float(node.attrs.get("value", 0.0))
    else:
        pads = [int(p) for p in ctx.constant(node.inputs[1], "the pads input").reshape(-1)]
        value = float(ctx.constant(node.input(2), "the constant_value input").reshape(())) if node.input(2) else 0.0
        if node.input(3):
            pads = _pads_for_axes(ctx, pads, ctx.constant(node.input(3), "the axes input"), rank)
    if len(pads) != 2 * rank:
        raise ctx.shape_error(f"{len(pads)} pads for an input of rank {rank}; expected {2 * rank}")
    if min(pads) < 0:
        raise ctx.unsupported(f"negative pads {pads} (cropping) are not supported")
    if mode == "reflect" and any(max(pads[i], pads[i + rank]) >= d for i, d in enumerate(x.type.shape) if d):
        raise ctx.unsupported(f"reflect pads {pads} reach past an axis of {list(x.type.shape)}; each must be "
                              "smaller than its axis")
    ctx.define(node.outputs[0], ctx.emit("qv.pad", [x], pads=[int(p) for p in pads], mode=mode, value=value))


def _pads_for_axes(ctx, pads, axes, rank):
    """Expand opset-18 pads given only for `axes` to pads for every axis."""
    axes = [normalize_axis(int(a), rank) for a in np.asarray(axes).reshape(-1)]
    if len(pads) != 2 * len(axes):
        raise ctx.shape_error(f"{len(pads)} pads for {len(axes)} axes")
    full = [0] * (2 * rank)
    for i, a in enumerate(axes):
        full[a], full[a + rank] = pads[i], pads[i + len(axes)]
    return full


@importer("Identity")
def identity(ctx, node):
    ctx.define(node.outputs[0], ctx.value(node.inputs[0]))


@importer("Dropout")
def dropout(ctx, node):
    """Inference dropout is the identity; a read mask output or constant training_mode=1 is rejected."""
    if node.output(1) and ctx.is_read(node.output(1)):
        raise ctx.unsupported("the mask output is read; export the model in inference (eval) mode")
    training = node.input(2)
    if training and ctx.is_constant(training) and bool(ctx.constant(training).reshape(())):
        raise ctx.unsupported("training_mode is true; export the model in inference (eval) mode")
    ctx.define(node.outputs[0], ctx.value(node.inputs[0]))


@importer("Cast")
def cast(ctx, node):
    """A run-time Cast is accepted only when it is a no-op (float32 to float32)."""
    x = ctx.value(node.inputs[0])
    to = onnx.helper.tensor_dtype_to_np_dtype(node.attrs["to"])
    if to != x.type.numpy_dtype:
        raise ctx.unsupported(f"casting a run-time {x.type.dtype} tensor to {to} is not supported")
    ctx.define(node.outputs[0], x)
