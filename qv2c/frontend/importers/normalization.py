"""Importers of the normalisation ops: BatchNormalization (inference form) and LRN.

    BatchNormalization(x, scale, B, mean, var) {epsilon = 1e-3}
      ==> qv.batchnorm(%x, %scale, %B, %mean, %var) {epsilon = 0.001}

The IR keeps ONNX's operand order. Training-mode batch norm (batch statistics,
running-mean outputs) and the non-spatial form of opsets < 9 are rejected.
"""

from __future__ import annotations

from qv2c.frontend.registry import importer


@importer("BatchNormalization")
def batch_normalization(ctx, node):
    a = node.attrs
    if a.get("training_mode", 0):
        raise ctx.unsupported("training_mode=1 is not supported; export the model in inference (eval) mode")
    if not a.get("spatial", 1):
        raise ctx.unsupported("spatial=0 (per-element statistics) is not supported; export with spatial=1")
    extra = [n for n in node.outputs[1:] if n and ctx.is_read(n)]
    if extra:
        raise ctx.unsupported(f"the training outputs {extra} (running statistics) are read; export in eval mode")
    operands = [ctx.value(n) for n in node.inputs[:5]]
    ctx.define(node.outputs[0], ctx.emit("qv.batchnorm", operands, epsilon=float(a.get("epsilon", 1e-5))))


@importer("LRN")
def lrn(ctx, node):
    a = node.attrs
    y = ctx.emit("qv.lrn", [ctx.value(node.inputs[0])], size=int(a["size"]), alpha=float(a.get("alpha", 1e-4)),
                 beta=float(a.get("beta", 0.75)), bias=float(a.get("bias", 1.0)))
    ctx.define(node.outputs[0], y)
