"""NumPy reference implementations, one registered function per op name.

A reference function takes the op (for its attributes and result types) and the
operand arrays, and returns the list of result arrays:

    @reference("qv.relu")
    def relu(op, x):
        return [np.maximum(x, 0)]

These functions *define* the semantics of the IR: every generated kernel is tested
against them (integers bit-exact). They favour clarity, but they also run
calibration and sensitivity analysis over hundreds of images, so the heavy ones
(convolution, GEMM) are vectorised.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ReferenceFn = Callable[..., list[np.ndarray]]
REFERENCE: dict[str, ReferenceFn] = {}


def reference(*names: str):
    """Register the decorated function as the reference implementation of `names`."""

    def register(fn: ReferenceFn) -> ReferenceFn:
        for n in names:
            REFERENCE[n] = fn
        return fn

    return register


def load_all() -> None:
    """Import every module of this package so their `@reference` functions register."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
