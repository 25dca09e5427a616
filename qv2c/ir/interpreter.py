"""The NumPy reference interpreter: runs any module, op by op, in program order.

`interpret(module, {"input": x})` returns `{output_name: array}`; with
`intermediates=True` it returns every value the run produced, keyed by printed
value name (the names `str(module)` shows), which calibration and sensitivity
analysis use to compare layers between runs.
"""

from __future__ import annotations

import numpy as np

from qv2c.errors import InputError, QV2CError
from qv2c.ir.core import Graph, Module, Value
from qv2c.ir.reference import REFERENCE, load_all


def check_inputs(module: Module, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Validate run-time inputs against the module's input types; returns them in order."""
    if not isinstance(inputs, dict):
        raise InputError(f"inputs must be a dict {{name: array}}, got {type(inputs).__name__}")
    names = [v.name for v in module.inputs]
    unknown = sorted(set(inputs) - set(names))
    if unknown:
        raise InputError(f"unknown input name(s) {unknown}; the model's inputs are {names}")
    arrays = []
    for v in module.inputs:
        if v.name not in inputs:
            raise InputError(f"missing input {v.name!r}; the model's inputs are {names}")
        a = np.asarray(inputs[v.name])
        if a.dtype != v.type.numpy_dtype:
            raise InputError(f"input {v.name!r} has dtype {a.dtype}, expected {v.type.numpy_dtype}")
        if a.shape != v.type.shape:
            raise InputError(f"input {v.name!r} has shape {list(a.shape)}, expected {list(v.type.shape)}")
        arrays.append(a)
    return arrays


def run_graph(graph: Graph, env: dict[int, np.ndarray], observe=None, free_dead: bool = False) -> list[np.ndarray]:
    """Evaluate `graph` given arrays for its inputs (and constants) in `env`, keyed by id(value).

    `observe(value, array)` is called for every op result as it is computed.
    With `free_dead`, arrays are dropped from `env` after their last use, so a large
    model's run holds only live tensors (calibration streams batches this way).
    """
    load_all()
    last_use = _last_uses(graph) if free_dead else {}
    keep = {id(v) for v in graph.outputs}
    for step, op in enumerate(graph.ops):
        args = [env[id(v)] for v in op.operands]
        if op.body is not None:
            inner = {id(v): a for v, a in zip(op.body.inputs, args)}
            outs = run_graph(op.body, inner)
        else:
            fn = REFERENCE.get(op.name)
            if fn is None:
                raise QV2CError(f"the reference interpreter has no implementation of {op.location}")
            outs = fn(op, *args)
        for r, a in zip(op.results, outs):
            env[id(r)] = a
            if observe is not None:
                observe(r, a)
        if free_dead:
            for v in op.operands:
                if last_use.get(id(v)) == step and id(v) not in keep and v.owner is not None:
                    env.pop(id(v), None)
    return [env[id(v)] for v in graph.outputs]


def _last_uses(graph: Graph) -> dict[int, int]:
    last: dict[int, int] = {}
    for step, op in enumerate(graph.ops):
        for v in op.operands:
            last[id(v)] = step
    return last


def evaluate(module: Module, inputs: dict[str, np.ndarray], observe=None, free_dead: bool = False) -> dict[int, np.ndarray]:
    """Run `module` and return the array of every value, keyed by `id(value)`.

    Analyses (calibration, sensitivity) use this to look values up by identity,
    which survives renaming, unlike printed names; they pass `observe` and
    `free_dead=True` to stream over values instead of keeping them all."""
    env: dict[int, np.ndarray] = {id(c): c.data for c in module.constants}
    for v, a in zip(module.inputs, check_inputs(module, inputs)):
        env[id(v)] = a
    run_graph(module, env, observe=observe, free_dead=free_dead)
    return env


def interpret(module: Module, inputs: dict[str, np.ndarray], intermediates: bool = False) -> dict[str, np.ndarray]:
    """Run `module` on `inputs`; returns outputs by their model names, or (with
    `intermediates=True`) every value by its printed name."""
    from qv2c.ir.printer import value_names

    env = evaluate(module, inputs)
    outs = [env[id(v)] for v in module.outputs]
    names = value_names(module)
    if intermediates:
        return {names[id(v)]: a for v, a in _values_with_arrays(module, env)}
    return {v.name or names[id(v)]: a for v, a in zip(module.outputs, outs)}


def _values_with_arrays(module: Module, env: dict[int, np.ndarray]):
    for v in module.inputs:
        yield v, env[id(v)]
    for op in module.walk():
        for r in op.results:
            if id(r) in env:
                yield r, env[id(r)]


__all__ = ["interpret", "evaluate", "check_inputs", "run_graph", "Value"]
