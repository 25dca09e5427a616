"""One small importer per ONNX op type, grouped by family; importing this package registers them all."""

from qv2c.frontend.importers import activation, conv_gemm, elementwise, normalization, pooling, shape  # noqa: F401
