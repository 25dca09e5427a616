"""The Numba backend's driver: lower -> generate -> load -> `Executable`.

    exe = build_executable(module)                     # fused module in, runnable program out
    build_executable(module, exact=False)              # int8 -> fp32 boundaries fused into the epilogue
    build_executable(module, target=TARGETS["avx2"])   # kernels for another target (`runtime/kernels/target.py`)

The compiler half (`qv2c.codegen`: lowering, rendering, the program cache) and the runtime
half (`qv2c.runtime`: buffer planning, kernels, running) meet only here and in the program
format (`runtime/program.py`); the runtime never imports the compiler.
"""

from __future__ import annotations

from qv2c.codegen.lower import lower
from qv2c.codegen.render import load
from qv2c.ir.core import Module
from qv2c.runtime.executable import Executable
from qv2c.runtime.kernels.target import TargetSpec


def build_executable(module: Module, exact: bool = True, target: TargetSpec | None = None) -> Executable:
    """`module` (verified IR, optionally fused) lowered for `target` (default: `QV2C_TARGET` or the host's
    best), its source rendered or taken from the cache, and loaded into an `Executable`."""
    program = lower(module, exact, target)
    return Executable(module, program, load(program))
