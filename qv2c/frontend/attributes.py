"""ONNX node attributes as plain Python values.

`read_attributes(node)` turns each `AttributeProto` into an int, float, str
(decoded), list, or NumPy array (for tensors), so importers read
`attrs.get("strides", [1, 1])` instead of walking protobuf fields.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from qv2c.errors import UnsupportedOpError


def tensor_to_array(t: onnx.TensorProto) -> np.ndarray:
    """A `TensorProto` (initializer or attribute) as a NumPy array."""
    return numpy_helper.to_array(t)


def read_attributes(node: onnx.NodeProto, label: str) -> dict[str, Any]:
    """name -> Python value for every attribute of `node` (`label` names it in errors)."""
    return {a.name: _value(node, label, a) for a in node.attribute}


def _value(node: onnx.NodeProto, label: str, a: onnx.AttributeProto) -> Any:
    kind = onnx.AttributeProto
    if a.type == kind.TENSOR:
        return tensor_to_array(a.t)
    if a.type == kind.STRING:
        return a.s.decode("utf-8")
    if a.type == kind.STRINGS:
        return [s.decode("utf-8") for s in a.strings]
    if a.type in (kind.INT, kind.FLOAT, kind.INTS, kind.FLOATS):
        v = onnx.helper.get_attribute_value(a)
        return list(v) if isinstance(v, (list, tuple)) else v
    raise UnsupportedOpError(f"{node.op_type} node {label!r}: attribute {a.name!r} of kind "
                             f"{kind.AttributeType.Name(a.type)} is not supported (subgraphs, sparse tensors)")
