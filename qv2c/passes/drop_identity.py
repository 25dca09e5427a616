"""`drop-identity`: remove ops that return their input unchanged.

Importers and other passes leave these behind (a Flatten of an already flat
tensor, ReLU6-style clips without bounds, a batch norm decomposed to `* 1 + 0`).
Removing them saves a kernel launch and a buffer each and, more importantly, keeps
them from standing between ops that later passes want to fuse.

    before:  %f = qv.reshape(%x) {shape = [1, 10]} : f32[1,10]
             %y = qv.mul(%f, %one) : f32[1,10]
             %z = qv.relu(%y) : f32[1,10]
    after:   %z = qv.relu(%x) : f32[1,10]

An op is an identity when it is
- `qv.reshape` to the shape its input already has,
- `qv.transpose` with perm [0, 1, ..., r-1],
- `qv.pad` whose pads are all zero,
- `qv.clip` with min = -inf and max = inf,
- `qv.mul` / `qv.add` with a constant operand that is all ones / all zeros (either
  side), `qv.div` / `qv.sub` by such a constant on the right,
and its result type equals its input's type (so a broadcasting `* ones` that grows
the shape, or changes the quantization, is kept). `x + 0.0` turns -0.0 into +0.0;
that difference is invisible to every op in the IR, so it is treated as identity.

A removed op whose result is a module output hands the output (and its name) to
its input; when the input is a module input or already an output, the op is kept.
"""

from __future__ import annotations

import math

import numpy as np

from qv2c.ir.core import Module, Op, Value
from qv2c.passes.registry import register_pass
from qv2c.passes.rewrite import replace_op

#: binary op -> (neutral constant, operand positions it may take)
_NEUTRAL = {
    "qv.mul": (1, (0, 1)),
    "qv.add": (0, (0, 1)),
    "qv.div": (1, (1,)),
    "qv.sub": (0, (1,)),
}


@register_pass("drop-identity")
def run(module: Module) -> None:
    """Remove every identity op (see the module docstring) from the top-level graph."""
    for op in list(module.ops):
        source = identity_source(op)
        if source is not None and source.type == op.results[0].type:
            replace_op(module, op, source)


def identity_source(op: Op) -> Value | None:
    """The operand `op` passes through unchanged, or None if `op` is not an identity."""
    a = op.attrs
    if op.name == "qv.reshape":
        return op.operands[0] if tuple(a["shape"]) == op.operands[0].type.shape else None
    if op.name == "qv.transpose":
        return op.operands[0] if list(a["perm"]) == list(range(len(a["perm"]))) else None
    if op.name == "qv.pad":
        return op.operands[0] if not any(a["pads"]) else None
    if op.name == "qv.clip":
        return op.operands[0] if a["min"] == -math.inf and a["max"] == math.inf else None
    if op.name in _NEUTRAL:
        neutral, positions = _NEUTRAL[op.name]
        for i in positions:
            c = op.operands[i]
            if c.is_constant and c.type.quant is None and np.all(c.data == neutral):
                return op.operands[1 - i]
    return None
