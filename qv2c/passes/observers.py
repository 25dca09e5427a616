"""Range observers for calibration: min-max, percentile and entropy (KL divergence).

An observer sees every calibration batch of one tensor (`update`) and then answers
the range `(lo, hi)` to quantize that tensor to (`range()`). All three keep O(bins)
state, never the tensors themselves, so calibration streams over any number of
images.

- `minmax`: the observed minimum and maximum.
- `percentile`: clips the magnitude at the given percentile of |x| (default 99.99),
  which ignores a handful of outliers that would otherwise waste resolution.
- `entropy`: the clipping threshold whose 128-level quantized histogram is closest
  (KL divergence) to the observed histogram of |x|, as TensorRT and onnxruntime do.

Percentile and entropy keep a histogram of |x| over [0, max|x|] that is re-binned
when a later batch raises the maximum.
"""

from __future__ import annotations

import numpy as np

HISTOGRAM_BINS = 2048


class MinMaxObserver:
    def __init__(self) -> None:
        self.lo = np.inf
        self.hi = -np.inf

    def update(self, x: np.ndarray) -> None:
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))

    def range(self) -> tuple[float, float]:
        return self.lo, self.hi


class _AbsHistogramObserver(MinMaxObserver):
    """Min-max plus a histogram of |x| on [0, amax], re-binned as amax grows."""

    def __init__(self) -> None:
        super().__init__()
        self.amax = 0.0
        self.counts = np.zeros(HISTOGRAM_BINS, dtype=np.float64)

    def update(self, x: np.ndarray) -> None:
        super().update(x)
        a = np.abs(x.ravel())
        amax = float(a.max()) if a.size else 0.0
        if amax > self.amax:
            self._rebin(amax)
        if self.amax > 0:
            counts, _ = np.histogram(a, bins=HISTOGRAM_BINS, range=(0.0, self.amax))
            self.counts += counts

    def _rebin(self, new_amax: float) -> None:
        """Move the existing counts onto bins spanning [0, new_amax]."""
        if self.amax > 0 and self.counts.any():
            centers = (np.arange(HISTOGRAM_BINS) + 0.5) * (self.amax / HISTOGRAM_BINS)
            self.counts, _ = np.histogram(centers, bins=HISTOGRAM_BINS, range=(0.0, new_amax), weights=self.counts)
        self.amax = new_amax

    def _clipped_range(self, threshold: float) -> tuple[float, float]:
        return max(self.lo, -threshold), min(self.hi, threshold)


class PercentileObserver(_AbsHistogramObserver):
    def __init__(self, percentile: float = 99.99) -> None:
        super().__init__()
        self.percentile = percentile

    def range(self) -> tuple[float, float]:
        total = self.counts.sum()
        if total == 0:
            return super().range()
        cdf = np.cumsum(self.counts) / total
        idx = int(np.searchsorted(cdf, self.percentile / 100.0))
        threshold = (min(idx, HISTOGRAM_BINS - 1) + 1) * self.amax / HISTOGRAM_BINS
        return self._clipped_range(threshold)


class EntropyObserver(_AbsHistogramObserver):
    def __init__(self, quantized_bins: int = 128) -> None:
        super().__init__()
        self.quantized_bins = quantized_bins

    def range(self) -> tuple[float, float]:
        if self.counts.sum() == 0:
            return super().range()
        best = kl_threshold_bin(self.counts, self.quantized_bins)
        return self._clipped_range(best * self.amax / HISTOGRAM_BINS)


def kl_threshold_bin(counts: np.ndarray, quantized_bins: int) -> int:
    """The number of histogram bins i to keep so that quantizing the first i bins to
    `quantized_bins` levels loses the least information (TensorRT's KL calibration).

    For each candidate i, P is the histogram clipped at i (outliers folded into the
    last kept bin) and Q is P squeezed into `quantized_bins` levels and expanded
    back over the non-empty bins; the answer minimises KL(P || Q).
    """
    n = counts.size
    best_i, best_kl = n, np.inf
    step = max(1, (n - quantized_bins) // 256)  # ~256 candidates keeps this O(bins * 256)
    for i in range(quantized_bins, n + 1, step):
        kept = counts[:i]
        p = kept.copy()
        p[i - 1] += counts[i:].sum()
        nonzero = p > 0
        # bin j of the i kept bins falls into level group[j]; each level's mass is
        # spread evenly over that level's non-empty bins
        group = np.arange(i) * quantized_bins // i
        mass = np.bincount(group, weights=kept, minlength=quantized_bins)
        filled = np.bincount(group, weights=nonzero, minlength=quantized_bins)
        q = np.where(nonzero, mass[group] / np.maximum(filled[group], 1), 0.0)
        psum, qsum = p.sum(), q.sum()
        if qsum == 0:
            continue
        pn, qn = p[nonzero] / psum, np.maximum(q[nonzero] / qsum, 1e-12)
        kl = float(np.sum(pn * np.log(pn / qn)))
        if kl < best_kl:
            best_i, best_kl = i, kl
    return best_i


OBSERVERS = {"minmax": MinMaxObserver, "percentile": PercentileObserver, "entropy": EntropyObserver}
