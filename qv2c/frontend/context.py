"""The import context: what the importers share while one ONNX graph becomes IR.

An ONNX tensor name maps either to a run-time `Value` (a graph input or an op
result) or to a compile-time constant (an initializer, a `Constant` node, or the
folded result of a shape computation). Constants stay NumPy arrays until an op
reads them as an operand; only then do they become module constants, so unused
initializers and folded intermediates never reach the IR.

Importers see the context and a `Node` (the ONNX node being imported) and use
`value`, `constant`, `emit` and `define`; every error they raise goes through
`unsupported`/`shape_error`/`load_error`, which name the node, its op type and
the model file in one line.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import onnx

from qv2c.errors import ModelLoadError, ShapeError, UnsupportedOpError
from qv2c.frontend.attributes import read_attributes, tensor_to_array
from qv2c.ir.builder import Builder
from qv2c.ir.core import Module, Value
from qv2c.ir.types import TensorType, dtype_of_numpy


class Node:
    """One ONNX node with a stable label for messages and its attributes parsed lazily."""

    def __init__(self, proto: onnx.NodeProto, index: int):
        self.proto = proto
        self.index = index
        #: the ONNX node name, or `"<op_type>#<index>"` when the model leaves it empty
        self.label = proto.name or f"{proto.op_type}#{index}"

    @property
    def op_type(self) -> str:
        return self.proto.op_type

    @property
    def inputs(self) -> list[str]:
        """Input tensor names; `""` marks an omitted optional input."""
        return list(self.proto.input)

    @property
    def outputs(self) -> list[str]:
        return list(self.proto.output)

    @cached_property
    def attrs(self) -> dict[str, Any]:
        return read_attributes(self.proto, self.label)

    def input(self, i: int) -> str | None:
        """Name of input `i`, or None when it is absent or omitted (`""`)."""
        return self.proto.input[i] if i < len(self.proto.input) and self.proto.input[i] else None

    def output(self, i: int) -> str | None:
        """Name of output `i`, or None when it is absent or omitted (`""`)."""
        return self.proto.output[i] if i < len(self.proto.output) and self.proto.output[i] else None


class ImportContext:
    """Tensor-name bindings, the module under construction and error helpers."""

    def __init__(self, module: Module, opset: int, source: str, initializers: dict[str, onnx.TensorProto]):
        self.module = module
        self.builder = Builder(module)
        #: default-domain opset of the model; importers branch on it for versioned semantics
        self.opset = opset
        #: how messages name the model (its path, or a description for bytes/ModelProto)
        self.source = source
        #: the batch size imposed on the inputs' first dim, or None if every input kept its static one
        self.bound_batch: int | None = None
        #: the node being imported, for error messages and `op.meta["onnx_node"]`
        self.node: Node | None = None
        self._initializers = initializers
        self._values: dict[str, Value] = {}
        self._constants: dict[str, np.ndarray] = {}
        #: id(array) -> module constant, so an array aliased under several names becomes one constant
        self._materialized: dict[int, Value] = {}
        #: tensor names that some imported node or a graph output reads (set by the driver)
        self.read_names: set[str] = set()

    # -- reading tensors ----------------------------------------------------------
    def is_constant(self, name: str) -> bool:
        return name in self._constants or name in self._initializers

    def constant(self, name: str, what: str = "this input") -> np.ndarray:
        """The compile-time value of tensor `name`; raises if it is computed at run time."""
        if name in self._constants:
            return self._constants[name]
        if name in self._initializers:
            arr = tensor_to_array(self._initializers.pop(name))
            self._constants[name] = arr
            return arr
        raise self.unsupported(f"{what} (tensor {name!r}) must be a compile-time constant (an initializer or a "
                               f"computation on them), but it is computed at run time")

    def value(self, name: str) -> Value:
        """Tensor `name` as an IR value; a constant becomes a module constant on first use."""
        v = self._values.get(name)
        if v is not None:
            return v
        arr = self.constant(name)
        v = self._materialized.get(id(arr))
        if v is None:
            v = self.module.add_constant(arr, name, self._constant_type(name, arr))
            self._materialized[id(arr)] = v
        return v

    def type_of(self, name: str) -> TensorType:
        """Static type of tensor `name`, constant or not (without creating a module constant)."""
        v = self._values.get(name)
        if v is not None:
            return v.type
        return self._constant_type(name, self.constant(name))

    def is_read(self, name: str) -> bool:
        """True if an imported node or a graph output reads tensor `name`."""
        return name in self.read_names

    def _constant_type(self, name: str, arr: np.ndarray) -> TensorType:
        try:
            return TensorType(arr.shape, dtype_of_numpy(arr.dtype))
        except KeyError:
            raise self.unsupported(f"constant {name!r} has dtype {arr.dtype}, which the IR does not support") from None

    # -- defining tensors ---------------------------------------------------------
    def define(self, name: str, value: Value) -> None:
        """Bind ONNX tensor `name` to `value`, which takes the name unless it already has one."""
        if value.name is None:
            value.name = name
        self._values[name] = value

    def define_constant(self, name: str, array: np.ndarray) -> None:
        """Bind ONNX tensor `name` to a compile-time constant."""
        self._constants[name] = np.asarray(array)

    def emit(self, op_name: str, operands: list[Value], name: str | None = None, **attrs: Any) -> Value:
        """Build one IR op for the current node, tagged with its ONNX node, and return its result.

        Shape inference failures come back as `ShapeError`s naming the ONNX node.
        """
        try:
            op = self.builder.create(op_name, operands, **attrs)
        except ShapeError as e:
            raise self.shape_error(str(e)) from None
        op.meta["onnx_node"] = self.node.label
        if name is not None:
            op.result.name = name
        return op.result

    # -- errors -------------------------------------------------------------------
    def _where(self) -> str:
        node = self.node
        at = f"{node.op_type} node {node.label!r} (opset {self.opset})" if node else "graph"
        return f"{at} in {self.source}"

    def unsupported(self, msg: str) -> UnsupportedOpError:
        """An `UnsupportedOpError` about the current node; the caller raises it."""
        return UnsupportedOpError(f"{self._where()}: {msg}")

    def shape_error(self, msg: str) -> ShapeError:
        return ShapeError(f"{self._where()}: {msg}")

    def load_error(self, msg: str) -> ModelLoadError:
        return ModelLoadError(f"{self._where()}: {msg}")
