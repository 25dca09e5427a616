"""`qv.fused`: what a fused group is, which ops may anchor one, and how to decode one.

The `fuse` pass (`qv2c/passes/fuse.py`) builds the groups; the code generator
(`qv2c/codegen/lower.py`) decodes them with `fused_parts` into the terms the kernel entry
points take.  Both read the definitions here, so neither imports the other.

An anchor is a conv/gemm whose weights the kernels pack at compile time: an fp32 conv or
gemm that is a quantizable layer (`is_quantizable_layer`: constant weight; a gemm without
trans_a and with a per-column bias), or a `qv.qconv` / `qv.qgemm` with a constant weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qv2c.ir.core import Op, Value
from qv2c.ir.types import TensorType

FUSED = "qv.fused"
#: the fp32 ops a layer (and a QuantuneV2 candidate) can be
LAYER_OPS = ("qv.conv", "qv.gemm")
FP32_ANCHORS = LAYER_OPS
INT8_ANCHORS = ("qv.qconv", "qv.qgemm")
ACTIVATIONS = ("qv.relu", "qv.clip")
ELEMENTWISE = ("qv.relu", "qv.clip", "qv.sigmoid", "qv.quantize", "qv.dequantize", "qv.requantize", "qv.qclip")


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


def is_anchor(op: Op) -> bool:
    """Whether `op` is a conv/gemm a kernel runs: weights packed at compile time."""
    if op.name in FP32_ANCHORS:
        return is_quantizable_layer(op) and op.results[0].type.dtype == "f32"
    if op.name in INT8_ANCHORS:
        return op.operands[1].is_constant
    return False


def other_operand(op: Op, prev: Value) -> Value:
    """The operand of a binary `op` that is not `prev` (a residual add's shortcut)."""
    return op.operands[1] if op.operands[0] is prev else op.operands[0]


@dataclass(frozen=True)
class FusedParts:
    """What one `qv.fused` op computes, in the terms the kernel entry points take.

    For an elementwise chain `anchor` is None and only `pattern`, `ops` and
    `result_type` mean anything (its ops are rendered one by one).
    """

    #: e.g. "qv.qconv+qv.dequantize+qv.add+qv.relu"
    pattern: str
    #: the body ops, in order
    ops: tuple[Op, ...]
    #: the conv/gemm (qv.conv, qv.gemm, qv.qconv, qv.qgemm), first op of the body
    anchor: Op | None
    #: an int8 anchor's own `act` ("none", "relu", "relu6"), applied to its int8 result before
    #: any qadd or dequantize; "none" for fp32 anchors
    anchor_act: str
    #: index into the fused op's operands (= body inputs) of the residual, or None
    residual: int | None
    #: the clamp after the residual: the absorbed qv.relu / qv.clip, or the qv.qadd's `act`:
    #: "none" | "relu" | "relu6" | "clip"
    activation: str
    #: its bounds in real (fp32) units: none (-inf, inf), relu (0, inf), relu6 (0, 6), clip (min, max)
    bounds: tuple[float, float]
    #: "none" (output in the anchor's precision), "quantize" (fp32 -> int8), "dequantize" (int8 -> fp32)
    boundary: str
    #: the type the kernel writes (the fused op's result type)
    result_type: TensorType


def fused_parts(op: Op) -> FusedParts:
    """Decode a `qv.fused` op built by the `fuse` pass; raises ValueError for any other op."""
    if op.name != FUSED or op.body is None or not op.body.ops:
        raise ValueError(f"fused_parts needs a {FUSED} op with a body, got {op.location}")
    ops = tuple(op.body.ops)
    pattern = "+".join(o.name for o in ops)
    anchor = ops[0] if ops[0].name in FP32_ANCHORS + INT8_ANCHORS else None
    residual, activation, bounds, boundary = None, "none", (-math.inf, math.inf), "none"
    if anchor is not None:
        for prev, o in zip(ops, ops[1:]):
            if o.name in ("qv.add", "qv.qadd"):
                residual = op.body.inputs.index(other_operand(o, prev.result))
            if o.name == "qv.qadd":
                activation = o.attrs.get("act", "none")
                bounds = (0.0, math.inf) if activation == "relu" else bounds
            elif o.name in ACTIVATIONS:
                bounds = (0.0, math.inf) if o.name == "qv.relu" else (o.attrs["min"], o.attrs["max"])
                activation = _activation_kind(bounds)
            elif o.name in ("qv.quantize", "qv.dequantize"):
                boundary = o.name.removeprefix("qv.")
    anchor_act = anchor.attrs.get("act", "none") if anchor is not None and anchor.name in INT8_ANCHORS else "none"
    return FusedParts(pattern, ops, anchor, anchor_act, residual, activation, bounds, boundary, op.result.type)


def _activation_kind(bounds: tuple[float, float]) -> str:
    return {(0.0, math.inf): "relu", (0.0, 6.0): "relu6", (-math.inf, math.inf): "none"}.get(bounds, "clip")
