"""Render a `Program` to Python source, and keep it in an on-disk cache keyed by its spec hash.

The source is one flat function per way of running the program, so what runs is
readable line by line (and shown by `CompiledModel.source`):

    from qv2c.runtime.kernels.conv_i8 import conv2d_i8_add
    ...
    def run(b, c):
        # %r1 = qv.qconv+qv.qadd (conv1)
        conv2d_i8_add(b[3], 0, c[0], c[1], b[4], 3, 3, 1, 1, 1, 1, 1, 1, c[2], 0, 0, 255, 0.05, b[2], ...)
        ...

    def run_profiled(b, c, clock, times):     # the same calls, each followed by a timer read

`b` is the list of buffers (views into one arena, planned by the runtime) and `c` the
constants (packed weights, biases, multipliers).  Every other argument is a literal:
shapes come from the arrays, so the kernels themselves stay generic (one Numba
specialisation per dtype combination, cached by Numba in the kernels' own files).

Cache: `$QV2C_CACHE_DIR` or `~/.cache/qv2c/`, file `program_<hash>.py`.  Its first
lines record the spec hash and a sha256 of the rest; a file whose record does not
match (corrupt, truncated, hand-edited) or that fails to import is rewritten, and if
the directory is not writable the source runs from memory.  The hash covers the code
generator's own sources, so a changed generator never picks up a stale file.
"""

from __future__ import annotations

import hashlib
import math
import os
import types
from dataclasses import dataclass
from pathlib import Path

from qv2c.codegen.spec import Arg, Buf, Const, Program

_MAGIC = "# qv2c generated program"


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
    lines += [f"from {module} import {fn}" for fn, module in sorted(functions.items(), key=lambda kv: kv[::-1])]
    lines += ["", "# buffers (physical shape and layout; views share their base's memory):"]
    for buf in program.buffers:
        base = f" view of b[{buf.base}] {list(buf.view)}" if buf.base is not None else ""
        lines.append(f"#   b[{buf.id}] {buf.role} {buf.dtype}{list(buf.shape)} {buf.layout} %{buf.name}{base}")
    lines.append("# constants:")
    lines += [f"#   c[{i}] {c.describe()}" for i, c in enumerate(program.consts)]
    calls = [f"{k.function}({', '.join(_literal(a) for _, a in k.args)})" for k in program.kernels]
    lines += ["", "", "def run(b, c):"]
    for k, call in zip(program.kernels, calls):
        lines += [f"    # {k.label}", f"    {call}"]
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


@dataclass(frozen=True)
class LoadedProgram:
    """The generated module's entry points, its source and where it was cached (None: from memory)."""

    run: types.FunctionType
    run_profiled: types.FunctionType
    source: str
    path: Path | None


def cache_dir() -> Path:
    """Where generated programs are kept: `$QV2C_CACHE_DIR`, else `~/.cache/qv2c`."""
    env = os.environ.get("QV2C_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "qv2c"


def load(program: Program) -> LoadedProgram:
    """Render `program` (or reuse its cached file) and import it."""
    spec_hash = program.spec_hash
    path = cache_dir() / f"program_{spec_hash[:32]}.py"
    text = _read_valid(path, spec_hash)
    if text is not None:
        try:
            return _import(text, path)
        except Exception:  # a file that checks out but does not import (e.g. a kernel renamed since): rebuild
            pass
    text = _with_header(render(program), spec_hash)
    written = _write(path, text)
    return _import(text, path if written else None)


def _with_header(body: str, spec_hash: str) -> str:
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f"{_MAGIC}; spec_hash = {spec_hash}\n# body_sha256 = {digest}\n{body}"


def _read_valid(path: Path, spec_hash: str) -> str | None:
    """The cached text if its header names `spec_hash` and its body matches the recorded digest."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    first, _, rest = text.partition("\n")
    second, _, body = rest.partition("\n")
    if first != f"{_MAGIC}; spec_hash = {spec_hash}" or second != f"# body_sha256 = {hashlib.sha256(body.encode()).hexdigest()}":
        return None
    return text


def _write(path: Path, text: str) -> bool:
    """Write atomically (a reader never sees half a file); False if the cache is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return True
    except OSError:
        return False


def _import(text: str, path: Path | None) -> LoadedProgram:
    filename = str(path) if path is not None else "<qv2c generated program>"
    module = types.ModuleType(f"qv2c_program_{Path(filename).stem}")
    module.__file__ = filename
    exec(compile(text, filename, "exec"), module.__dict__)
    return LoadedProgram(module.run, module.run_profiled, text, path)
