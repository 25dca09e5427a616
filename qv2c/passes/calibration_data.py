"""Validate user calibration data and cut it into fixed-size batches.

`qv2c.compile(model, calibration)` accepts an array of samples, an iterable of
arrays (each one sample or a batch of samples) or an iterable of dicts
`{input_name: array}`. This module turns any of those into one float32 array per
model input, checks it (empty, shape, dtype, NaN/Inf each raise a one-line
`CalibrationError`), and yields batches of the analysis module's batch size. The
last batch is padded by repeating samples; callers only look at the first `valid`
rows, so padding never counts in any statistic.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from qv2c.errors import CalibrationError
from qv2c.ir.core import Module


@dataclass
class CalibrationSet:
    """Samples per model input, stacked along a leading sample axis."""

    arrays: dict[str, np.ndarray]

    @property
    def count(self) -> int:
        return next(iter(self.arrays.values())).shape[0]

    def batches(self, batch: int) -> Iterator[tuple[dict[str, np.ndarray], int]]:
        """Yield `(inputs, valid)` with every input of leading size `batch`."""
        n = self.count
        for start in range(0, n, batch):
            valid = min(batch, n - start)
            idx = np.arange(start, start + batch)
            idx[valid:] = start  # pad with a repeat of the first sample of this batch
            yield {k: np.ascontiguousarray(a[idx]) for k, a in self.arrays.items()}, valid

    def head(self, n: int) -> CalibrationSet:
        return CalibrationSet({k: a[:n] for k, a in self.arrays.items()})


def make_calibration_set(module: Module, data) -> CalibrationSet:
    """Normalise and validate `data` against the inputs of `module`."""
    names = [v.name for v in module.inputs]
    sample_shapes = {v.name: v.type.shape[1:] for v in module.inputs}
    if data is None:
        raise CalibrationError("no calibration data given: pass an array of input samples (e.g. 64 images)")
    if isinstance(data, (np.ndarray, dict)):
        items: list = [data]
    elif isinstance(data, Iterable):
        items = list(data)
    else:
        raise CalibrationError(f"calibration data must be an array, a list of arrays or of dicts, not {type(data).__name__}")
    if not items:
        raise CalibrationError("the calibration set is empty: pass at least one input sample")
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            if len(names) != 1:
                raise CalibrationError(f"the model has inputs {names}: give calibration samples as dicts {{name: array}}")
            item = {names[0]: item}
        unknown = sorted(set(item) - set(names))
        if unknown:
            raise CalibrationError(f"calibration item {i} names unknown input(s) {unknown}; the model's inputs are {names}")
        for name in names:
            if name not in item:
                raise CalibrationError(f"calibration item {i} lacks input {name!r}")
            parts[name].append(_as_samples(np.asarray(item[name]), sample_shapes[name], name, i))
    arrays = {n: np.concatenate(p, axis=0) for n, p in parts.items()}
    for name, a in arrays.items():
        if a.shape[0] == 0:
            raise CalibrationError("the calibration set is empty: pass at least one input sample")
        if not np.isfinite(a).all():
            bad = int(np.count_nonzero(~np.isfinite(a)))
            raise CalibrationError(f"calibration input {name!r} contains {bad} NaN/Inf values; clean the data first")
    return CalibrationSet(arrays)


def _as_samples(a: np.ndarray, sample_shape: tuple[int, ...], name: str, i: int) -> np.ndarray:
    if a.dtype != np.float32:
        raise CalibrationError(f"calibration item {i} for input {name!r} has dtype {a.dtype}; the model expects float32")
    if a.shape == sample_shape:
        return a[None]
    if a.shape[1:] == sample_shape:
        return a
    raise CalibrationError(
        f"calibration item {i} for input {name!r} has shape {list(a.shape)}; expected one sample "
        f"{list(sample_shape)} or a batch [n, {', '.join(map(str, sample_shape))}]"
    )
