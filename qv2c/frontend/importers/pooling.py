"""Importers of the pooling ops: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool.

    MaxPool(x) {kernel_shape = [3, 3], strides = [2, 2], auto_pad = "SAME_UPPER"}
      ==> qv.maxpool(%x) {ceil_mode = 0, dilations = [1, 1], kernel = [3, 3], pads = [0, 0, 1, 1], strides = [2, 2]}

MaxPool's optional second output (argmax indices) and a non-default
`storage_order` are rejected; so is a dilated AveragePool (opset 19), which the
IR's `qv.avgpool` cannot express.
"""

from __future__ import annotations

from qv2c.frontend.importers.window import read_window
from qv2c.frontend.registry import importer


@importer("MaxPool")
def max_pool(ctx, node):
    if node.output(1) and ctx.is_read(node.output(1)):
        raise ctx.unsupported("the second output (argmax indices) is not supported; export MaxPool without it")
    if node.attrs.get("storage_order", 0) != 0:
        raise ctx.unsupported("storage_order must be 0 (row major)")
    x = ctx.value(node.inputs[0])
    win = read_window(ctx, node, x.type.shape[2:])
    y = ctx.emit("qv.maxpool", [x], kernel=win.kernel, strides=win.strides, pads=win.pads,
                 dilations=win.dilations, ceil_mode=int(node.attrs.get("ceil_mode", 0)))
    ctx.define(node.outputs[0], y)


@importer("AveragePool")
def average_pool(ctx, node):
    x = ctx.value(node.inputs[0])
    win = read_window(ctx, node, x.type.shape[2:])
    if win.dilations != [1, 1]:
        raise ctx.unsupported(f"dilations {win.dilations} are not supported for AveragePool")
    y = ctx.emit("qv.avgpool", [x], kernel=win.kernel, strides=win.strides, pads=win.pads,
                 ceil_mode=int(node.attrs.get("ceil_mode", 0)),
                 count_include_pad=int(node.attrs.get("count_include_pad", 0)))
    ctx.define(node.outputs[0], y)


@importer("GlobalAveragePool")
def global_average_pool(ctx, node):
    ctx.define(node.outputs[0], ctx.emit("qv.global_avgpool", [ctx.value(node.inputs[0])]))


@importer("GlobalMaxPool")
def global_max_pool(ctx, node):
    """A max pool whose window is the whole (2-D) image."""
    x = ctx.value(node.inputs[0])
    if x.type.rank != 4:
        raise ctx.unsupported(f"only 4-D (NCHW) inputs are supported, got {list(x.type.shape)}")
    ctx.define(node.outputs[0], ctx.emit("qv.maxpool", [x], kernel=list(x.type.shape[2:])))
