"""After its first run, a program calls its kernels through their compiled entry points
(`runtime.loader.bind_entry_points`): only kernels with one specialisation are rebound, and later
runs give the same outputs, also for inputs that are read-only or not C-contiguous."""

from __future__ import annotations

import types

import numpy as np
from numba import njit
from numba.core.dispatcher import Dispatcher
from quant_models import images, small_cnn

import qv2c
from qv2c.runtime.loader import LoadedProgram, bind_entry_points


@njit
def _twice(x):
    return 2 * x


@njit
def _plus_one(x):
    return x + 1


def test_only_kernels_with_one_specialisation_are_rebound():
    _twice(np.int64(3))
    _twice(np.float64(1.5))  # two specialisations: which one a call needs is decided per call
    _plus_one(np.int64(3))
    scope = {"_twice": _twice, "_plus_one": _plus_one, "np": np}
    exec("def run(b, c):\n    return _plus_one(b) + _twice(c)\n", scope)
    loaded = LoadedProgram(scope["run"], scope["run"], "", None)
    assert bind_entry_points(loaded) == 1
    assert scope["_twice"] is _twice
    assert not isinstance(scope["_plus_one"], Dispatcher)
    assert scope["run"](np.int64(4), np.int64(5)) == 15


def test_runs_after_binding_match_the_first_and_the_reference():
    path = small_cnn(seed=3)
    x = images(2, seed=1)
    model = qv2c.compile(path, x, precision="int8", batch_size=2, analysis_backend="reference")
    reference = qv2c.compile(path, x, precision="int8", batch_size=2, backend="reference",
                             analysis_backend="reference")
    want = reference(x)
    first = model(x)
    scope = model.executable._loaded.run.__globals__
    # kernels other tests of this process also ran with other types keep their dispatcher
    assert all(len(v.overloads) > 1 for v in scope.values() if isinstance(v, Dispatcher))
    assert any(isinstance(v, types.BuiltinFunctionType) for v in scope.values())  # entry points
    read_only = x.copy()
    read_only.flags.writeable = False
    for feed in (x, read_only, np.asfortranarray(x), x[:, :, :, ::-1].copy()[:, :, :, ::-1]):
        np.testing.assert_array_equal(model(feed), first)
    np.testing.assert_array_equal(first, want)
