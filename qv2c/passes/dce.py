"""`dce`: dead code elimination — drop ops nobody reads, then unused constants.

Other passes rewire readers and leave the old producers and constants behind; this
pass is what actually removes them, so those passes can stay simple.

    before:  const %w : f32[8,3,3,3] = b64"..."
             const %w_bnfolded : f32[8,3,3,3] = b64"..."
             %c = qv.conv(%x, %w_bnfolded) {...} : f32[1,8,16,16]
             %dead = qv.relu(%x) : f32[1,3,16,16]
             output %c
    after:   const %w_bnfolded : f32[8,3,3,3] = b64"..."
             %c = qv.conv(%x, %w_bnfolded) {...} : f32[1,8,16,16]
             output %c

An op is dead when none of its results is read by another op or is an output of
its graph; ops are visited last to first so a whole dead chain goes in one run.
Bodies of `qv.fused` ops are cleaned the same way (against the body's `yield`).
No IR op has side effects, so nothing else keeps an op alive. Module inputs are
the model's interface and always stay.
"""

from __future__ import annotations

from qv2c.ir.core import Graph, Module
from qv2c.passes.registry import register_pass


@register_pass("dce")
def run(module: Module) -> None:
    """Erase dead ops (in every graph) and then unused constants."""
    _dce(module)
    module.remove_unused_constants()


def _dce(graph: Graph) -> None:
    outputs = {id(v) for v in graph.outputs}
    for op in reversed(list(graph.ops)):
        if op.body is not None:
            _dce(op.body)
        if not any(r.uses or id(r) in outputs for r in op.results):
            graph.erase(op)
