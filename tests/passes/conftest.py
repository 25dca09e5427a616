"""Fixtures shared by the pass tests."""

from __future__ import annotations

import pytest

from qv2c.passes.evaluator import ReferenceEvaluator


class CountingEvaluator(ReferenceEvaluator):
    """The reference evaluator, recording the module of every run (one batch each)."""

    def __init__(self):
        self.modules = []

    def run(self, module, *args):
        self.modules.append(module)
        super().run(module, *args)


@pytest.fixture
def count_evaluations():
    """An evaluator to put in a `SensitivityContext`; `.modules` lists the modules it ran."""
    return CountingEvaluator()
