"""The qv2c intermediate representation: types, SSA graph, op catalogue, text form,
verifier and the NumPy reference interpreter that defines every op's meaning."""

from qv2c.ir.builder import Builder
from qv2c.ir.core import Graph, Module, Op, Value
from qv2c.ir.ops import OPS, OpDef
from qv2c.ir.types import DTYPES, QuantParams, TensorType

__all__ = ["Builder", "Graph", "Module", "Op", "Value", "OPS", "OpDef", "DTYPES", "QuantParams", "TensorType",
           "parse", "interpret", "verify"]


def parse(text: str) -> Module:
    """Parse the text form printed by `str(module)` back into a module."""
    from qv2c.ir.parser import parse_module

    return parse_module(text)


def verify(module: Module) -> None:
    """Raise `qv2c.VerificationError` if `module` breaks an IR invariant."""
    from qv2c.ir.verifier import verify as _verify

    _verify(module)


def interpret(module: Module, inputs: dict, intermediates: bool = False) -> dict:
    """Run `module` with NumPy; see `qv2c.ir.interpreter.interpret`."""
    from qv2c.ir.interpreter import interpret as _interpret

    return _interpret(module, inputs, intermediates=intermediates)
