"""The import driver: one ONNX graph in, one verified `qv2c.ir.Module` out.

Steps: bind the real graph inputs (`inputs.py`), order the live nodes and check
the graph's structure (`topology.py`), then for each node either fold it to a
constant (`constant_folding.py`) or call its importer (`registry.py`). Finally
bind the graph outputs under their ONNX names, drop unread constants and verify.
"""

from __future__ import annotations

import importlib.util

import onnx

from qv2c.errors import ShapeError
from qv2c.frontend.constant_folding import FOLDERS, try_fold
from qv2c.frontend.context import ImportContext, Node
from qv2c.frontend.inputs import bind_inputs
from qv2c.frontend.loader import DEFAULT_DOMAINS, LoadedModel
from qv2c.frontend.registry import lookup
from qv2c.frontend.topology import import_order
from qv2c.ir.core import Module, Value


def import_graph(loaded: LoadedModel, batch_size: int | None) -> Module:
    """Translate `loaded` into IR; see the module docstring for the steps."""
    graph = loaded.proto.graph
    initializers = {t.name: t for t in graph.initializer}
    ctx = ImportContext(Module(graph.name or "main"), loaded.opset, loaded.source, initializers)
    bind_inputs(ctx, graph, set(initializers), batch_size)
    defined = set(initializers) | {vi.name for vi in graph.input}
    nodes, ctx.read_names = import_order(graph, defined, loaded.source)
    for node in nodes:
        ctx.node = node
        if node.proto.domain not in DEFAULT_DOMAINS:
            raise ctx.unsupported(f"op {node.op_type!r} from domain {node.proto.domain!r} is not supported; qv2c "
                                  f"imports only default-domain ONNX ops")
        _check_schema(ctx, node)
        if not try_fold(ctx, node):
            lookup(ctx, node, FOLDERS)(ctx, node)
    ctx.node = None
    for vi in graph.output:
        ctx.module.outputs.append(_output(ctx, vi))
    _remove_dead_ops(ctx.module)
    ctx.module.remove_unused_constants()
    if importlib.util.find_spec("qv2c.ir.verifier") is not None:
        ctx.module.verify()
    return ctx.module


def _check_schema(ctx: ImportContext, node: Node) -> None:
    """Reject a node that lacks inputs or attributes its ONNX schema requires, before a
    folder or importer indexes into them (unknown op types are left to `lookup`)."""
    try:
        schema = onnx.defs.get_schema(node.op_type, ctx.opset, "")
    except onnx.defs.SchemaError:
        return
    if len(node.inputs) < schema.min_input or not all(node.inputs[: schema.min_input]):
        raise ctx.load_error(f"has {len([n for n in node.inputs if n])} input(s) but needs at least "
                             f"{schema.min_input}; the model is malformed")
    given = {a.name for a in node.proto.attribute}
    missing = sorted(n for n, a in schema.attributes.items() if a.required and n not in given)
    if missing:
        raise ctx.load_error(f"lacks the required attribute(s) {missing}; the model is malformed")


def _output(ctx: ImportContext, vi: onnx.ValueInfoProto) -> Value:
    """The value of graph output `vi`, named as in the model and checked against its declared shape."""
    v = ctx.value(vi.name)
    if v.name != vi.name:
        v = _named_copy(ctx, v, vi.name)
    _check_declared(ctx, vi, v)
    return v


def _named_copy(ctx: ImportContext, v: Value, name: str) -> Value:
    """`v` under the output name `name`: an op result (seen through Identity/Dropout) is renamed,
    but a graph input, a constant or an earlier output keeps its name and is copied by a
    shape-preserving `qv.reshape` instead."""
    taken = {vi.name for vi in ctx.module.inputs} | {o.name for o in ctx.module.outputs}
    if v.owner is not None and v.name not in taken:
        v.name = name
        return v
    return ctx.builder.create("qv.reshape", [v], shape=list(v.type.shape), result_names=[name],
                              meta={"onnx_node": f"output {name}"}).result


def _check_declared(ctx: ImportContext, vi: onnx.ValueInfoProto, v: Value) -> None:
    """Compare the inferred type with the output's declared one (batch dim excepted when we bound it).

    A declared rank-0 shape is treated as unknown: `onnx.parser` writes it for an output
    declared without dims."""
    t = vi.type.tensor_type
    if t.elem_type and onnx.helper.tensor_dtype_to_np_dtype(t.elem_type) != v.type.numpy_dtype:
        raise ShapeError(f"{ctx.source}: graph output {vi.name!r} is declared {onnx.TensorProto.DataType.Name(t.elem_type)} "
                         f"but computes {v.type.dtype}")
    if not t.HasField("shape") or not t.shape.dim:
        return
    declared = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
    skip_batch = ctx.bound_batch is not None
    bad = len(declared) != v.type.rank or any(
        d is not None and d != s and not (i == 0 and skip_batch) for i, (d, s) in enumerate(zip(declared, v.type.shape)))
    if bad:
        raise ShapeError(f"{ctx.source}: graph output {vi.name!r} is declared with shape "
                         f"{[d if d is not None else '?' for d in declared]} but the imported graph computes "
                         f"{list(v.type.shape)}")


def _remove_dead_ops(module: Module) -> None:
    """Erase ops none of whose results is read. Dead ONNX nodes are never imported
    (`topology.py`); this catches ops an importer emitted whose results went unused."""
    outputs = {id(v) for v in module.outputs}
    for op in reversed(list(module.ops)):
        if all(not r.uses and id(r) not in outputs for r in op.results):
            module.erase(op)

