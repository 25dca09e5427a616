"""Checks shared by the pass tests: parse a module from IR text, run passes through
the `PassManager` (so the IR is verified before and after each), compare the
printed module with the expected text, and check that the module computes the
same outputs as before."""

from __future__ import annotations

import numpy as np

from qv2c.ir import Module, interpret, parse
from qv2c.passes import run_pipeline


def random_inputs(module: Module, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float inputs for every module input."""
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(v.type.numpy_dtype) for v in module.inputs}


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float) -> None:
    """Max abs difference within `rtol` times the largest |expected| (elementwise
    relative error is meaningless next to values that cancel to ~0)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = max(float(np.max(np.abs(expected))), 1e-30)
    err = float(np.max(np.abs(actual.astype(np.float64) - expected))) / scale
    assert err <= rtol, f"relative error {err:.3g} > {rtol}"


def check_pass(module: Module, passes: str | list[str], expected: str | None, rtol: float = 1e-5,
               seed: int = 0) -> Module:
    """Run `passes` on `module`; compare `str(module)` with `expected` (unless None)
    and the outputs on a random input with the outputs before the passes."""
    inputs = random_inputs(module, seed)
    before = interpret(module, inputs)
    run_pipeline(module, [passes] if isinstance(passes, str) else passes)
    if expected is not None:
        assert str(module) == expected
    after = interpret(module, inputs)
    assert list(after) == list(before), "the module's output names changed"
    for name in before:
        assert_close(after[name], before[name], rtol)
    return module


def check_golden(text: str, passes: str | list[str], expected: str, rtol: float = 1e-5) -> Module:
    """`check_pass` on the module parsed from `text`."""
    return check_pass(parse(text), passes, expected, rtol)
