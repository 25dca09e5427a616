"""Fixtures shared by the pass tests."""

from __future__ import annotations

import pytest

import qv2c.passes.sensitivity.quantunev2 as quantunev2
import qv2c.passes.sensitivity.referred as referred
import qv2c.passes.sensitivity.runs as runs
from qv2c.ir.interpreter import evaluate


@pytest.fixture
def count_evaluations(monkeypatch):
    """Wrap `evaluate` where the sensitivity code calls it; returns the list of modules run."""
    calls = []

    def counting(module, *args, **kwargs):
        calls.append(module)
        return evaluate(module, *args, **kwargs)

    for where in (quantunev2, referred, runs):
        monkeypatch.setattr(where, "evaluate", counting)
    return calls
