"""Load a generated program: the on-disk file format of rendered programs, and importing one.

A program file (written by `qv2c/codegen/render.py`) starts with two header lines:

    # qv2c generated program; spec_hash = <the cache key>
    # body_sha256 = <sha256 of the rest>

`read_valid` accepts a file only if both match (a corrupt, truncated or hand-edited file is
rejected, and the caller renders it again); `import_source` executes the text as a module and
returns its `run` / `run_profiled` entry points.  This is all the runtime needs to run a saved
program, without the compiler.  After a program's first successful run, `bind_entry_points` lets
its calls skip Numba's dispatcher.

Cache: `$QV2C_CACHE_DIR` or `~/.cache/qv2c/`, file `program_<key>.py`.
"""

from __future__ import annotations

import hashlib
import os
import types
from dataclasses import dataclass
from pathlib import Path

_MAGIC = "# qv2c generated program"


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


def program_path(key: str) -> Path:
    """The cache file of the program with cache key `key`."""
    return cache_dir() / f"program_{key[:32]}.py"


def with_header(body: str, key: str) -> str:
    """`body` with the two header lines that `read_valid` checks."""
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f"{_MAGIC}; spec_hash = {key}\n# body_sha256 = {digest}\n{body}"


def read_valid(path: Path, key: str) -> str | None:
    """The file's text if its header names `key` and its body matches the recorded digest, else None."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    first, _, rest = text.partition("\n")
    second, _, body = rest.partition("\n")
    if first != f"{_MAGIC}; spec_hash = {key}" or second != f"# body_sha256 = {hashlib.sha256(body.encode()).hexdigest()}":
        return None
    return text


def write_atomically(path: Path, text: str) -> bool:
    """Write atomically (a reader never sees half a file); False if the cache is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return True
    except OSError:
        return False


def import_source(text: str, path: Path | None) -> LoadedProgram:
    """Execute a program's source as a module (named after its file) and return its entry points."""
    filename = str(path) if path is not None else "<qv2c generated program>"
    module = types.ModuleType(f"qv2c_program_{Path(filename).stem}")
    module.__file__ = filename
    # kernels generated into the program (`Program.generated`) are cached by Numba next to a real file only
    module.__dict__["_qv2c_cache"] = path is not None
    exec(compile(text, filename, "exec"), module.__dict__)
    return LoadedProgram(module.run, module.run_profiled, text, path)


def bind_entry_points(loaded: LoadedProgram) -> int:
    """Rebind every kernel the program's module calls that has exactly one compiled specialisation to
    that specialisation's entry point; returns how many were rebound.

    A call through a Numba dispatcher first types each argument and looks the signature up, which for
    a conv call's ~25 arguments is about a third of its fixed cost; the entry point only unboxes.  Call
    this only after the program has run once: then every call site has compiled its specialisation, so
    a kernel with a single one has the one all of this program's calls use (a kernel called with two
    signatures keeps its dispatcher).  The buffers keep their types from run to run (the executable
    checks the inputs' dtype and shape and makes them C-contiguous, aligned and writeable)."""
    from numba.core.dispatcher import Dispatcher

    scope = loaded.run.__globals__
    bound = 0
    for name, fn in list(scope.items()):
        if isinstance(fn, Dispatcher) and len(fn.overloads) == 1:
            scope[name] = next(iter(fn.overloads.values())).entry_point
            bound += 1
    return bound
