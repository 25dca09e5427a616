"""Graph inputs: which are real, their static types, and the batch dimension.

IR version 3 models list every initializer among the graph inputs too; those are
weights, not inputs, and are skipped. Every real input must be float32 with a
static shape, except for its first dim, the batch, which may be dynamic (a
`dim_param`, 0 or -1): it is bound to `batch_size` (default 1). A model exported
with a fixed batch of 1 can be rebound to `batch_size=N` too; the importer then
remembers the batch it imposed (`ctx.bound_batch`) so a Reshape that hard-codes
batch 1 is applied per sample (`importers/shape.py`) and one that cannot be is
reported, never silently mixing images.
"""

from __future__ import annotations

import onnx

from qv2c.errors import ModelLoadError, ShapeError
from qv2c.frontend.context import ImportContext
from qv2c.ir.core import Value
from qv2c.ir.types import TensorType


def bind_inputs(ctx: ImportContext, graph: onnx.GraphProto, initializers: set[str], batch_size: int | None) -> None:
    """Add each real graph input to the module and bind its name; sets `ctx.bound_batch`."""
    for vi in graph.input:
        if vi.name in initializers:
            continue
        shape, imposed = _input_shape(ctx, vi, batch_size)
        v = ctx.module.add_input(Value(TensorType(shape, "f32"), vi.name))
        ctx.define(vi.name, v)
        if imposed:
            ctx.bound_batch = shape[0]


def _input_shape(ctx: ImportContext, vi: onnx.ValueInfoProto, batch_size: int | None) -> tuple[tuple[int, ...], bool]:
    """The input's static shape, and whether its first dim was set from `batch_size`."""
    where = f"{ctx.source}: graph input {vi.name!r}"
    t = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
    if t is None:
        raise ModelLoadError(f"{where} is not a tensor; qv2c compiles models with float32 tensor inputs")
    if t.elem_type != onnx.TensorProto.FLOAT:
        name = onnx.TensorProto.DataType.Name(t.elem_type) if t.elem_type else "undefined"
        raise ModelLoadError(f"{where} has element type {name}; qv2c compiles models whose inputs are float32")
    if not t.HasField("shape"):
        raise ShapeError(f"{where} has no shape; export the model with static input shapes")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
    for i, d in enumerate(dims[1:], start=1):
        if d is None:
            raise ShapeError(f"{where} has a dynamic dim {i}; only the first (batch) dim may be dynamic")
    if not dims:
        return (), False
    batch = 1 if batch_size is None else batch_size
    if dims[0] is None:
        return (batch, *dims[1:]), True
    if batch_size is None or dims[0] == batch_size:
        return tuple(dims), False
    if dims[0] == 1:
        return (batch_size, *dims[1:]), True
    raise ShapeError(f"{where} has a fixed batch of {dims[0]}, which cannot be rebound to batch_size={batch_size}; "
                     f"export the model with a dynamic batch")
