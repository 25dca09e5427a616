"""`PassManager`: run named passes in order, verifying the IR after each one.

    PassManager(["fold-batchnorm", "dce"], verify_each=True, dump_dir="ir-dump").run(module)

- Pass names are resolved when the manager is built, so a typo fails before any
  work with a `ConfigError` that lists the known passes. An entry may also be
  `(name, {option: value})` to pass options to that pass.
- With `verify_each`, the module is verified before the first pass (so a broken
  input is not blamed on a pass) and after every pass; a failure raises
  `VerificationError` naming the pass that broke the IR.
- With `dump_dir`, the IR text after pass number N is written to
  `dump_dir/NN-passname.qvir` (TVM's PrintAfterAll), so a wrong result can be
  traced to the pass that introduced it by diffing consecutive files.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qv2c.errors import ConfigError, VerificationError
from qv2c.ir.core import Module
from qv2c.passes.registry import PassFn, get_pass

PassSpec = str | tuple[str, dict[str, Any]]


class PassManager:
    """An ordered pipeline of registered passes."""

    def __init__(self, passes: Iterable[PassSpec], verify_each: bool = True, dump_dir: str | Path | None = None):
        self.passes: list[tuple[str, PassFn, dict[str, Any]]] = []
        for spec in passes:
            name, options = (spec, {}) if isinstance(spec, str) else spec
            if not isinstance(name, str) or not isinstance(options, dict):
                raise ConfigError(f"a pipeline entry must be a pass name or (name, options dict), got {spec!r}")
            self.passes.append((name, get_pass(name), dict(options)))
        self.verify_each = verify_each
        self.dump_dir = Path(dump_dir) if dump_dir is not None else None

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.passes]

    def run(self, module: Module) -> Module:
        """Run every pass on `module` in place; returns `module` for chaining."""
        if self.verify_each:
            _verify(module, "on the input to the pass pipeline (before any pass ran)")
        if self.dump_dir is not None:
            self.dump_dir.mkdir(parents=True, exist_ok=True)
        for i, (name, fn, options) in enumerate(self.passes, start=1):
            fn(module, **options)
            if self.verify_each:
                _verify(module, f"after pass {name!r} (pipeline step {i}): the pass left invalid IR")
            if self.dump_dir is not None:
                (self.dump_dir / f"{i:02d}-{name}.qvir").write_text(str(module))
        return module

    def __repr__(self) -> str:
        return f"PassManager({self.names!r}, verify_each={self.verify_each}, dump_dir={self.dump_dir!r})"


def run_pipeline(module: Module, names: Iterable[PassSpec], verify_each: bool = True,
                 dump_dir: str | Path | None = None) -> Module:
    """Run the passes `names` on `module` in place (see `PassManager`)."""
    return PassManager(names, verify_each=verify_each, dump_dir=dump_dir).run(module)


def _verify(module: Module, where: str) -> None:
    try:
        module.verify()
    except VerificationError as e:
        raise VerificationError(f"{where}: {e}") from e
