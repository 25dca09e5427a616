"""Helpers of the tests that every op compiles to kernels (no NumPy reference fallback): compile a module,
run it and the reference interpreter on the same inputs, and list the kernels the program calls."""

from __future__ import annotations

import numpy as np

from qv2c.backend import build_executable
from qv2c.ir import Module, interpret


def kernel_calls(program) -> list[str]:
    """The kernel functions a lowered program calls, in order."""
    return [k.function for k in program.kernels]


def run_compiled(m: Module, feeds: dict[str, np.ndarray]):
    """(compiled outputs, interpreter outputs, program) of the verified module `m` on `feeds`; fails if the
    program calls the reference fallback."""
    m.verify()
    want = interpret(m, feeds)
    exe = build_executable(m)
    assert "run_reference" not in kernel_calls(exe.program), kernel_calls(exe.program)
    got = exe.run(feeds)
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
    return got, want, exe.program
