"""`fold-constants`: evaluate ops whose operands are all constants, at compile time.

Such ops come from exporters (a reshape or transpose of a weight, shape arithmetic
on constant tensors) and from other passes. Running them once here, with the same
reference implementation the interpreter uses (`qv2c.ir.reference.REFERENCE`), is
exact by construction and leaves the later passes fewer ops to think about.

    before:  const %w : f32[4,3] = [...]
             %wt = qv.transpose(%w) {perm = [1, 0]} : f32[3,4]
             %y = qv.matmul(%x, %wt) : f32[1,4]
    after:   const %w : f32[4,3] = [...]
             const %wt : f32[3,4] = [...]
             %y = qv.matmul(%x, %wt) : f32[1,4]

The new constant takes the folded result's name (or `<op>_folded` for an unnamed
one) and its type, quantization included. Ops are visited in program order, so a
chain of constant ops folds in one run. Ops with a body (`qv.fused`), ops without
operands and ops the reference interpreter does not implement are left alone. The
old operand constants are left for `dce`.
"""

from __future__ import annotations

import numpy as np

from qv2c.ir.core import Module, Op
from qv2c.ir.reference import REFERENCE, load_all
from qv2c.passes.registry import register_pass
from qv2c.passes.rewrite import fresh_name, replace_op


@register_pass("fold-constants")
def run(module: Module) -> None:
    """Replace every all-constant op of the top-level graph by its value."""
    load_all()
    for op in list(module.ops):
        fn = REFERENCE.get(op.name)
        if fn is None or op.body is not None or len(op.results) != 1 or not op.operands:
            continue
        if not all(v.is_constant for v in op.operands):
            continue
        _fold(module, op, fn(op, *(v.data for v in op.operands))[0])


def _fold(module: Module, op: Op, value: np.ndarray) -> None:
    r = op.result
    value = np.asarray(value, dtype=r.type.numpy_dtype)
    if value.shape != r.type.shape:
        raise AssertionError(f"reference of {op.location} returned shape {list(value.shape)}, "
                             f"its type says {list(r.type.shape)}")
    # the constant inherits the name of the value it replaces, which leaves with the op
    name = r.name or fresh_name(module, f"{op.name.removeprefix('qv.')}_folded")
    replace_op(module, op, module.add_constant(value, name, type=r.type))
