"""Check the invariants every pass relies on; raise `VerificationError` on the first broken one.

Checked, in one walk over the module (O(ops + operands + uses)):

- SSA: every operand is defined before it is read (a graph input, a module
  constant or an earlier result in the same graph; a `qv.fused` body sees only its
  own inputs and earlier body ops), no value is defined twice, a result's `owner`
  and `index` point at its op, every op's `parent` is the graph holding it, and
  graph outputs are defined. Ops out of order and cycles show up as a use before
  the definition.
- use lists: `(op, i)` is in `v.uses` exactly when `op.operands[i] is v`, and no
  use names an op that is no longer in the module.
- ops: the name is in `qv2c.ir.ops.OPS` (or is `qv.fused`, whose body takes one
  input per operand, of the operand's type, and yields one value per result, of
  the result's type); the operand count is within the op's bounds; every declared
  attribute is present with its declared Python type (bool is not an int, int is
  not a float, tuple is not a list); every attribute value is printable; the result
  count, shapes and dtypes equal the shape rule's (quantization parameters are not
  compared; with `free_result_dtype` only shapes are).
- types and constants: per-channel quantization has an axis within the rank and
  one scale per slice; a constant has `.data` of exactly its type's shape and dtype.

Every message is one line: where (the op with its ONNX node via `Op.location`, or
the constant / module output), what is wrong, and what to do about it.
"""

from __future__ import annotations

from typing import NoReturn

import numpy as np

from qv2c.errors import ShapeError, VerificationError
from qv2c.ir.core import Graph, Module, Op, Value
from qv2c.ir.ops import OPS
from qv2c.ir.printer import format_attr, value_names
from qv2c.ir.types import TensorType

FUSED = "qv.fused"
_SETTERS = "change operands only with Op.set_operand or Value.replace_all_uses_with"


def verify(module: Module) -> None:
    """Raise `VerificationError` naming the first invariant `module` breaks."""
    _Verifier(module).run()


def _has_type(value: object, expected: type) -> bool:
    """isinstance, except that a bool does not count as an int."""
    if expected is int and isinstance(value, bool):
        return False
    return isinstance(value, expected)


class _Verifier:
    def __init__(self, module: Module):
        self.module = module
        self.names = value_names(module)
        #: id -> value for every value defined anywhere in the module
        self.defined: dict[int, Value] = {}
        #: ids of every op in the module, nested bodies included
        self.op_ids: set[int] = set()
        #: id(value) -> {(id(op), operand index)} built from `value.uses`, on first read
        self.use_sets: dict[int, set[tuple[int, int]]] = {}

    # -- messages ---------------------------------------------------------------
    def name(self, v: Value) -> str:
        n = self.names.get(id(v)) or v.name
        return f"%{n}" if n else f"an unnamed {v.type} value"

    @staticmethod
    def where(op: Op, outer: Op | None) -> str:
        return f"{op.location} in the body of {outer.location}" if outer is not None else op.location

    def fail_op(self, op: Op, outer: Op | None, problem: str, fix: str) -> NoReturn:
        raise VerificationError(f"{self.where(op, outer)}: {problem}; {fix}")

    def fail_module(self, problem: str, fix: str) -> NoReturn:
        raise VerificationError(f"module @{self.module.name}: {problem}; {fix}")

    # -- driver -----------------------------------------------------------------
    def run(self) -> None:
        m = self.module
        visible: set[int] = set()
        for i, v in enumerate(m.inputs):
            self.define_input(v, i, visible, None)
        for c in m.constants:
            self.check_constant(c)
            self.define(c, visible, lambda c=c: self.fail_module(
                f"constant {self.name(c)} is defined twice", "list each constant once and do not reuse input values"))
        self.graph(m, visible, None)
        self.check_use_lists()

    def define(self, v: Value, visible: set[int], on_duplicate) -> None:
        if id(v) in self.defined:
            on_duplicate()
        self.defined[id(v)] = v
        visible.add(id(v))

    def define_input(self, v: Value, i: int, visible: set[int], outer: Op | None) -> None:
        what = f"body input {i} ({self.name(v)})" if outer is not None else f"graph input {i} ({self.name(v)})"
        fix = "create a fresh Value for each graph input"
        if outer is None:
            fail = lambda problem: self.fail_module(problem, fix)
        else:
            fail = lambda problem: self.fail_op(outer, None, problem, fix)
        self.define(v, visible, lambda: fail(f"{what} is defined twice"))
        if v.owner is not None:
            fail(f"{what} has owner {v.owner.location}; add graph inputs with Graph.add_input")
        self.check_type(v.type, lambda problem: fail(f"{what}: {problem}"))

    def check_type(self, t: TensorType, fail) -> None:
        q = t.quant
        if q is None or q.axis is None:
            return
        if not -t.rank <= q.axis < t.rank:
            fail(f"quantization axis {q.axis} is out of range for type {t}")
        if len(q.scale) != t.shape[q.axis]:
            fail(f"type {t} has {len(q.scale)} per-channel scales for {t.shape[q.axis]} slices along axis {q.axis}")

    def check_constant(self, c: Value) -> None:
        where = f"constant {self.name(c)}"
        if c.uses:
            where += f" (read by {c.uses[0][0].location})"
        fix = "create constants with Module.add_constant and keep .data in step with the type"
        data = c.data
        if not isinstance(data, np.ndarray):
            self.fail_module(f"{where} has no array in .data (found {type(data).__name__})", fix)
        if tuple(data.shape) != c.type.shape:
            self.fail_module(f"{where} has data of shape {list(data.shape)} but type {c.type}", fix)
        if data.dtype != c.type.numpy_dtype:
            self.fail_module(f"{where} has data of dtype {data.dtype} but type {c.type}", fix)
        self.check_type(c.type, lambda problem: self.fail_module(f"{where}: {problem}", fix))

    # -- graphs and ops ---------------------------------------------------------
    def graph(self, g: Graph, visible: set[int], outer: Op | None) -> None:
        for op in g.ops:
            self.op(op, g, visible, outer)
        for i, v in enumerate(g.outputs):
            if id(v) in visible:
                continue
            problem = f"output {i} ({self.name(v)}) is not defined in "
            if outer is None:
                self.fail_module(problem + "the module", "output only inputs, constants or results of its ops")
            self.fail_op(outer, None, "body " + problem + "the body", "yield only body inputs or body op results")

    def op(self, op: Op, g: Graph, visible: set[int], outer: Op | None) -> None:
        if id(op) in self.op_ids:
            self.fail_op(op, outer, "appears twice in the module, so its results are defined twice",
                         "insert each op once (build a new op to duplicate work)")
        self.op_ids.add(id(op))
        if op.parent is not g:
            self.fail_op(op, outer, "its .parent is not the graph that holds it",
                         "insert ops with Builder, Graph.append or Graph.insert_before/after")
        for i, v in enumerate(op._operands):
            if id(v) not in visible:
                self.undefined_operand(op, i, v, g, outer)
            uses = self.use_sets.get(id(v))
            if uses is None:
                uses = self.use_sets[id(v)] = {(id(u), j) for u, j in v.uses}
            if (id(op), i) not in uses:
                self.fail_op(op, outer, f"operand {i} ({self.name(v)}) does not list this op in its uses", _SETTERS)
        if op.name == FUSED:
            self.fused(op, outer)
        else:
            self.catalogued(op, outer)
        for key, value in op.attrs.items():
            try:
                format_attr(value)
            except TypeError:
                self.fail_op(op, outer, f"attribute {key} = {value!r} of type {type(value).__name__} cannot be printed",
                             "use ints, floats, strings or lists of them")
        for i, r in enumerate(op.results):
            what = f"result {i} ({self.name(r)})"
            self.define(r, visible, lambda what=what: self.fail_op(
                op, outer, f"{what} is already defined elsewhere", "give every op fresh result values"))
            if r.owner is not op or r.index != i:
                self.fail_op(op, outer, f"{what} has owner/index pointing elsewhere",
                             "do not move result values between ops; build a new op instead")
            self.check_type(r.type, lambda problem, what=what: self.fail_op(
                op, outer, f"{what}: {problem}", "give one scale and zero point per slice along the axis"))

    def undefined_operand(self, op: Op, i: int, v: Value, g: Graph, outer: Op | None) -> NoReturn:
        what = f"operand {i} ({self.name(v)})"
        later = next((o for o in g.ops[g.ops.index(op) + 1:] if any(r is v for r in o.results)), None)
        if later is not None:
            self.fail_op(op, outer, f"{what} is used before its definition by {later.location} "
                                    "(ops out of order, or a cycle)", "order ops so each result is defined before use")
        if outer is not None and id(v) in self.defined:
            self.fail_op(op, outer, f"{what} is defined outside the body",
                         "pass it to the qv.fused op as an operand and read the matching body input")
        self.fail_op(op, outer, f"{what} is not defined in this graph (not an input, a constant or an earlier result)",
                     "use a value of this module; was its defining op erased?")

    def fused(self, op: Op, outer: Op | None) -> None:
        body = op.body
        if body is None:
            self.fail_op(op, outer, "has no body", "build qv.fused with body=Graph(inputs, ops, outputs)")
        if len(body.inputs) != len(op._operands):
            self.fail_op(op, outer, f"has {len(op._operands)} operands but its body has {len(body.inputs)} inputs",
                         "give the body one input per operand")
        for i, (v, b) in enumerate(zip(op._operands, body.inputs)):
            if v.type != b.type:
                self.fail_op(op, outer, f"operand {i} has type {v.type} but body input {i} has type {b.type}",
                             "make each body input's type equal its operand's")
        inner: set[int] = set()
        for i, v in enumerate(body.inputs):
            self.define_input(v, i, inner, op)
        self.graph(body, inner, op)
        if len(body.outputs) != len(op.results):
            self.fail_op(op, outer, f"has {len(op.results)} results but its body yields {len(body.outputs)} values",
                         "yield one value per result")
        for i, (v, r) in enumerate(zip(body.outputs, op.results)):
            if v.type != r.type:
                self.fail_op(op, outer, f"result {i} has type {r.type} but the body yields {v.type}",
                             "make each result type equal the yielded value's type")

    def catalogued(self, op: Op, outer: Op | None) -> None:
        opdef = OPS.get(op.name)
        if opdef is None:
            self.fail_op(op, outer, f"unknown op name {op.name!r}",
                         "fix the name or declare the op with @op_def in qv2c/ir/ops.py")
        if op.body is not None:
            self.fail_op(op, outer, "has a body, but only qv.fused may have one", "move the body into a qv.fused op")
        n, lo, hi = len(op._operands), opdef.min_operands, opdef.max_operands
        if n < lo or (hi is not None and n > hi):
            bounds = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi is not None else f"at least {lo}"
            self.fail_op(op, outer, f"has {n} operands but takes {bounds}", "pass the operands the op declares")
        for key, expected in opdef.attrs.items():
            if key not in op.attrs:
                self.fail_op(op, outer, f"is missing attribute {key!r} ({expected.__name__})",
                             "build it with Builder, which fills declared defaults, or set it")
            value = op.attrs[key]
            if not _has_type(value, expected):
                self.fail_op(op, outer, f"attribute {key} = {value!r} is a {type(value).__name__}, "
                                        f"not a {expected.__name__}", f"store a Python {expected.__name__}")
        try:
            inferred = opdef.infer([v.type for v in op._operands], op.attrs)
        except ShapeError as e:
            self.fail_op(op, outer, f"shape rule fails: {e}", "fix the operand types or attributes")
        except Exception as e:  # a malformed attribute (e.g. strides=[1]) trips the rule itself
            self.fail_op(op, outer, f"shape rule raised {type(e).__name__}: {e}", "check the attribute values")
        if len(inferred) != len(op.results):
            self.fail_op(op, outer, f"has {len(op.results)} results but the shape rule gives {len(inferred)}",
                         "build the op with Builder so results match the rule")
        for i, (r, t) in enumerate(zip(op.results, inferred)):
            if r.type.shape != t.shape or (not opdef.free_result_dtype and r.type.dtype != t.dtype):
                expected = f"shape {list(t.shape)}" if opdef.free_result_dtype else f"{t}"
                self.fail_op(op, outer, f"result {i} ({self.name(r)}) has type {r.type} but the shape rule gives "
                                        f"{expected}", "fix the result type (or the operands it was inferred from)")

    # -- use lists, the other direction ---------------------------------------------
    def check_use_lists(self) -> None:
        """Every use entry must name an op of this module whose operand slot holds the value."""
        for v in self.defined.values():
            seen: set[tuple[int, int]] = set()
            for u, j in v.uses:
                key = (id(u), j)
                if key in seen:
                    self.fail_op(u, None, f"operand {j} is listed twice in the uses of {self.name(v)}", _SETTERS)
                seen.add(key)
                if id(u) not in self.op_ids:
                    self.fail_op(u, None, f"is not in the module but is still listed as a user of {self.name(v)}",
                                 "erase ops with Graph.erase, which drops their operands")
                if not (0 <= j < len(u._operands) and u._operands[j] is v):
                    self.fail_op(u, None, f"{self.name(v)} lists operand {j} of this op as a use, but that operand "
                                          "is another value", _SETTERS)
