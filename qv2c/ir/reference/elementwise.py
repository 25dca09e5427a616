"""Reference elementwise and per-channel ops: relu, sigmoid, clip, add/sub/mul/div,
softmax, batchnorm and lrn, with ONNX semantics computed in the operands' float type.

These ops compute on real numbers, so they reject quantized operands (`require_real`)
rather than silently doing arithmetic on raw integer codes. The one exception is
`qv.relu`, which passes int8 through (DESIGN: "let ReLU pass int8 through"): on a
quantized tensor it is `max(q, zero_point)`, exact because real 0 is the code `zero_point`.
"""

from __future__ import annotations

import numpy as np

from qv2c.errors import VerificationError
from qv2c.ir.reference import reference


def require_real(op) -> None:
    """Raise `VerificationError` if any operand of `op` is quantized.

    A fp32-only reference applied to int8 codes would return numbers that look
    plausible and mean nothing, so the interpreter refuses instead.
    """
    for v in op.operands:
        if v.type.quant is not None:
            raise VerificationError(
                f"{op.location}: operand of type {v.type} is quantized, but this op computes on real values; "
                "insert qv.dequantize before it (or run a pass that lowers it to an int8 kernel)"
            )


def as_result(op, y: np.ndarray) -> list[np.ndarray]:
    """`[y]` cast to the op's declared result dtype (a no-op when it already matches), the
    return value of a one-result reference function."""
    return [np.asarray(y).astype(op.result.type.numpy_dtype, copy=False)]


@reference("qv.relu")
def relu(op, x):
    """max(x, 0); on a per-tensor quantized operand, max(q, zero_point) with the same quantization."""
    q_in, q_out = op.operands[0].type.quant, op.result.type.quant
    if q_in is None:
        return as_result(op, np.maximum(x, x.dtype.type(0)))
    if q_in.per_channel or q_in != q_out:
        raise VerificationError(
            f"{op.location}: an int8 ReLU needs per-tensor quantization equal on operand and result, "
            f"got {op.operands[0].type} -> {op.result.type}; dequantize first"
        )
    return as_result(op, np.maximum(x, x.dtype.type(q_in.zero_point[0])))


@reference("qv.sigmoid")
def sigmoid(op, x):
    """1 / (1 + exp(-x)), written with exp(-|x|) so it never overflows."""
    require_real(op)
    e = np.exp(-np.abs(x))
    one = x.dtype.type(1)
    return as_result(op, np.where(x >= 0, one / (one + e), e / (one + e)))


@reference("qv.clip")
def clip(op, x):
    """min(max(x, min), max), ONNX Clip (so min > max gives max everywhere)."""
    require_real(op)
    lo, hi = x.dtype.type(op.attrs["min"]), x.dtype.type(op.attrs["max"])
    return as_result(op, np.minimum(np.maximum(x, lo), hi))


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division truncating toward zero (ONNX Div / C semantics), not NumPy's floor."""
    q = np.floor_divide(a, b)
    return q + ((q < 0) & (q * b != a)).astype(q.dtype)


_BINARY = {"qv.add": np.add, "qv.sub": np.subtract, "qv.mul": np.multiply, "qv.div": np.divide}


@reference(*_BINARY)
def binary(op, a, b):
    """Elementwise arithmetic with NumPy broadcasting; integer division truncates like ONNX."""
    require_real(op)
    if op.name == "qv.div" and np.issubdtype(np.result_type(a, b), np.integer):
        return as_result(op, _int_div(a, b))
    return as_result(op, _BINARY[op.name](a, b))


@reference("qv.softmax")
def softmax(op, x):
    """exp(x - max) / sum(exp(x - max)) along `axis` (ONNX opset >= 13); shifting by the max avoids overflow."""
    require_real(op)
    axis = op.attrs["axis"]
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return as_result(op, e / np.sum(e, axis=axis, keepdims=True))


def _per_channel(p: np.ndarray, rank: int) -> np.ndarray:
    """A [C] parameter reshaped to broadcast along axis 1 of a rank-`rank` tensor."""
    return p.reshape((1, -1) + (1,) * (rank - 2))


@reference("qv.batchnorm")
def batchnorm(op, x, scale, bias, mean, var):
    """Inference BatchNormalization (ONNX operand order X, scale, B, mean, var):
    (x - mean) * (scale / sqrt(var + eps)) + bias, per channel on axis 1."""
    require_real(op)
    eps = x.dtype.type(op.attrs["epsilon"])
    k = scale / np.sqrt(var + eps)
    r = x.ndim
    return as_result(op, (x - _per_channel(mean, r)) * _per_channel(k, r) + _per_channel(bias, r))


@reference("qv.lrn")
def lrn(op, x):
    """ONNX LRN: x / (bias + alpha / size * square_sum) ** beta, where square_sum at channel c
    sums x**2 over channels [c - floor((size-1)/2), c + ceil((size-1)/2)] clipped to the tensor."""
    require_real(op)
    a = op.attrs
    size = a["size"]
    t = x.dtype.type
    lo = (size - 1) // 2
    sq = np.pad(x * x, [(0, 0), (lo, size - 1 - lo)] + [(0, 0)] * (x.ndim - 2))
    c = x.shape[1]
    square_sum = sq[:, 0:c].copy()
    for k in range(1, size):
        square_sum += sq[:, k : k + c]
    return as_result(op, x / (t(a["bias"]) + t(a["alpha"] / size) * square_sum) ** t(a["beta"]))
