"""Streaming error statistics between a reference tensor and its approximation.

SQNR (signal-to-quantization-noise ratio) in dB is 10*log10(sum(ref^2) / sum(err^2));
MSE is mean(err^2). Both are accumulated batch by batch, so the two sensitivity
inferences never hold more than one batch of any tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: SQNR reported for an exact match (no noise at all)
MAX_SQNR_DB = 200.0


@dataclass
class ErrorStats:
    signal: float = 0.0
    noise: float = 0.0
    count: int = 0

    def update(self, ref: np.ndarray, approx: np.ndarray) -> None:
        ref = ref.astype(np.float64, copy=False)
        err = approx.astype(np.float64, copy=False) - ref
        self.signal += float(np.vdot(ref, ref))
        self.noise += float(np.vdot(err, err))
        self.count += ref.size

    @property
    def sqnr_db(self) -> float:
        return sqnr_db(self.signal, self.noise)

    @property
    def mse(self) -> float:
        return self.noise / max(self.count, 1)


def sqnr_db(signal: float, noise: float) -> float:
    if noise <= 0.0:
        return MAX_SQNR_DB
    if signal <= 0.0:
        return -MAX_SQNR_DB
    return min(MAX_SQNR_DB, 10.0 * math.log10(signal / noise))


def weight_error(w: np.ndarray, w_dequantized: np.ndarray) -> ErrorStats:
    stats = ErrorStats()
    stats.update(w, w_dequantized)
    return stats


def normalise(values: list[float], higher_is_worse: bool) -> list[float]:
    """Min-max normalise to [0, 1] where 1 is the most sensitive layer."""
    lo, hi = min(values), max(values)
    if hi - lo <= 0:
        return [0.0] * len(values)
    scaled = [(v - lo) / (hi - lo) for v in values]
    return scaled if higher_is_worse else [1.0 - s for s in scaled]
