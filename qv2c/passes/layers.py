"""What a "layer" is for mixed precision: a conv or gemm with constant weights.

These are the ops whose precision QuantuneV2 chooses (they hold nearly all the
MACs); everything else follows its neighbours. A layer is named by the ONNX node it
came from, which is what users write in `keep_fp32=[...]` and what onnxruntime's
`nodes_to_exclude` expects.
"""

from __future__ import annotations

from qv2c.ir.core import Module, Op

LAYER_OPS = ("qv.conv", "qv.gemm")


def is_quantizable_layer(op: Op) -> bool:
    """A conv, or a gemm without transposed A, whose weight is a module constant."""
    if op.name not in LAYER_OPS or len(op.operands) < 2 or not op.operands[1].is_constant:
        return False
    if op.name == "qv.gemm":
        if op.attrs.get("trans_a", 0):
            return False
        if len(op.operands) == 3 and not (op.operands[2].is_constant and _per_column(op.operands[2].type.shape,
                                                                                     op.results[0].type.shape[1])):
            return False
    return True


def _per_column(bias_shape: tuple[int, ...], columns: int) -> bool:
    """Whether a Gemm bias C is one value per output column ([N], [1, N], [1], scalar): an int32
    bias of qv.qgemm has exactly that form. ONNX also allows a C that varies by row ([M, N],
    [M, 1]); such a gemm stays fp32 instead of failing when its bias is folded."""
    return all(d == 1 for d in bias_shape[:-1]) and (not bias_shape or bias_shape[-1] in (1, columns))


def layer_name(op: Op) -> str:
    """The user-facing name of a layer: its ONNX node name."""
    return op.meta.get("onnx_node") or op.results[0].name or op.name


def quantizable_layers(module: Module) -> list[Op]:
    """Every quantizable layer in program order."""
    return [op for op in module.ops if is_quantizable_layer(op)]


def layer_macs(op: Op) -> int:
    """Multiply-accumulates of one run of a layer (for reporting cost shares)."""
    w = op.operands[1].type
    out = op.results[0].type
    if op.name == "qv.conv":
        return out.size * w.size // w.shape[0]
    k = w.shape[1] if op.attrs.get("trans_b", 0) else w.shape[0]
    return out.size * k
