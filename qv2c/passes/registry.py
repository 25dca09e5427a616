"""The pass registry: pass name -> callable that rewrites a module in place.

A pass is registered once, in the file named after it (`fold_batchnorm.py` defines
`fold-batchnorm`):

    @register_pass("fold-batchnorm")
    def run(module: Module, **options) -> None:
        '''What it rewrites and why, with a tiny before/after IR example.'''

A pass may also be a small class with a docstring and `__call__(self, module,
**options)`; the registry stores one instance of it. Either way the registered
object gets a `name` attribute, so a pass always knows what it is called.

`PASSES` is filled as pass modules are imported; `get_pass` imports the module a
pass name maps to, so callers never depend on import order.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from qv2c.errors import ConfigError

#: a pass: rewrites `module` in place, returns None
PassFn = Callable[..., None]

#: pass name -> pass callable
PASSES: dict[str, PassFn] = {}


def register_pass(name: str) -> Callable[[Any], Any]:
    """Register the decorated function (or class, instantiated once) as pass `name`."""

    def register(obj: Any) -> Any:
        if name in PASSES:
            raise ValueError(f"pass {name!r} is registered twice")
        fn = obj() if isinstance(obj, type) else obj
        if not callable(fn):
            raise TypeError(f"pass {name!r} must be callable as run(module, **options)")
        fn.name = name
        PASSES[name] = fn
        return obj

    return register


def get_pass(name: str) -> PassFn:
    """The pass registered as `name`; raises `ConfigError` listing the known passes.

    Pass `a-b` lives in `qv2c/passes/a_b.py` (one pass per file, named as the pass),
    so only that module is imported; every pass module is imported only to list
    the known passes in the error.
    """
    if name not in PASSES:
        module = "qv2c.passes." + name.replace("-", "_")
        if name.replace("-", "_").isidentifier() and importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    if name not in PASSES:
        from qv2c.passes import load_all

        load_all()
    try:
        return PASSES[name]
    except KeyError:
        raise ConfigError(f"unknown pass {name!r}; known passes: {', '.join(sorted(PASSES))}") from None
