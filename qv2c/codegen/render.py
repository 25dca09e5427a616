"""Render a `Program` to Python source, and keep it in an on-disk cache keyed by its spec hash.

The source is one flat function per way of running the program, so what runs is
readable line by line (and shown by `CompiledModel.source`):

    from qv2c.runtime.kernels.conv_i8 import conv2d_i8_requant
    ...
    def run(b, c):
        # %r1 = qv.qconv+qv.qadd (conv1)
        #   int8 conv; epilogue: requantize (float scales) + residual, clamp [0, inf]; target avx2
        #   x=b[3] zx=0 w=c[0] bias=c[1] out=b[4] kh=3 kw=3 ... res=b[2] ... tgt=c[3]
        conv2d_i8_requant(b[3], 0, c[0], c[1], b[4], 3, 3, 1, 1, 1, 1, 1, 1, c[2], 0, 0, 255, 0.05, b[2], True, ..., c[3])
        ...

    def run_profiled(b, c, clock, times):     # the same calls, each followed by a timer read

`b` is the list of buffers (views into one arena, planned by the runtime) and `c` the
constants (packed weights, biases, multipliers, the target marker).  Above each call of `run`,
a comment gives the typed kernel description of a conv/GEMM group (`kernel_desc.py`) and every
argument by name (keyword arguments cost more per call in Numba's dispatcher,
benchmarks/results/backend_costs.md, so the call itself stays positional).  Every other argument is a literal:
shapes come from the arrays, so the kernels themselves stay generic (one Numba
specialisation per dtype combination, cached by Numba in the kernels' own files).

Cache (`load`): the file format and its checks are the runtime's (`qv2c/runtime/loader.py`);
a file whose header does not match (corrupt, truncated, hand-edited) or that fails to import
is rewritten, and if the directory is not writable the source runs from memory.  The cache
key covers the code generator's own sources, so a changed generator never picks up a stale file.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from qv2c.runtime import program as program_format
from qv2c.runtime.loader import LoadedProgram, import_source, program_path, read_valid, with_header, write_atomically
from qv2c.runtime.program import Arg, Buf, Const, Program


def render(program: Program) -> str:
    """The Python source of `program` (deterministic: equal programs give equal text)."""
    functions: dict[str, str] = {}
    for k in program.kernels:
        module, fn = k.kernel.split(":")
        if functions.setdefault(fn, module) != module:
            raise ValueError(f"kernel name {fn!r} is defined in both {functions[fn]} and {module}")
    lines = [f'"""Kernel program of module @{program.name}: {len(program.kernels)} kernel calls, '
             f'{len(program.buffers)} buffers, {len(program.consts)} constants."""', "",
             "from math import inf, nan  # noqa: F401 (literals)"]
    lines += [f"from {module} import {fn}" for fn, module in sorted(functions.items(), key=lambda kv: kv[::-1])
              if module != program_format.GENERATED]
    for name, source in program.generated:
        lines += ["", "", f"# -- generated kernel {name} (codegen/elementwise.py) --", source.rstrip("\n")]
    lines += ["", "# buffers (physical shape and layout; views share their base's memory):"]
    for buf in program.buffers:
        base = f" view of b[{buf.base}] {list(buf.view)}" if buf.base is not None else ""
        lines.append(f"#   b[{buf.id}] {buf.role} {buf.dtype}{list(buf.shape)} {buf.layout} %{buf.name}{base}")
    lines.append("# constants:")
    lines += [f"#   c[{i}] {c.describe()}" for i, c in enumerate(program.consts)]
    calls = [f"{k.function}({', '.join(_literal(a) for _, a in k.args)})" for k in program.kernels]
    lines += ["", "", "def run(b, c):"]
    for k, call in zip(program.kernels, calls):
        lines += [f"    # {k.label}"] + ([f"    #   {k.desc.summary()}"] if k.desc is not None else [])
        lines += [f"    #   {' '.join(f'{name}={_literal(a)}' for name, a in k.args)}", f"    {call}"]
    lines += ["    return None", "", "", "def run_profiled(b, c, clock, times):", "    t0 = clock()"]
    for i, (k, call) in enumerate(zip(program.kernels, calls)):
        lines += [f"    # {k.label}", f"    {call}", "    t1 = clock()", f"    times[{i}] += t1 - t0", "    t0 = t1"]
    lines.append("    return None")
    return "\n".join(lines) + "\n"


def _literal(a: Arg) -> str:
    if isinstance(a, Buf):
        return f"b[{a.id}]"
    if isinstance(a, Const):
        return f"c[{a.id}]"
    if isinstance(a, bool):
        return repr(a)
    if isinstance(a, int):
        return str(int(a))
    if isinstance(a, float):
        if math.isnan(a):
            return "nan"
        if math.isinf(a):
            return "inf" if a > 0 else "-inf"
        return repr(float(a))
    raise TypeError(f"cannot render kernel argument {a!r} of type {type(a).__name__}")


#: the files whose code decides what a Program renders to: their digest is part of every cache key
_GENERATOR_FILES = ("layout.py", "lower.py", "standalone.py", "render.py", "elementwise.py")
_DIGEST: list[str] = []


def generator_digest() -> str:
    """sha256 of the code generator's own sources and the program format: a new generator never reuses
    an old file."""
    if not _DIGEST:
        here = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for path in [here / name for name in _GENERATOR_FILES] + [Path(program_format.__file__)]:
            h.update(path.read_bytes())
        _DIGEST.append(h.hexdigest())
    return _DIGEST[0]


def cache_key(program: Program) -> str:
    """The on-disk cache key of `program`'s source: its spec hash and the generator's version."""
    return hashlib.sha256((generator_digest() + program.spec_hash).encode()).hexdigest()


def load(program: Program) -> LoadedProgram:
    """Render `program` (or reuse its cached file, `runtime.loader`) and import it."""
    key = cache_key(program)
    path = program_path(key)
    text = read_valid(path, key)
    if text is not None:
        try:
            return import_source(text, path)
        except Exception:  # a file that checks out but does not import (e.g. a kernel renamed since): rebuild
            pass
    text = with_header(render(program), key)
    written = write_atomically(path, text)
    return import_source(text, path if written else None)
