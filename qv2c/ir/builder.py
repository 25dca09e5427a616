"""`Builder`: create ops with defaults filled in and result types inferred.

    b = Builder(module)
    y = b.op("qv.conv", [x, w, bias], strides=[2, 2], pads=[1, 1, 1, 1])
    z = b.op("qv.relu", [y], meta={"onnx_node": "relu1"})

Ops are appended to the graph, or inserted before `b.insert_before` when a pass
sets it. Result types come from the op's shape rule (`qv2c.ir.ops`) unless the
caller passes `result_types` (needed for integer results carrying quantization).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qv2c.errors import ShapeError
from qv2c.ir.core import Graph, Op, Value
from qv2c.ir.ops import OPS
from qv2c.ir.types import TensorType


class Builder:
    def __init__(self, graph: Graph, insert_before: Op | None = None):
        self.graph = graph
        self.insert_before = insert_before

    def create(
        self,
        name: str,
        operands: Iterable[Value],
        result_types: list[TensorType] | None = None,
        meta: dict[str, Any] | None = None,
        result_names: list[str | None] | None = None,
        body: Graph | None = None,
        **attrs: Any,
    ) -> Op:
        """Build op `name` and insert it; returns the op."""
        operands = list(operands)
        opdef = OPS.get(name)
        if opdef is not None:
            attrs = {**opdef.defaults, **attrs}
            if result_types is None:
                try:
                    result_types = opdef.infer([v.type for v in operands], attrs)
                except ShapeError as e:
                    node = (meta or {}).get("onnx_node")
                    where = f" (ONNX node {node!r})" if node else ""
                    raise ShapeError(f"{name}{where}: {e}") from None
        if result_types is None:
            raise ValueError(f"op {name!r} has no shape rule: pass result_types")
        op = Op(name, operands, result_types, attrs, meta, body, result_names)
        if self.insert_before is not None:
            self.graph.insert_before(self.insert_before, op)
        else:
            self.graph.append(op)
        return op

    def op(self, name: str, operands: Iterable[Value], **kwargs: Any) -> Value:
        """Build a one-result op and return its result value."""
        return self.create(name, operands, **kwargs).result
