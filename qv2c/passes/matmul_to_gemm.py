"""`matmul-to-gemm`: a MatMul of a 2-D activation by a constant 2-D weight is a fully connected layer.

Exporters such as tf2onnx write a dense layer as `MatMul` (and a following `Add` of the bias) where
PyTorch writes `Gemm`.  As a `qv.matmul` it runs the general strided kernel in fp32 and is not a
layer QuantuneV2 can quantize; as a `qv.gemm` with a constant B it is an FC layer: packed weights,
the register-blocked micro-kernels, int8 with the conv/gemm layers, and its own line in the
sensitivity table.  A constant bias added right after (shape [N] or [1, N], the matmul's only reader)
becomes the gemm's C operand, as a Gemm export would have it.

    before:  %m = qv.matmul(%x, %w) : f32[1,10]
             %y = qv.add(%m, %b) : f32[1,10]
    after:   %y = qv.gemm(%x, %w, %b) {alpha = 1.0, beta = 1.0, trans_a = 0, trans_b = 0} : f32[1,10]

`alpha * A @ B + beta * C` with alpha = beta = 1 is the same arithmetic as `A @ B + C` (one float32
product sum and one add).  What stays a `qv.matmul`: A of another rank (batched products), a B that
is computed at run time, and non-f32 operands.  A bias of another shape stays a `qv.add`.
"""

from __future__ import annotations

from qv2c.ir.builder import Builder
from qv2c.ir.core import Module, Op, Value
from qv2c.passes.registry import register_pass
from qv2c.passes.rewrite import replace_op

_GEMM_ATTRS = {"alpha": 1.0, "beta": 1.0, "trans_a": 0, "trans_b": 0}


@register_pass("matmul-to-gemm")
def run(module: Module) -> None:
    """Rewrite every `qv.matmul` of a 2-D f32 activation by a constant 2-D f32 weight as `qv.gemm`."""
    for op in [op for op in module.ops if op.name == "qv.matmul"]:
        a, b = op.operands
        if not (a.type.rank == 2 and b.type.rank == 2 and b.is_constant and a.type.dtype == b.type.dtype == "f32"):
            continue
        bias_add, bias = _bias_add(module, op)
        target = bias_add if bias_add is not None else op
        operands = [a, b] + ([bias] if bias is not None else [])
        gemm = Builder(module, insert_before=op).create("qv.gemm", operands, meta=dict(op.meta),
                                                        result_names=[target.result.name], **_GEMM_ATTRS)
        replace_op(module, target, gemm.result)  # a new value: never a graph input or output already
        if bias_add is not None:
            module.erase(op)


def _bias_add(module: Module, matmul: Op) -> tuple[Op | None, Value | None]:
    """The `qv.add` of a constant [N] / [1, N] f32 bias that is the matmul's only reader, and that bias."""
    m = matmul.result
    if len(m.uses) != 1 or m in module.outputs:
        return None, None
    add, _ = m.uses[0]
    if add.name != "qv.add" or add.parent is not module:
        return None, None
    other = add.operands[1] if add.operands[0] is m else add.operands[0]
    n = m.type.shape[1]
    if not (other.is_constant and other.type.dtype == "f32" and other.type.shape in ((n,), (1, n))):
        return None, None
    return add, other
