"""Read an ONNX model (path, bytes or `ModelProto`) and check it is one we can import.

Everything that can go wrong before we look at individual nodes is turned into a
one-line `ModelLoadError` naming the file: a missing path, a truncated or corrupt
protobuf, an empty graph, an IR version or default-domain opset outside the range
this frontend implements. Structural checks that need the node list (undefined
tensors, cycles) live in `topology.py`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from qv2c.errors import ModelLoadError

#: ONNX IR versions we read. IR 3 is the oldest that the model zoo's light models use.
MIN_IR_VERSION = 3
#: Default-domain opsets we implement. Opsets below 7 carry legacy attributes
#: (`consumed_inputs`, `is_test`, per-op `broadcast`) that no importer handles.
MIN_OPSET = 7
MAX_OPSET = onnx.defs.onnx_opset_version()
#: Domain names that mean the default ONNX operator set.
DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class LoadedModel:
    """A parsed model, the default-domain opset it imports, and where it came from."""

    proto: onnx.ModelProto
    opset: int
    #: how error messages name the model: the file path, or a description
    source: str


def load_model(model) -> LoadedModel:
    """Parse and validate `model`; raises `ModelLoadError` naming the file."""
    proto, source = _read(model)
    return LoadedModel(proto, _check(proto, source), source)


def _read(model) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, onnx.ModelProto):
        return model, f"<ModelProto {model.graph.name or 'unnamed'!r}>"
    if isinstance(model, (bytes, bytearray, memoryview)):
        return _parse(bytes(model), "<bytes>"), "<bytes>"
    if isinstance(model, (str, os.PathLike)):
        return _read_file(Path(model))
    raise ModelLoadError(
        f"cannot load a model from a {type(model).__name__}; pass a file path, bytes or an onnx.ModelProto")


def _read_file(path: Path) -> tuple[onnx.ModelProto, str]:
    source = str(path)
    if not path.exists():
        raise ModelLoadError(f"model file {source!r} does not exist; check the path")
    if not path.is_file():
        raise ModelLoadError(f"model path {source!r} is not a file")
    proto = _parse(path.read_bytes(), source)
    try:
        # weights stored next to the model (external data) are resolved relative to it
        onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"model {source!r}: cannot read its external weight data ({e})") from None
    return proto, source


def _parse(data: bytes, source: str) -> onnx.ModelProto:
    if not data:
        raise ModelLoadError(f"model {source!r} is empty (0 bytes)")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelLoadError(f"model {source!r} is not a valid ONNX protobuf (truncated or corrupt: {e})") from None
    return proto


def _check(proto: onnx.ModelProto, source: str) -> int:
    """Validate model-level fields; returns the default-domain opset."""
    if not proto.HasField("graph") or not proto.graph.node:
        raise ModelLoadError(f"model {source!r} has an empty graph (no nodes); is the file truncated?")
    if not proto.graph.output:
        raise ModelLoadError(f"model {source!r} declares no graph outputs; is the file truncated?")
    if not MIN_IR_VERSION <= proto.ir_version <= onnx.IR_VERSION:
        raise ModelLoadError(f"model {source!r} has IR version {proto.ir_version}; qv2c reads IR versions "
                             f"{MIN_IR_VERSION}..{onnx.IR_VERSION}")
    opsets = [o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS]
    if not opsets:
        raise ModelLoadError(f"model {source!r} imports no default-domain ONNX opset")
    opset = max(opsets)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelLoadError(f"model {source!r} uses ONNX opset {opset}; qv2c imports opsets {MIN_OPSET}..{MAX_OPSET}"
                             f" (convert it with onnx.version_converter)")
    return opset
