"""Deterministic text form of a module.

    module @tiny {
      input %x : f32[1,3,8,8]
      const %w : f32[4,3,3,3] = b64"AAAA..."
      const %b : f32[4] = [0.0, 0.5, -1.0, 2.0]
      %y = qv.conv(%x, %w, %b) {dilations = [1, 1], group = 1, pads = [1, 1, 1, 1], strides = [1, 1]} : f32[1,4,8,8] loc("conv1")
      %z = qv.quantize(%y) : u8[1,4,8,8]{scale = 0.05, zp = 0}
      output %z
    }

- value names come from the model where they are valid identifiers, otherwise they
  are sanitised and made unique; the printed text parses back to an equal module,
  so `print(parse(print(m))) == print(m)`.
- attributes print sorted by name; floats always carry a `.`, an `e`, `inf` or `nan`
  so the parser can tell them from ints; every float prints with `repr`, which
  round-trips exactly.
- constants with at most `LITERAL_LIMIT` elements print as literals, larger ones (and
  float ones holding a NaN with a sign or payload, which a literal cannot carry) as
  base64 of their little-endian bytes (exact, and about 1.33 bytes per byte).
- `loc("...")` is the ONNX node the op came from (the only `meta` key printed).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import numpy as np

from qv2c.ir.core import Graph, Module, Op, Value
from qv2c.ir.types import QuantParams, TensorType

LITERAL_LIMIT = 16
_IDENT = re.compile(r"[A-Za-z0-9_.]+")


def format_float(x: float) -> str:
    """A float literal that reads back as exactly the same float, never as an int."""
    s = repr(float(x))
    return s if any(c in s for c in ".ein") else s + ".0"


def format_quant(q: QuantParams) -> str:
    if q.axis is None:
        return f"{{scale = {format_float(q.scale[0])}, zp = {q.zero_point[0]}}}"
    scales = ", ".join(format_float(s) for s in q.scale)
    zps = ", ".join(str(z) for z in q.zero_point)
    return f"{{axis = {q.axis}, scale = [{scales}], zp = [{zps}]}}"


def format_type(t: TensorType) -> str:
    text = f"{t.dtype}[{','.join(str(d) for d in t.shape)}]"
    return text + format_quant(t.quant) if t.quant is not None else text


def format_attr(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return format_float(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    raise TypeError(f"cannot print attribute value {value!r} of type {type(value).__name__}")


def _literal_is_exact(data: np.ndarray) -> bool:
    """False when a float constant holds a NaN other than the plain one `nan` parses
    to (negative or with a payload): literals would lose its bits, base64 keeps them."""
    if data.dtype.kind != "f":
        return True
    nans = data[np.isnan(data)]
    if nans.size == 0:
        return True
    bits = np.dtype(f"u{data.dtype.itemsize}")
    return bool((nans.view(bits) == np.array(np.nan, dtype=data.dtype).view(bits)).all())


def format_constant_data(data: np.ndarray) -> str:
    if data.size <= LITERAL_LIMIT and _literal_is_exact(data):
        if data.dtype.kind == "f":
            return "[" + ", ".join(format_float(v) for v in data.ravel().tolist()) + "]"
        return "[" + ", ".join(str(int(v)) for v in data.ravel().tolist()) + "]"
    raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
    return 'b64"' + base64.b64encode(raw).decode("ascii") + '"'


class _Namer:
    """Gives every value a unique printable name, stable for a given module."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.taken: set[str] = set()
        self.counter = 0

    def assign(self, v: Value) -> None:
        base = v.name
        if base:
            base = base if _IDENT.fullmatch(base) else re.sub(r"[^A-Za-z0-9_.]", "_", base)
            name, k = base, 1
            while name in self.taken:
                name, k = f"{base}_{k}", k + 1
        else:
            while str(self.counter) in self.taken:
                self.counter += 1
            name = str(self.counter)
        self.taken.add(name)
        self.names[id(v)] = name

    def __call__(self, v: Value) -> str:
        try:
            return "%" + self.names[id(v)]
        except KeyError:
            raise ValueError(f"value {v!r} is used but never defined in this module") from None


def _assign_graph(namer: _Namer, g: Graph) -> None:
    for v in g.inputs:
        namer.assign(v)
    for op in g.ops:
        if op.body is not None:
            _assign_graph(namer, op.body)
        for r in op.results:
            namer.assign(r)


def _print_op(op: Op, namer: _Namer, indent: str, lines: list[str]) -> None:
    head = ", ".join(namer(r) for r in op.results)
    args = ", ".join(namer(v) for v in op.operands)
    text = f"{indent}{head} = {op.name}({args})" if op.results else f"{indent}{op.name}({args})"
    if op.attrs:
        text += " {" + ", ".join(f"{k} = {format_attr(op.attrs[k])}" for k in sorted(op.attrs)) + "}"
    text += " : " + ", ".join(format_type(r.type) for r in op.results)
    if op.meta.get("onnx_node"):
        text += f" loc({json.dumps(op.meta['onnx_node'])})"
    if op.body is None:
        lines.append(text)
        return
    lines.append(text + " {")
    inner = indent + "  "
    lines.append(inner + "^(" + ", ".join(f"{namer(v)} : {format_type(v.type)}" for v in op.body.inputs) + "):")
    for nested in op.body.ops:
        _print_op(nested, namer, inner, lines)
    lines.append(inner + "yield " + ", ".join(namer(v) for v in op.body.outputs))
    lines.append(indent + "}")


def _name_module(m: Module) -> _Namer:
    namer = _Namer()
    for v in m.inputs:
        namer.assign(v)
    for c in m.constants:
        namer.assign(c)
    for op in m.ops:
        if op.body is not None:
            _assign_graph(namer, op.body)
        for r in op.results:
            namer.assign(r)
    return namer


def value_names(m: Module) -> dict[int, str]:
    """id(value) -> the name (without `%`) the printer gives it."""
    return dict(_name_module(m).names)


def print_module(m: Module) -> str:
    """The module as text (see the module docstring for the format)."""
    namer = _name_module(m)
    lines = [f"module @{re.sub(r'[^A-Za-z0-9_.]', '_', m.name) or 'main'} {{"]
    for v in m.inputs:
        lines.append(f"  input {namer(v)} : {format_type(v.type)}")
    for c in m.constants:
        lines.append(f"  const {namer(c)} : {format_type(c.type)} = {format_constant_data(c.data)}")
    for op in m.ops:
        _print_op(op, namer, "  ", lines)
    lines.append("  output " + ", ".join(namer(v) for v in m.outputs))
    lines.append("}")
    return "\n".join(lines) + "\n"
