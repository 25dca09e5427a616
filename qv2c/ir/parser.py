"""Parse the text form printed by `qv2c.ir.printer` back into a `Module`.

    module @tiny {
      input %x : f32[1,3,8,8]
      const %b : f32[4] = [0.0, 0.5, -1.0, 2.0]
      %y = qv.conv(%x, %w, %b) {group = 1, ...} : f32[1,4,8,8] loc("conv1")
      %f = qv.fused(%y) : f32[1,4,8,8] {
        ^(%a : f32[1,4,8,8]):
        %r = qv.relu(%a) : f32[1,4,8,8]
        yield %r
      }
      output %f
    }

Why a hand-written parser: the grammar is a dozen line-shaped statements, error
messages must point at a line and column and say what was expected, and modules
carry tens of MB of base64 weights that must go through C code (one regex match
and `base64.b64decode` per constant), never a Python loop per character.

The parser builds exactly what the text says: result types come from the text,
not from shape inference, and op names missing from `qv2c.ir.ops.OPS` still parse
(the verifier, not the parser, decides what is valid). The printed value names
become `Value.name`, so printing the parsed module reproduces the text. A body
(`qv.fused`) sees only its own inputs and earlier body ops, as the verifier
requires. `//` starts a comment, so hand-written golden tests can annotate IR.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, NamedTuple, NoReturn

import numpy as np

from qv2c.errors import ParseError
from qv2c.ir.core import Graph, Module, Op, Value
from qv2c.ir.types import DTYPES, QuantParams, TensorType

_TOKEN = re.compile(
    r"""
     (?P<nl>\n)
    |(?P<skip>[ \t\r\f]+|//[^\n]*)
    |(?P<b64>b64"[^"\n]*")
    |(?P<str>"(?:[^"\\\n]|\\.)*")
    |(?P<badstr>b64"|")
    |(?P<value>%[A-Za-z0-9_.]+)
    |(?P<symbol>@[A-Za-z0-9_.]+)
    |(?P<num>-?(?:inf|nan)(?![A-Za-z0-9_.])|-?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)
    |(?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    |(?P<punct>[{}()\[\],:=^])
    |(?P<error>.)
    """,
    re.VERBOSE,
)
_KEYWORDS = ("input", "const", "output", "yield")


class _Tok(NamedTuple):
    """One token; punctuation tokens use the character itself as their kind."""

    kind: str
    text: str
    line: int
    col: int


def _tokenize(text: str) -> list[_Tok]:
    """Split `text` into tokens; bad characters become `error` tokens so that the
    parser reports problems in reading order."""
    toks: list[_Tok] = []
    line, line_start = 1, 0
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "skip":
            continue
        start = m.start()
        if kind == "punct":
            kind = m.group()
        toks.append(_Tok(kind, m.group(), line, start - line_start + 1))
        if kind == "nl":
            line, line_start = line + 1, m.end()
    toks.append(_Tok("eof", "", line, len(text) - line_start + 1))
    return toks


def _describe(tok: _Tok) -> str:
    if tok.kind == "nl":
        return "end of line"
    if tok.kind == "eof":
        return "end of input"
    text = tok.text if len(tok.text) <= 24 else tok.text[:20] + "..."
    return repr(text)


def _is_float_text(text: str) -> bool:
    return any(c in text for c in ".eEin")


def parse_module(text: str) -> Module:
    """Parse one module in the format `str(module)` prints; raises `ParseError`."""
    return _Parser(text).module()


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokenize(text)
        self.pos = 0
        #: value name -> line of its definition; names are unique module-wide
        self.defined: dict[str, int] = {}

    # -- token helpers ----------------------------------------------------------
    def peek(self, ahead: int = 0) -> _Tok:
        return self.toks[min(self.pos + ahead, len(self.toks) - 1)]

    def next(self) -> _Tok:
        tok = self.toks[self.pos]
        if tok.kind == "error":
            self.fail(tok, f"unexpected character {tok.text!r}")
        if tok.kind == "badstr":
            self.fail(tok, "unterminated string: expected a closing '\"' on the same line")
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def fail(self, tok: _Tok, message: str) -> NoReturn:
        raise ParseError(f"line {tok.line}, column {tok.col}: {message}")

    def expect(self, kind: str, what: str) -> _Tok:
        tok = self.next()
        if tok.kind != kind:
            self.fail(tok, f"expected {what}, found {_describe(tok)}")
        return tok

    def expect_word(self, word: str, what: str | None = None) -> _Tok:
        tok = self.next()
        if tok.kind != "ident" or tok.text != word:
            self.fail(tok, f"expected {what or repr(word)}, found {_describe(tok)}")
        return tok

    def at(self, kind: str, text: str | None = None, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind == kind and (text is None or tok.text == text)

    def accept(self, kind: str) -> bool:
        if self.at(kind):
            self.pos += 1
            return True
        return False

    def skip_newlines(self) -> None:
        while self.peek().kind == "nl":
            self.pos += 1

    def end_of_line(self) -> None:
        tok = self.next()
        if tok.kind not in ("nl", "eof"):
            self.fail(tok, f"expected end of line, found {_describe(tok)}")

    # -- values -----------------------------------------------------------------
    def define(self, tok: _Tok) -> str:
        name = tok.text[1:]
        first = self.defined.get(name)
        if first is not None:
            self.fail(tok, f"value {tok.text} is defined twice (first at line {first}); give each value a unique name")
        self.defined[name] = tok.line
        return name

    def use(self, scope: dict[str, Value]) -> Value:
        tok = self.expect("value", "a value like %x")
        v = scope.get(tok.text[1:])
        if v is not None:
            return v
        line = self.defined.get(tok.text[1:])
        if line is not None:
            self.fail(tok, f"value {tok.text} (defined at line {line}) is not visible here: a body sees only its own "
                           "inputs and earlier body ops, and body values are not visible outside it")
        self.fail(tok, f"undefined value {tok.text}")

    def uses(self, scope: dict[str, Value]) -> list[Value]:
        """A possibly empty comma-separated list of values (output / yield)."""
        if not self.at("value"):
            return []
        values = [self.use(scope)]
        while self.accept(","):
            values.append(self.use(scope))
        return values

    # -- numbers, types and attributes -----------------------------------------
    def number(self, what: str = "a number") -> int | float:
        tok = self.expect("num", what)
        return float(tok.text) if _is_float_text(tok.text) else int(tok.text)

    def integer(self, what: str) -> int:
        tok = self.expect("num", what)
        if _is_float_text(tok.text):
            self.fail(tok, f"expected {what}, found {_describe(tok)}")
        return int(tok.text)

    def type(self) -> TensorType:
        tok = self.expect("ident", "a type like f32[1,3,8,8]")
        if tok.text not in DTYPES:
            self.fail(tok, f"unknown dtype {tok.text!r}; expected one of {', '.join(DTYPES)}")
        self.expect("[", "'[' starting the shape")
        dims: list[int] = []
        if not self.at("]"):
            while True:
                dim_tok = self.peek()
                dim = self.integer("a dimension (a non-negative integer)")
                if dim < 0:
                    self.fail(dim_tok, f"expected a non-negative dimension, found {dim}")
                dims.append(dim)
                if not self.accept(","):
                    break
        self.expect("]", "',' or ']' in the shape")
        quant = None
        if self.at("{") and self.peek(1).kind == "ident" and self.peek(1).text in ("scale", "axis"):
            quant = self.quant()
        return TensorType(tuple(dims), tok.text, quant)

    def quant(self) -> QuantParams:
        """`{scale = s, zp = z}` or `{axis = a, scale = [..], zp = [..]}`."""
        open_tok = self.expect("{", "'{'")
        axis = None
        if self.at("ident", "axis"):
            self.next()
            self.expect("=", "'='")
            axis = self.integer("an integer axis")
            self.expect(",", "','")
        self.expect_word("scale")
        self.expect("=", "'='")
        scale = [self.number("a scale")] if axis is None else self.number_list("a scale")
        self.expect(",", "','")
        self.expect_word("zp")
        self.expect("=", "'='")
        zp = [self.integer("an integer zero point")] if axis is None else self.int_list("an integer zero point")
        self.expect("}", "'}' closing the quantization parameters")
        try:
            return QuantParams(tuple(scale), tuple(zp), axis)
        except ValueError as e:
            self.fail(open_tok, f"bad quantization parameters: {e}")

    def number_list(self, what: str) -> list[int | float]:
        self.expect("[", f"'[' starting a list of {what}s")
        items: list[int | float] = []
        if not self.at("]"):
            items.append(self.number(what))
            while self.accept(","):
                items.append(self.number(what))
        self.expect("]", "',' or ']'")
        return items

    def int_list(self, what: str) -> list[int]:
        self.expect("[", f"'[' starting a list of {what}s")
        items: list[int] = []
        if not self.at("]"):
            items.append(self.integer(what))
            while self.accept(","):
                items.append(self.integer(what))
        self.expect("]", "',' or ']'")
        return items

    def string(self) -> str:
        tok = self.next()
        if tok.kind != "str":
            self.fail(tok, f"expected a string, found {_describe(tok)}")
        try:
            return json.loads(tok.text)
        except ValueError as e:
            self.fail(tok, f"bad string literal {_describe(tok)}: {e}")

    def attr_value(self) -> Any:
        tok = self.peek()
        if tok.kind == "num":
            return self.number()
        if tok.kind in ("str", "badstr"):
            return self.string()
        if tok.kind == "[":
            self.next()
            items = []
            if not self.at("]"):
                items.append(self.attr_value())
                while self.accept(","):
                    items.append(self.attr_value())
            self.expect("]", "',' or ']' in the list")
            return items
        self.next()
        self.fail(tok, f"expected an attribute value (number, string or list), found {_describe(tok)}")

    def attr_dict(self) -> dict[str, Any]:
        self.expect("{", "'{'")
        attrs: dict[str, Any] = {}
        if not self.at("}"):
            while True:
                key = self.next()
                if key.kind != "ident" and not (key.kind == "num" and key.text in ("inf", "nan")):
                    self.fail(key, f"expected an attribute name, found {_describe(key)}")
                if key.text in attrs:
                    self.fail(key, f"attribute {key.text!r} is given twice")
                self.expect("=", "'=' after the attribute name")
                attrs[key.text] = self.attr_value()
                if not self.accept(","):
                    break
        self.expect("}", "',' or '}' in the attributes")
        return attrs

    # -- constants --------------------------------------------------------------
    def constant_data(self, name: str, t: TensorType) -> np.ndarray:
        tok = self.peek()
        dt = t.numpy_dtype
        if tok.kind == "b64":
            self.next()
            try:
                raw = base64.b64decode(tok.text[4:-1], validate=True)
            except ValueError as e:  # binascii.Error is a ValueError
                self.fail(tok, f"bad base64 payload for constant %{name}: {e}")
            need = t.size * dt.itemsize
            if len(raw) != need:
                self.fail(tok, f"base64 payload of constant %{name} has {len(raw)} bytes; its type {t} needs {need}")
            return np.frombuffer(raw, dtype=dt.newbyteorder("<")).astype(dt).reshape(t.shape)
        if tok.kind != "[":
            self.next()
            self.fail(tok, f"expected constant data ([...] or b64\"...\"), found {_describe(tok)}")
        if dt.kind == "f":
            values = self.number_list("a number")
        else:
            values = self.int_list(f"an integer ({t.dtype} constant)")
        if len(values) != t.size:
            self.fail(tok, f"constant %{name} : {t} needs {t.size} values, found {len(values)}")
        if dt.kind in "iu":
            info = np.iinfo(dt)
            bad = [v for v in values if not info.min <= v <= info.max]
            if bad:
                self.fail(tok, f"value {bad[0]} of constant %{name} is out of range for {t.dtype}")
        elif dt.kind == "b" and any(v not in (0, 1) for v in values):
            self.fail(tok, f"bool constant %{name} may hold only 0 and 1")
        return np.array(values, dtype=dt).reshape(t.shape)

    # -- statements -------------------------------------------------------------
    def module(self) -> Module:
        self.skip_newlines()
        head = self.expect_word("module", "'module @name {'")
        name = self.expect("symbol", "a module name like @main").text[1:]
        self.expect("{", "'{' after the module name")
        self.end_of_line()
        m = Module(name)
        scope: dict[str, Value] = {}
        while True:
            self.skip_newlines()
            tok = self.peek()
            if tok.kind == "ident" and tok.text == "input":
                self.next()
                vtok = self.expect("value", "an input name like %x")
                self.expect(":", "':' before the input type")
                t = self.type()
                self.end_of_line()
                v = m.add_input(Value(t, self.define(vtok)))
                scope[v.name] = v
            elif tok.kind == "ident" and tok.text == "const":
                self.next()
                vtok = self.expect("value", "a constant name like %w")
                self.expect(":", "':' before the constant type")
                t = self.type()
                self.expect("=", "'=' before the constant data")
                data = self.constant_data(vtok.text[1:], t)
                self.end_of_line()
                v = m.add_constant(data, self.define(vtok), t)
                scope[v.name] = v
            elif tok.kind == "ident" and tok.text == "output":
                self.next()
                m.outputs = self.uses(scope)
                self.end_of_line()
                break
            elif tok.kind in ("}", "eof"):
                self.fail(tok, f"expected 'output %...' before the end of module @{name}, found {_describe(tok)}")
            else:
                self.op(scope, m)
        self.skip_newlines()
        close = self.next()
        if close.kind != "}":
            self.fail(close, f"expected '}}' closing module @{name} (opened at line {head.line}), "
                             f"found {_describe(close)}")
        self.skip_newlines()
        tail = self.next()
        if tail.kind != "eof":
            self.fail(tail, f"expected end of input after the module's closing '}}', found {_describe(tail)}")
        return m

    def op(self, scope: dict[str, Value], graph: Graph) -> None:
        """`%a, %b = qv.name(%x, %y) {k = v} : T1, T2 loc("node")`, optionally with a body."""
        result_toks: list[_Tok] = []
        if self.at("value"):
            result_toks.append(self.next())
            while self.accept(","):
                result_toks.append(self.expect("value", "a result name like %y"))
            self.expect("=", "'=' after the result names")
        name_tok = self.next()
        if name_tok.kind != "ident" or name_tok.text in _KEYWORDS:
            self.fail(name_tok, f"expected an op like '%y = qv.relu(%x) : f32[4]', found {_describe(name_tok)}")
        self.expect("(", f"'(' after {name_tok.text}")
        operands: list[Value] = []
        if not self.at(")"):
            operands.append(self.use(scope))
            while self.accept(","):
                operands.append(self.use(scope))
        self.expect(")", "',' or ')' after the operands")
        attrs = self.attr_dict() if self.at("{") else {}
        self.expect(":", "':' before the result types")
        types: list[TensorType] = []
        if result_toks:
            types.append(self.type())
            while self.accept(","):
                types.append(self.type())
            if len(types) != len(result_toks):
                self.fail(name_tok, f"{name_tok.text} names {len(result_toks)} results but gives {len(types)} types")
        meta = {}
        if self.at("ident", "loc"):
            self.next()
            self.expect("(", "'(' after loc")
            meta["onnx_node"] = self.string()
            self.expect(")", "')' closing loc(...)")
        body = None
        if self.at("{"):
            self.next()
            self.end_of_line()
            body = self.body(name_tok)
        self.end_of_line()
        names = [self.define(t) for t in result_toks]
        op = Op(name_tok.text, operands, types, attrs, meta, body, names)
        for r in op.results:
            scope[r.name] = r
        graph.append(op)

    def body(self, owner: _Tok) -> Graph:
        """`^(%a : T, ...):`, ops, `yield %v, ...`, `}`; the body has its own scope."""
        self.skip_newlines()
        self.expect("^", f"'^(' listing the body inputs of {owner.text}")
        self.expect("(", "'(' after '^'")
        scope: dict[str, Value] = {}
        inputs: list[Value] = []
        if not self.at(")"):
            while True:
                vtok = self.expect("value", "a body input like %a")
                self.expect(":", "':' before the body input type")
                v = Value(self.type(), self.define(vtok))
                scope[v.name] = v
                inputs.append(v)
                if not self.accept(","):
                    break
        self.expect(")", "',' or ')' after the body inputs")
        self.expect(":", "':' after the body inputs")
        self.end_of_line()
        g = Graph(inputs)
        while True:
            self.skip_newlines()
            tok = self.peek()
            if tok.kind == "ident" and tok.text == "yield":
                break
            if tok.kind in ("}", "eof") or (tok.kind == "ident" and tok.text in _KEYWORDS):
                self.next()
                self.fail(tok, f"expected 'yield %...' ending the body of {owner.text} (opened at line {owner.line}), "
                               f"found {_describe(tok)}")
            self.op(scope, g)
        self.next()
        g.outputs = self.uses(scope)
        self.end_of_line()
        self.skip_newlines()
        close = self.next()
        if close.kind != "}":
            self.fail(close, f"expected '}}' closing the body of {owner.text} (opened at line {owner.line}), "
                             f"found {_describe(close)}")
        return g
