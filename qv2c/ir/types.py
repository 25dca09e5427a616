"""Immutable IR types: `TensorType` with an optional `QuantParams`.

Types are values, not objects with identity: two `TensorType`s with the same shape,
dtype and quantization compare equal and hash equal, so passes can compare them
freely. Quantization parameters belong to the type (an int8 tensor *means*
`(q - zero_point) * scale`), while raw calibration ranges do not (they are
analysis results, kept by the analysis that produced them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: IR dtype name -> NumPy dtype. The names are short because they are printed a lot.
DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64),
    "i8": np.dtype(np.int8),
    "u8": np.dtype(np.uint8),
    "i16": np.dtype(np.int16),
    "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64),
    "bool": np.dtype(np.bool_),
}
_NAME_OF_NUMPY = {v: k for k, v in DTYPES.items()}


def dtype_of_numpy(dtype: np.dtype | type) -> str:
    """IR dtype name of a NumPy dtype; raises `KeyError` for unsupported ones."""
    return _NAME_OF_NUMPY[np.dtype(dtype)]


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization: real = (q - zero_point) * scale.

    `scale` and `zero_point` are tuples; a per-tensor parameter is a length-1 tuple
    and `axis` is None, a per-channel one has one entry per slice along `axis`.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        object.__setattr__(self, "zero_point", tuple(int(z) for z in self.zero_point))
        if len(self.scale) != len(self.zero_point):
            raise ValueError("scale and zero_point must have the same length")
        if self.axis is None and len(self.scale) != 1:
            raise ValueError("a per-tensor QuantParams has exactly one scale")

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def scale_array(self, rank: int) -> np.ndarray:
        """Scales as a float32 array broadcastable against a tensor of `rank` dims."""
        return self._broadcast(np.asarray(self.scale, dtype=np.float32), rank)

    def zero_point_array(self, rank: int) -> np.ndarray:
        """Zero points as an int32 array broadcastable against a tensor of `rank` dims."""
        return self._broadcast(np.asarray(self.zero_point, dtype=np.int32), rank)

    def _broadcast(self, arr: np.ndarray, rank: int) -> np.ndarray:
        if self.axis is None:
            return arr.reshape(())
        shape = [1] * rank
        shape[self.axis] = arr.size
        return arr.reshape(shape)


@dataclass(frozen=True)
class TensorType:
    """A tensor's static shape, element type and (for integer tensors) quantization."""

    shape: tuple[int, ...]
    dtype: str
    quant: QuantParams | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; expected one of {sorted(DTYPES)}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def numpy_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    def with_shape(self, shape) -> TensorType:
        return TensorType(tuple(shape), self.dtype, self.quant)

    def with_dtype(self, dtype: str, quant: QuantParams | None = None) -> TensorType:
        return TensorType(self.shape, dtype, quant)

    def __str__(self) -> str:
        from qv2c.ir.printer import format_type

        return format_type(self)
