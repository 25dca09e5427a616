"""Structural checks of an ONNX graph and the order in which its nodes are imported.

ONNX requires nodes to be topologically sorted, but exporters and hand-edited
models do not always comply, so we sort them ourselves (Kahn's algorithm, keeping
the file order among ready nodes). Before sorting we check that every tensor a
node reads is defined exactly once (by a graph input, an initializer or one
node), so a leftover cycle really is a cycle. Finally only *live* nodes, those a
graph output depends on, are returned: dead branches are not imported.
"""

from __future__ import annotations

import heapq

import onnx

from qv2c.errors import ModelLoadError
from qv2c.frontend.context import Node


def import_order(graph: onnx.GraphProto, defined: set[str], source: str) -> tuple[list[Node], set[str]]:
    """Live nodes of `graph` in a topological order, and the tensor names they or the outputs read.

    `defined` holds the names of graph inputs and initializers. Raises `ModelLoadError`
    for a tensor defined twice or never, and for a cycle.
    """
    nodes = [Node(p, i) for i, p in enumerate(graph.node)]
    producer = _producers(nodes, defined, source)
    for node in nodes:
        for name in node.inputs:
            if name and name not in producer and name not in defined:
                raise ModelLoadError(f"{source}: node {node.label!r} ({node.op_type}) reads tensor {name!r} that no "
                                     f"node, input or initializer defines")
    for out in graph.output:
        if out.name not in producer and out.name not in defined:
            raise ModelLoadError(f"{source}: graph output {out.name!r} is not defined by any node, input or "
                                 f"initializer")
    order = _topological_sort(nodes, producer, source)
    live, read = _live(nodes, producer, [o.name for o in graph.output])
    return [n for n in order if n.index in live], read


def _producers(nodes: list[Node], defined: set[str], source: str) -> dict[str, int]:
    producer: dict[str, int] = {}
    for node in nodes:
        for name in node.outputs:
            if not name:
                continue
            if name in producer or name in defined:
                other = nodes[producer[name]].label if name in producer else "a graph input or initializer"
                raise ModelLoadError(f"{source}: tensor {name!r} is defined twice, by node {node.label!r} and by "
                                     f"{other!r}; ONNX tensors must be defined once")
            producer[name] = node.index
    return producer


def _topological_sort(nodes: list[Node], producer: dict[str, int], source: str) -> list[Node]:
    deps = [{producer[n] for n in node.inputs if n in producer} for node in nodes]
    readers: list[list[int]] = [[] for _ in nodes]
    for i, ds in enumerate(deps):
        for d in ds:
            readers[d].append(i)
    waiting = [len(ds) for ds in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for r in readers[i]:
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, r)
    if len(order) != len(nodes):
        stuck = [n.label for n, w in zip(nodes, waiting) if w]
        shown = ", ".join(repr(s) for s in stuck[:5]) + (", ..." if len(stuck) > 5 else "")
        raise ModelLoadError(f"{source}: the graph has a cycle through node(s) {shown}; an ONNX graph must be acyclic")
    return order


def _live(nodes: list[Node], producer: dict[str, int], outputs: list[str]) -> tuple[set[int], set[str]]:
    """Indices of nodes some graph output depends on, and every tensor name those nodes or outputs read."""
    live: set[int] = set()
    read = set(outputs)
    stack = [producer[o] for o in outputs if o in producer]
    while stack:
        i = stack.pop()
        if i in live:
            continue
        live.add(i)
        for name in nodes[i].inputs:
            if name:
                read.add(name)
                if name in producer:
                    stack.append(producer[name])
    return live, read
