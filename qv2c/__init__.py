"""qv2c: compile a trained CNN (ONNX) into a fast mixed-precision int8/fp32 program
for the CPU, choosing which layers stay fp32 with the QuantuneV2 method."""

from qv2c.errors import (
    CalibrationError,
    ConfigError,
    InputError,
    ModelLoadError,
    ParseError,
    QV2CError,
    SavedModelError,
    ShapeError,
    UnsupportedOpError,
    VerificationError,
)

__version__ = "0.1.0"

__all__ = [
    "compile",
    "CompiledModel",
    "load",
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
    "SavedModelError",
]


def import_onnx(model, batch_size: int | None = None):
    """Load an ONNX model (path, bytes or `onnx.ModelProto`) into a verified `qv2c.ir.Module`."""
    from qv2c.frontend import import_onnx as _import_onnx

    return _import_onnx(model, batch_size=batch_size)


def load(path, backend: str | None = None):
    """A `CompiledModel` saved by `model.save(path)`: runs without the ONNX file or calibration data."""
    from qv2c.saved import load as _load

    return _load(path, backend)


def __getattr__(name: str):
    # `compile` and `CompiledModel` load the whole compiler; import them on first use
    # so `import qv2c` stays cheap (the name shadows the builtin only as qv2c.compile).
    if name in ("compile", "CompiledModel"):
        from qv2c import api

        return getattr(api, name)
    raise AttributeError(f"module 'qv2c' has no attribute {name!r}")
