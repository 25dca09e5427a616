"""The exceptions qv2c raises at its users.

Every failure a user can cause (a bad file, an op we do not support, wrong inputs,
bad calibration data, an invalid IR) raises a subclass of `QV2CError` whose message
is one line saying what is wrong, where (op, ONNX node, file) and what to do.
Catching `QV2CError` is enough to handle every user-facing failure.
"""


class QV2CError(Exception):
    """Base class of every error qv2c raises on purpose."""


class ModelLoadError(QV2CError):
    """The ONNX file is missing, truncated, malformed or structurally broken."""


class UnsupportedOpError(QV2CError):
    """The model uses an ONNX op type (or attribute value) qv2c cannot import."""


class ShapeError(QV2CError):
    """Shapes do not fit together (static shape inference failed)."""


class VerificationError(QV2CError):
    """The IR breaks an invariant (SSA, types, operand counts, attributes)."""


class ParseError(QV2CError):
    """The textual IR could not be parsed."""


class InputError(QV2CError):
    """Inputs given to a model at run time have the wrong name, shape or dtype."""


class CalibrationError(QV2CError):
    """Calibration data is empty, malformed or non-finite."""


class ConfigError(QV2CError):
    """An option passed to `qv2c.compile` is invalid (unknown layer, bad k, ...)."""


class SavedModelError(QV2CError):
    """A saved model file (`qv2c.load`) is missing, corrupt, truncated, of a newer format or not one at all."""
