"""The ONNX frontend: an ONNX model (path, bytes or `onnx.ModelProto`) becomes a verified
`qv2c.ir.Module` with static shapes.

    module = import_onnx("resnet18.onnx", batch_size=8)

`loader.py` reads and validates the file, `topology.py` checks and orders the
nodes, `constant_folding.py` evaluates shape arithmetic at import time, and one
small importer per ONNX op type (`importers/`, registered in `registry.py`) emits
the IR. Every failure is a one-line `qv2c.errors.QV2CError` naming the node and file.
"""

from __future__ import annotations

from qv2c.errors import ConfigError
from qv2c.frontend.graph_import import import_graph
from qv2c.frontend.loader import load_model
from qv2c.frontend.registry import supported_ops
from qv2c.ir.core import Module

__all__ = ["import_onnx", "supported_ops"]


def import_onnx(model, batch_size: int | None = None) -> Module:
    """Import `model` into IR, binding a dynamic (or fixed-1) batch dim to `batch_size` (default 1)."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ConfigError(f"batch_size must be a positive int or None, got {batch_size!r}")
    return import_graph(load_model(model), batch_size)
