"""What a "layer" is for mixed precision: a conv or gemm with constant weights.

These are the ops whose precision QuantuneV2 chooses (they hold nearly all the
MACs); everything else follows its neighbours. A layer is named by the ONNX node it
came from, which is what users write in `keep_fp32=[...]` and what onnxruntime's
`nodes_to_exclude` expects.
"""

from __future__ import annotations

from qv2c.ir.core import Module, Op
from qv2c.ir.fused import is_quantizable_layer


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
