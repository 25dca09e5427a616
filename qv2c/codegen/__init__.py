"""Code generation: lower a fused mixed-precision module to kernel calls and render them as Python.

    program = lower(module)     # frozen KernelSpecs over numbered buffers (lower.py; the format: runtime/program.py)
    source = render(program)    # one flat `run(buffers, consts)` function (render.py)
    loaded = load(program)      # rendered, or reused from the on-disk cache, and imported

`qv2c.backend.build_executable` drives it: lower -> load -> `runtime.Executable` (buffers planned,
kernels compiled) -> run.
"""

from qv2c.codegen.lower import lower
from qv2c.codegen.render import load, render
from qv2c.runtime.program import Buf, BufferSpec, Const, KernelSpec, Program

__all__ = ["Buf", "BufferSpec", "Const", "KernelSpec", "Program", "load", "lower", "render"]
