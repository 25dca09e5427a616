"""The result every sensitivity method returns: layers ordered most sensitive first."""

from __future__ import annotations

from dataclasses import dataclass, field

from qv2c.ir.core import Module
from qv2c.passes.calibrate import Ranges
from qv2c.passes.calibration_data import CalibrationSet
from qv2c.passes.evaluator import Evaluator, ReferenceEvaluator
from qv2c.passes.realize_quant import QuantScheme


@dataclass
class LayerRecord:
    """One layer's sensitivity: its score (higher = keep in fp32 first) and the metrics behind it."""

    name: str
    op: str
    macs: int
    score: float
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"name": self.name, "op": self.op, "macs": self.macs, "score": self.score, **self.metrics}


@dataclass
class Ranking:
    method: str
    records: list[LayerRecord]
    #: inferences over the calibration set this method needed (calibration excluded)
    inferences: int
    seconds: float = 0.0

    def top(self, k: int) -> list[str]:
        return [r.name for r in self.records[:k]]

    def table(self) -> str:
        """A plain-text table of every record and metric."""
        keys = sorted({k for r in self.records for k in r.metrics})
        head = ["rank", "layer", "op", "score", *keys]
        rows = [head] + [
            [str(i + 1), r.name, r.op, f"{r.score:.4f}", *(f"{r.metrics.get(k, float('nan')):.4g}" for k in keys)]
            for i, r in enumerate(self.records)
        ]
        widths = [max(len(row[c]) for row in rows) for c in range(len(head))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


@dataclass
class SensitivityContext:
    """Everything a sensitivity method may use (methods differ in what they run)."""

    module: Module  # canonicalized fp32 module at the analysis batch size
    data: CalibrationSet
    batch: int
    ranges: Ranges
    scheme: QuantScheme
    seed: int = 0
    #: what the methods run their inferences on (the driver may hand in generated code)
    evaluator: Evaluator = field(default_factory=ReferenceEvaluator)
