"""Importers of the broadcasting binary ops (Add, Sub, Mul, Div) and n-ary Sum.

Sum of n inputs becomes a left-to-right chain of n - 1 `qv.add` ops (a single
input is just aliased), so later passes see only binary adds:

    Sum(a, b, c)  ==>  %0 = qv.add(%a, %b); %s = qv.add(%0, %c)
"""

from __future__ import annotations

from qv2c.frontend.registry import importer

_BINARY = {"Add": "qv.add", "Sub": "qv.sub", "Mul": "qv.mul", "Div": "qv.div"}


@importer(*_BINARY)
def binary(ctx, node):
    operands = [ctx.value(n) for n in node.inputs[:2]]
    ctx.define(node.outputs[0], ctx.emit(_BINARY[node.op_type], operands))


@importer("Sum")
def sum_(ctx, node):
    acc = ctx.value(node.inputs[0])
    for name in node.inputs[1:]:
        acc = ctx.emit("qv.add", [acc, ctx.value(name)])
    ctx.define(node.outputs[0], acc)
