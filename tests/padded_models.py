"""Helpers for the pad tests: the padded depthwise CNN of `benchmarks/models/make_padded_dwcnn.py`
(a script, not a package, so it is loaded from its file), and `qv2c.compile` without `fold-pad`,
the unfolded model that a fold is compared with."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from unittest import mock

import onnx

import qv2c
import qv2c.api
from qv2c.passes import CANONICALIZE

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "models" / "make_padded_dwcnn.py"


def padded_dwcnn(size: int = 96, seed: int = 0) -> onnx.ModelProto:
    """The benchmark script's model (`build(size, seed)`)."""
    spec = importlib.util.spec_from_file_location("make_padded_dwcnn", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.build(size, seed)


def compile_unfolded(model, calibration=None, **options) -> qv2c.CompiledModel:
    """`qv2c.compile` with `fold-pad` taken out of the canonicalize pipeline (every Pad stays an op)."""
    with mock.patch.object(qv2c.api, "CANONICALIZE", [p for p in CANONICALIZE if p != "fold-pad"]):
        return qv2c.compile(model, calibration, **options)
