"""Importers of the activations: Relu, Sigmoid, Clip and Softmax.

Clip's bounds are attributes before opset 11 and optional constant inputs from
opset 11 on; both become float attributes of `qv.clip` (missing = +-inf).

Softmax before opset 13 coerces its input to 2-D at `axis` (rows = dims before
`axis`, columns = the rest) and normalises each row. That equals a softmax along
`axis` whenever every dim after `axis` is 1, which covers CNN classifiers; only
otherwise do we spell out the coercion:

    Softmax(x: f32[2,3,4]) {axis = 1}   (opset 11)
      ==> qv.reshape {shape = [2, 12]} -> qv.softmax {axis = 1} -> qv.reshape {shape = [2, 3, 4]}
"""

from __future__ import annotations

import math

import numpy as np

from qv2c.frontend.onnx_shapes import flatten_shape, normalize_axis
from qv2c.frontend.registry import importer


@importer("Relu")
def relu(ctx, node):
    ctx.define(node.outputs[0], ctx.emit("qv.relu", [ctx.value(node.inputs[0])]))


@importer("Sigmoid")
def sigmoid(ctx, node):
    ctx.define(node.outputs[0], ctx.emit("qv.sigmoid", [ctx.value(node.inputs[0])]))


@importer("Clip")
def clip(ctx, node):
    if ctx.opset < 11:
        lo, hi = node.attrs.get("min", -math.inf), node.attrs.get("max", math.inf)
    else:
        lo, hi = (_bound(ctx, node.input(i), what, default)
                  for i, what, default in ((1, "the min input", -math.inf), (2, "the max input", math.inf)))
    y = ctx.emit("qv.clip", [ctx.value(node.inputs[0])], min=float(lo), max=float(hi))
    ctx.define(node.outputs[0], y)


def _bound(ctx, name, what, default):
    if name is None:
        return default
    arr = ctx.constant(name, what)
    if arr.size != 1:
        raise ctx.shape_error(f"{what} should be a scalar, got shape {list(arr.shape)}")
    return float(arr.reshape(()))


@importer("Softmax")
def softmax(ctx, node):
    x = ctx.value(node.inputs[0])
    shape = x.type.shape
    legacy = ctx.opset < 13
    try:
        axis = normalize_axis(node.attrs.get("axis", 1 if legacy else -1), x.type.rank)
    except ValueError as e:
        raise ctx.shape_error(str(e)) from None
    if not legacy or int(np.prod(shape[axis + 1:], dtype=np.int64)) == 1:
        ctx.define(node.outputs[0], ctx.emit("qv.softmax", [x], axis=axis))
        return
    flat = ctx.emit("qv.reshape", [x], shape=list(flatten_shape(shape, axis)))
    soft = ctx.emit("qv.softmax", [flat], axis=1)
    ctx.define(node.outputs[0], ctx.emit("qv.reshape", [soft], shape=list(shape)))
