"""Importers of the compute-heavy ops: Conv, Gemm, MatMul.

    Conv(x, W, B) {auto_pad = "SAME_UPPER", strides = [2, 2]}
      ==> qv.conv(%x, %W, %B) {dilations = [1, 1], group = 1, pads = [0, 0, 1, 1], strides = [2, 2]}
"""

from __future__ import annotations

from qv2c.frontend.importers.window import read_window
from qv2c.frontend.registry import importer


@importer("Conv")
def conv(ctx, node):
    """2-D convolution, grouped or depthwise; `auto_pad` is resolved to explicit pads."""
    x, w = ctx.value(node.inputs[0]), ctx.value(node.inputs[1])
    if x.type.rank != w.type.rank:
        raise ctx.shape_error(f"input {list(x.type.shape)} and weight {list(w.type.shape)} differ in rank")
    win = read_window(ctx, node, x.type.shape[2:], kernel=list(w.type.shape[2:]))
    operands = [x, w] + ([ctx.value(node.input(2))] if node.input(2) else [])
    y = ctx.emit("qv.conv", operands, strides=win.strides, pads=win.pads, dilations=win.dilations,
                 group=int(node.attrs.get("group", 1)))
    ctx.define(node.outputs[0], y)


@importer("Gemm")
def gemm(ctx, node):
    """alpha * op(A) @ op(B) + beta * C with the optional C (opset >= 11) omitted when absent."""
    a = node.attrs
    operands = [ctx.value(node.inputs[0]), ctx.value(node.inputs[1])]
    if node.input(2):
        operands.append(ctx.value(node.input(2)))
    y = ctx.emit("qv.gemm", operands, alpha=float(a.get("alpha", 1.0)), beta=float(a.get("beta", 1.0)),
                 trans_a=int(a.get("transA", 0)), trans_b=int(a.get("transB", 0)))
    ctx.define(node.outputs[0], y)


@importer("MatMul")
def matmul(ctx, node):
    """NumPy-style matmul (batched, broadcasting)."""
    ctx.define(node.outputs[0], ctx.emit("qv.matmul", [ctx.value(n) for n in node.inputs[:2]]))
