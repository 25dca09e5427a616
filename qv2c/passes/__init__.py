"""Analyses and transforms over `qv2c.ir.Module`, one pass per file.

Transforms register themselves by name (`qv2c.passes.registry.register_pass`) and
run through `qv2c.passes.manager.PassManager`, which verifies the IR after every
pass and can dump it (`dump_dir`). `CANONICALIZE` is the standard clean-up pipeline
run on every freshly imported model.
"""

from __future__ import annotations

from qv2c.passes.registry import PASSES, get_pass, register_pass

__all__ = ["PASSES", "get_pass", "register_pass", "load_all", "PassManager", "run_pipeline", "CANONICALIZE"]


def load_all() -> None:
    """Import every module of this package so their `@register_pass` passes register."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def __getattr__(name: str):
    # Lazy, so importing the registry from a pass module never imports every pass.
    if name in ("PassManager", "run_pipeline"):
        from qv2c.passes import manager

        return getattr(manager, name)
    if name == "CANONICALIZE":
        from qv2c.passes.canonicalize import CANONICALIZE

        return CANONICALIZE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
