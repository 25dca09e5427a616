"""The integer op catalogue: ops that compute on quantized (u8/i8/i32) tensors.

Imported at the bottom of `qv2c/ir/ops.py`, so these `op_def`s register with the
rest of the catalogue.  Quantization parameters live in the operand and result
types (`TensorType.quant`); the builder of an integer op passes its result types
explicitly.  The exact arithmetic of each op is its reference function in
`qv2c/ir/reference/quantized.py`, built from `qv2c/ir/quant_math.py`; in short:

    qv.qconv(x:u8|i8, w:i8, b:i32?)  acc = sum (x - zx) * w + b   (int32, zero padding = zx)
                                     y = requant(acc, M[c] = s_x * s_w[c] / s_y), then `act` clamp
    qv.qgemm(a:u8|i8[M,K], w:i8[N,K], b:i32[N]?)   same, acc[m, n] = sum_k (a - za)[m, k] * w[n, k] + b[n]
    qv.requantize(x)                  y = requant(x - zx, M = s_x / s_y)
    qv.qadd(a, b)                     y = quantize(dequantize(a) + dequantize(b)), `act` "relu" clamps at zy
    qv.qavgpool(x) / qv.qglobal_avgpool(x)   y = requant(sum (x - zx), M = s_x / (s_y * count))
    qv.qclip(x) {min, max}            y = clamp(x, quantize(min), quantize(max)); same type in and out

- `act` in {"none", "relu", "relu6"}: the epilogue clamps to
  `quant_math.activation_bounds` = [quantize(0), quantize(6)] for relu6.
- `requant` in {"float", "shift"}: "float" is `quant_math.requantize_float`
  (float32 multiply, round half to even); "shift" requires every multiplier to be a
  power of two and uses `quant_math.requantize_shift` (integer, round half up).
- Weights are symmetric (zero point 0), per output channel (axis 0) or per tensor;
  activation operands and results are per tensor.  Bias is in accumulator units
  (scale s_x * s_w[c], zero point 0), whatever its type says.

Data-movement ops (`qv.maxpool`, `qv.concat`, `qv.reshape`, `qv.transpose`,
`qv.permute_channels`, `qv.pad`) need no integer twin: they run on integer tensors
with identical parameters in and out (`qv.pad` pads with the zero point, i.e. `value` quantized).
"""

from __future__ import annotations

from qv2c.errors import ShapeError, VerificationError
from qv2c.ir.ops import _WINDOW_ATTRS, _WINDOW_DEFAULTS, broadcast_shapes, op_def, result_types
from qv2c.ir.quant_math import ACTIVATIONS, REQUANT_KINDS
from qv2c.ir.types import TensorType

ACT_DTYPES = ("u8", "i8")
_EPILOGUE_ATTRS = {"act": str, "requant": str}
_EPILOGUE_DEFAULTS = {"act": "none", "requant": "float"}


def check_activation(t: TensorType, op: str, role: str) -> None:
    """Raise unless `t` is a u8/i8 tensor with per-tensor quantization."""
    if t.dtype not in ACT_DTYPES or t.quant is None or t.quant.per_channel:
        raise VerificationError(f"{op}: {role} must be u8 or i8 with per-tensor quantization, got {t}")


def _check_weight(w: TensorType, channels: int, op: str) -> None:
    q = w.quant
    if w.dtype != "i8" or q is None:
        raise VerificationError(f"{op}: weight must be i8 with quantization parameters, got {w}")
    if any(q.zero_point):
        raise VerificationError(f"{op}: weight zero points must be 0 (symmetric), got {list(q.zero_point)}")
    if q.per_channel and (q.axis != 0 or len(q.scale) != channels):
        raise VerificationError(f"{op}: per-channel weight scales must run along axis 0 with {channels} entries, "
                                f"got axis {q.axis} with {len(q.scale)}")


def _check_bias(t: list[TensorType], channels: int, op: str) -> None:
    if len(t) == 3 and (t[2].dtype != "i32" or t[2].shape != (channels,)):
        raise VerificationError(f"{op}: bias must be i32[{channels}], got {t[2]}")


def _check_epilogue(a: dict, op: str, acts=ACTIVATIONS) -> None:
    if a.get("act", "none") not in acts:
        raise VerificationError(f"{op}: act must be one of {list(acts)}, got {a.get('act')!r}")
    if a.get("requant", "float") not in REQUANT_KINDS:
        raise VerificationError(f"{op}: requant must be one of {list(REQUANT_KINDS)}, got {a.get('requant')!r}")


def _like(fp_name: str, name: str, types: list[TensorType], a: dict) -> list[TensorType]:
    """Result shapes of the fp32 twin `fp_name`, with errors renamed to `name`."""
    try:
        return result_types(fp_name, types, a)
    except ShapeError as e:
        raise ShapeError(str(e).replace(fp_name, name)) from None


@op_def("qv.qconv", (2, 3), {**_WINDOW_ATTRS, "group": int, **_EPILOGUE_ATTRS},
        {**_WINDOW_DEFAULTS, "group": 1, **_EPILOGUE_DEFAULTS}, free_result_dtype=True)
def _qconv(t, a):
    """Integer conv: int32 acc = conv(x - zx, w) + b, requantized to the result type, optional fused ReLU/ReLU6."""
    check_activation(t[0], "qv.qconv", "input")
    _check_weight(t[1], t[1].shape[0], "qv.qconv")
    _check_bias(t, t[1].shape[0], "qv.qconv")
    _check_epilogue(a, "qv.qconv")
    return _like("qv.conv", "qv.qconv", t, a)


@op_def("qv.qgemm", (2, 3), dict(_EPILOGUE_ATTRS), dict(_EPILOGUE_DEFAULTS), free_result_dtype=True)
def _qgemm(t, a):
    """Integer matrix product a[M,K] x w[N,K]^T (+ b[N]) with int32 accumulation, requantized per output column."""
    x, w = t[0], t[1]
    check_activation(x, "qv.qgemm", "input")
    if x.rank != 2 or w.rank != 2 or x.shape[1] != w.shape[1]:
        raise ShapeError(f"qv.qgemm needs a[M,K] and w[N,K], got {list(x.shape)} and {list(w.shape)}")
    _check_weight(w, w.shape[0], "qv.qgemm")
    _check_bias(t, w.shape[0], "qv.qgemm")
    _check_epilogue(a, "qv.qgemm")
    return [TensorType((x.shape[0], w.shape[0]), x.dtype)]


@op_def("qv.requantize", 1, {"requant": str}, {"requant": "float"}, free_result_dtype=True)
def _requantize(t, a):
    """Integer to integer with new scale / zero point: y = requant(x - zx, s_x / s_y)."""
    check_activation(t[0], "qv.requantize", "input")
    _check_epilogue(a, "qv.requantize")
    return [TensorType(t[0].shape, t[0].dtype)]


@op_def("qv.qadd", 2, {"act": str}, {"act": "none"}, free_result_dtype=True)
def _qadd(t, a):
    """Residual add of two quantized tensors (NumPy broadcasting): quantize(dequantize(a) + dequantize(b))."""
    check_activation(t[0], "qv.qadd", "first operand")
    check_activation(t[1], "qv.qadd", "second operand")
    _check_epilogue(a, "qv.qadd", ("none", "relu"))
    return [TensorType(broadcast_shapes(t[0].shape, t[1].shape), t[0].dtype)]


@op_def("qv.qavgpool", 1, {"kernel": list, "strides": list, "pads": list, "ceil_mode": int, "count_include_pad": int},
        {"strides": [1, 1], "pads": [0, 0, 0, 0], "ceil_mode": 0, "count_include_pad": 0}, free_result_dtype=True)
def _qavgpool(t, a):
    """Average pool on integers: int32 window sum of (x - zx), requantized by s_x / (s_y * count)."""
    check_activation(t[0], "qv.qavgpool", "input")
    return _like("qv.avgpool", "qv.qavgpool", t, a)


@op_def("qv.qglobal_avgpool", 1, free_result_dtype=True)
def _qglobal_avgpool(t, a):
    """Global average pool on integers: [N,C,H,W] -> [N,C,1,1], like `qv.qavgpool` over the whole plane."""
    check_activation(t[0], "qv.qglobal_avgpool", "input")
    return _like("qv.global_avgpool", "qv.qglobal_avgpool", t, a)


@op_def("qv.qclip", 1, {"min": float, "max": float}, {"min": float("-inf"), "max": float("inf")})
def _qclip(t, a):
    """Clip / ReLU (min=0) / ReLU6 (min=0, max=6) on integers: clamp to [quantize(min), quantize(max)]; the type
    passes through (defaults -inf, inf as for `qv.clip`)."""
    check_activation(t[0], "qv.qclip", "input")
    if not a["min"] <= a["max"]:
        raise VerificationError(f"qv.qclip: min {a['min']} > max {a['max']}")
    return [t[0]]
