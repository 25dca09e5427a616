"""qv2c: compile a trained CNN (ONNX) into a fast mixed-precision int8/fp32 program
for the CPU, choosing which layers stay fp32 with the QuantuneV2 method."""

from qv2c.errors import (
    CalibrationError,
    ConfigError,
    InputError,
    ModelLoadError,
    ParseError,
    QV2CError,
    ShapeError,
    UnsupportedOpError,
    VerificationError,
)

__version__ = "0.1.0"

__all__ = [
    "import_onnx",
    "QV2CError",
    "UnsupportedOpError",
    "VerificationError",
    "ModelLoadError",
    "ParseError",
    "ShapeError",
    "InputError",
    "CalibrationError",
    "ConfigError",
]


def import_onnx(model, batch_size: int | None = None):
    """Load an ONNX model (path, bytes or `onnx.ModelProto`) into a verified `qv2c.ir.Module`."""
    from qv2c.frontend import import_onnx as _import_onnx

    return _import_onnx(model, batch_size=batch_size)
