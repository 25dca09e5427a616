"""`clone_module`: a structural copy of a module, to change without touching the original.

    copy, mapping = clone_module(module)   # mapping[id(old value)] -> its copy
    run_pipeline(copy, ["fuse"])           # the original keeps its ops and values

Ops, values and bodies are new objects (names, types, attrs and meta copied); constant
payloads are shared, not copied (no pass writes into a constant's array).
"""

from __future__ import annotations

from qv2c.ir.core import Graph, Module, Op, Value


def clone_module(module: Module) -> tuple[Module, dict[int, Value]]:
    """A copy of `module` and the map from `id` of each of its values (inputs, constants, op
    results, body values) to the copy's value."""
    copy = Module(module.name)
    mapping: dict[int, Value] = {}
    for c in module.constants:
        mapping[id(c)] = copy.add_constant(c.data, c.name, c.type)
    for v in module.inputs:
        mapping[id(v)] = copy.add_input(Value(v.type, v.name))
    _clone_ops(module, copy, mapping)
    return copy, mapping


def _clone_ops(src: Graph, dst: Graph, mapping: dict[int, Value]) -> None:
    for op in src.ops:
        body = None
        if op.body is not None:
            body = Graph()
            for v in op.body.inputs:
                mapping[id(v)] = body.add_input(Value(v.type, v.name))
            _clone_ops(op.body, body, mapping)
        new = Op(op.name, [mapping[id(v)] for v in op.operands], [r.type for r in op.results], op.attrs, op.meta,
                 body, [r.name for r in op.results])
        dst.append(new)
        for old, r in zip(op.results, new.results):
            mapping[id(old)] = r
    dst.outputs = [mapping[id(v)] for v in src.outputs]
