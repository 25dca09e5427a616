"""The SSA graph: values, ops, graphs (blocks) and the module.

- A `Value` is defined exactly once: as a graph input, a module constant, or an op
  result. It is compared by identity and keeps the list of its uses, so a pass can
  ask "who reads this?" in O(1). Operands change only through `Op.set_operand` or
  `Value.replace_all_uses_with`, which keep those lists right.
- An `Op` has a name like `qv.conv`, operands, results, `attrs` (inherent: printed,
  verified, part of the semantics) and `meta` (discardable notes such as the ONNX
  node name used in error messages). A fused group is an op whose `body` is a
  `Graph` of ordinary ops (see `qv.fused`).
- A `Graph` is an ordered list of ops with inputs and outputs. The `Module` is the
  top-level graph plus the constants (ONNX initializers) its ops read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from qv2c.ir.types import TensorType


class Value:
    """An SSA value: a typed tensor defined once and read by any number of ops."""

    __slots__ = ("type", "name", "owner", "index", "uses", "data")

    def __init__(self, type: TensorType, name: str | None = None):
        self.type = type
        self.name = name
        #: the defining op for op results, else None (graph input or constant)
        self.owner: Op | None = None
        #: result index in `owner.results`, or input index in its graph
        self.index = 0
        #: (op, operand index) for every read of this value
        self.uses: list[tuple[Op, int]] = []
        #: the payload if this value is a module constant, else None
        self.data: np.ndarray | None = None

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def users(self) -> list[Op]:
        """Ops reading this value, each listed once, in first-use order."""
        seen: dict[int, Op] = {}
        for op, _ in self.uses:
            seen.setdefault(id(op), op)
        return list(seen.values())

    def replace_all_uses_with(self, new: Value) -> None:
        """Point every reader of this value at `new` instead."""
        for op, i in list(self.uses):
            op.set_operand(i, new)

    def __repr__(self) -> str:
        return f"Value({self.name!r}: {self.type})"


class Op:
    """One operation: `results = name(operands) {attrs}`, with optional body graph."""

    __slots__ = ("name", "_operands", "results", "attrs", "meta", "body", "parent")

    def __init__(
        self,
        name: str,
        operands: Iterable[Value],
        result_types: Iterable[TensorType],
        attrs: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
        body: Graph | None = None,
        result_names: Iterable[str | None] | None = None,
    ):
        self.name = name
        self._operands: list[Value] = []
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.meta: dict[str, Any] = dict(meta or {})
        self.body = body
        self.parent: Graph | None = None
        types = list(result_types)
        names = list(result_names) if result_names is not None else [None] * len(types)
        self.results: list[Value] = []
        for i, (t, n) in enumerate(zip(types, names)):
            v = Value(t, n)
            v.owner, v.index = self, i
            self.results.append(v)
        for v in operands:
            self._append_operand(v)

    # -- operands -------------------------------------------------------------
    @property
    def operands(self) -> tuple[Value, ...]:
        return tuple(self._operands)

    def _append_operand(self, v: Value) -> None:
        if not isinstance(v, Value):
            raise TypeError(f"operand of {self.name} must be a Value, got {type(v).__name__}")
        v.uses.append((self, len(self._operands)))
        self._operands.append(v)

    def set_operand(self, i: int, new: Value) -> None:
        old = self._operands[i]
        old.uses.remove((self, i))
        new.uses.append((self, i))
        self._operands[i] = new

    def drop_operands(self) -> None:
        """Forget every operand (used when the op is erased)."""
        for i, v in enumerate(self._operands):
            v.uses.remove((self, i))
        self._operands = []

    # -- convenience ----------------------------------------------------------
    @property
    def result(self) -> Value:
        """The single result of a one-result op."""
        if len(self.results) != 1:
            raise ValueError(f"{self.name} has {len(self.results)} results, not 1")
        return self.results[0]

    @property
    def location(self) -> str:
        """Where this op came from, for error messages: `qv.conv (ONNX node 'conv1')`."""
        node = self.meta.get("onnx_node")
        return f"{self.name} (ONNX node {node!r})" if node else self.name

    def __repr__(self) -> str:
        return f"<Op {self.location}>"


class Graph:
    """An ordered list of ops in SSA form, with input values and output values."""

    def __init__(self, inputs: Iterable[Value] = (), ops: Iterable[Op] = (), outputs: Iterable[Value] = ()):
        self.inputs: list[Value] = []
        for v in inputs:
            self.add_input(v)
        self.ops: list[Op] = []
        for op in ops:
            self.append(op)
        self.outputs: list[Value] = list(outputs)

    def add_input(self, v: Value) -> Value:
        v.owner, v.index = None, len(self.inputs)
        self.inputs.append(v)
        return v

    def append(self, op: Op) -> Op:
        op.parent = self
        self.ops.append(op)
        return op

    def insert_before(self, anchor: Op, op: Op) -> Op:
        op.parent = self
        self.ops.insert(self.ops.index(anchor), op)
        return op

    def insert_after(self, anchor: Op, op: Op) -> Op:
        op.parent = self
        self.ops.insert(self.ops.index(anchor) + 1, op)
        return op

    def erase(self, op: Op) -> None:
        """Remove an op whose results are no longer used."""
        for r in op.results:
            if r.uses or r in self.outputs:
                raise ValueError(f"cannot erase {op.location}: its result is still used")
        op.drop_operands()
        self.ops.remove(op)
        op.parent = None

    def walk(self) -> Iterator[Op]:
        """Every op, including ops nested in bodies, in program order."""
        for op in self.ops:
            yield op
            if op.body is not None:
                yield from op.body.walk()


class Module(Graph):
    """The whole program: a graph plus the named constants (initializers) it reads."""

    def __init__(self, name: str = "main"):
        super().__init__()
        self.name = name
        self.constants: list[Value] = []

    def add_constant(self, data: np.ndarray, name: str | None = None, type: TensorType | None = None) -> Value:
        """Register `data` as a constant; `type` may add quantization to the type."""
        from qv2c.ir.types import dtype_of_numpy

        # np.ascontiguousarray alone would turn 0-d (scalar) data into shape (1,)
        data = np.ascontiguousarray(data).reshape(np.shape(data))
        if type is None:
            type = TensorType(data.shape, dtype_of_numpy(data.dtype))
        v = Value(type, name)
        v.data = data
        self.constants.append(v)
        return v

    def remove_unused_constants(self) -> None:
        self.constants = [c for c in self.constants if c.uses or c in self.outputs]

    def verify(self) -> None:
        """Raise `qv2c.VerificationError` naming the first broken invariant."""
        from qv2c.ir.verifier import verify

        verify(self)

    def __str__(self) -> str:
        from qv2c.ir.printer import print_module

        return print_module(self)
