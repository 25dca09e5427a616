"""Code generation: lower a fused mixed-precision module to kernel calls and render them as Python.

    program = lower(module)     # frozen KernelSpecs over numbered buffers (lower.py, spec.py)
    source = render(program)    # one flat `run(buffers, consts)` function (render.py)

`qv2c.runtime.executable.Executable` plans the buffers, loads the rendered source
through the on-disk cache (`render.load`) and runs it.
"""

from qv2c.codegen.lower import lower
from qv2c.codegen.render import cache_dir, load, render
from qv2c.codegen.spec import Buf, BufferSpec, Const, KernelSpec, Program

__all__ = ["Buf", "BufferSpec", "Const", "KernelSpec", "Program", "cache_dir", "load", "lower", "render"]
