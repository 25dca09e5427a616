"""The package's layering, checked on the source: which layer may import which, and that importing
qv2c has no side effects.

    ir        the IR, its text form, the reference interpreter, `qv.fused` decoding
    passes    IR -> IR; takes what it needs (data, scoring functions) as arguments
    codegen   IR -> lowered program (runtime/program.py) and its source
    runtime   runs a lowered program: never imports the compiler
    backend   the driver: lower -> load -> Executable
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "qv2c"

#: layer -> packages it must not import
FORBIDDEN = {
    "ir": ("qv2c.passes", "qv2c.codegen", "qv2c.runtime", "qv2c.datasets", "qv2c.frontend", "qv2c.backend",
           "qv2c.api"),
    "passes": ("qv2c.codegen", "qv2c.runtime", "qv2c.datasets", "qv2c.backend", "qv2c.api"),
    "codegen": ("qv2c.passes", "qv2c.datasets", "qv2c.backend", "qv2c.api", "qv2c.frontend"),
    "runtime": ("qv2c.codegen", "qv2c.passes", "qv2c.datasets", "qv2c.backend", "qv2c.api", "qv2c.frontend"),
}


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement of `path` names (at any depth: local imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_what_it_may(layer):
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in imported_modules(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not bad, "\n".join(bad)


def test_importing_qv2c_changes_no_environment_and_writes_no_cache(tmp_path):
    """Every module imported in a fresh process: os.environ as before, no file written to the Numba cache
    (the stale-cache check, `kernels.prepare()`, runs when a program is first built)."""
    modules = sorted(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
                     for p in PACKAGE.rglob("*.py"))
    code = ("import json, os, importlib, sys\n"
            "before = dict(os.environ)\n"
            f"for m in {modules!r}:\n"
            "    importlib.import_module(m)\n"
            "print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    assert json.loads(out.stdout.splitlines()[-1]) == {}
    # (Numba itself creates the cache folders of cache=True functions when they are defined)
    assert [p for p in (tmp_path / "numba").rglob("*") if p.is_file()] == []
