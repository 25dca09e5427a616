"""The importer table: ONNX op type -> function that emits IR for one node.

    @importer("Relu")
    def relu(ctx, node):
        ctx.define(node.outputs[0], ctx.emit("qv.relu", [ctx.value(node.inputs[0])]))

An importer reads its inputs through the context, emits IR ops and defines every
output it produces. `lookup` raises `UnsupportedOpError` for op types nobody
registered, naming the node, the opset and the ops we do support, so a user can
see at once whether re-exporting the model could help.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from qv2c.errors import UnsupportedOpError

if TYPE_CHECKING:
    from qv2c.frontend.context import ImportContext, Node

Importer = Callable[["ImportContext", "Node"], None]
IMPORTERS: dict[str, Importer] = {}


def importer(*op_types: str):
    """Register the decorated function as the importer of each ONNX op type in `op_types`."""

    def register(fn: Importer) -> Importer:
        for t in op_types:
            if t in IMPORTERS:
                raise ValueError(f"two importers registered for ONNX op {t!r}")
            IMPORTERS[t] = fn
        return fn

    return register


def load_all() -> None:
    """Import the importer modules so their `@importer` functions register."""
    import qv2c.frontend.importers  # noqa: F401


def supported_ops() -> list[str]:
    """Sorted ONNX op types with an importer (run-time ops)."""
    load_all()
    return sorted(IMPORTERS)


def lookup(ctx: ImportContext, node: Node, foldable: Iterable[str]) -> Importer:
    """The importer of `node`'s op type, or an `UnsupportedOpError` explaining why there is none.

    `foldable` lists op types the constant folder evaluates; those without an importer are
    supported only when all their inputs are compile-time constants, and the message says so.
    """
    load_all()
    fn = IMPORTERS.get(node.op_type)
    if fn is not None:
        return fn
    constant_only = sorted(set(foldable) - set(IMPORTERS))
    if node.op_type in constant_only:
        runtime = [n for n in node.inputs if n and not ctx.is_constant(n)]
        raise ctx.unsupported(f"op {node.op_type!r} is supported only on compile-time constant inputs, but input "
                              f"{runtime[0]!r} is computed at run time; run-time ops: {', '.join(supported_ops())}")
    raise UnsupportedOpError(f"{ctx.source}: ONNX op {node.op_type!r} (node {node.label!r}, opset {ctx.opset}) is not "
                             f"supported; supported ops: {', '.join(supported_ops())}; constant-folded only: "
                             f"{', '.join(sorted(constant_only))}")
