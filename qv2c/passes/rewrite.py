"""Rewriting helpers the transform passes share: fresh names and replacing an op.

Graph outputs are the module's interface (`interpret` and the runtime return
outputs by name), so `replace_op` never changes an output's name: the value that
takes an output's place also takes its name, and a rewrite that would have to
rename a graph input or another output is refused.
"""

from __future__ import annotations

from qv2c.ir.core import Graph, Module, Op, Value


def fresh_name(module: Module, base: str) -> str:
    """`base`, or `base_1`, `base_2`, ... : a name no value of `module` has yet."""
    taken = {v.name for v in module.inputs} | {c.name for c in module.constants}
    taken |= {r.name for op in module.walk() for r in op.results}
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def replace_op(graph: Graph, op: Op, new: Value) -> bool:
    """Make every reader of `op`'s single result read `new` instead, then erase `op`.

    If the result is a graph output, `new` takes its place and its name. Returns
    False and changes nothing when `new` is a graph input or already an output,
    because the output could then only keep its name by renaming those.
    """
    old = op.result
    if old in graph.outputs:
        if new in graph.inputs or new in graph.outputs:
            return False
        graph.outputs = [new if v is old else v for v in graph.outputs]
        new.name = old.name
    old.replace_all_uses_with(new)
    graph.erase(op)
    return True
