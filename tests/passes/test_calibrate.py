"""Tests of calibration: the range observers (observers.py), the calibration set
(calibration_data.py) and `calibrate()` (calibrate.py).

The observers are checked against NumPy on the whole data at once; `calibrate()`
against per-sample runs of the same module at batch 1, so that neither batching nor
the padding of the last batch can change a range.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qv2c.errors import ConfigError
from qv2c.ir import Builder, Module, TensorType, Value, interpret, parse
from qv2c.passes import observers
from qv2c.passes.calibrate import calibrate
from qv2c.passes.calibration_data import CalibrationSet
from qv2c.passes.observers import (
    HISTOGRAM_BINS,
    OBSERVERS,
    EntropyObserver,
    MinMaxObserver,
    PercentileObserver,
)


def gaussian(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


# -- observers ----------------------------------------------------------------------
def test_minmax_is_exact():
    x = gaussian(1000)
    obs = MinMaxObserver()
    obs.update(x)
    assert obs.range() == (float(x.min()), float(x.max()))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(1, 199), max_size=5))
def test_minmax_streaming_over_batches_equals_one_big_batch(seed, cuts):
    x = np.random.default_rng(seed).standard_normal((200, 3)).astype(np.float32) * 10
    streamed, whole = MinMaxObserver(), MinMaxObserver()
    for part in np.split(x, sorted(set(cuts))):
        streamed.update(part)
    whole.update(x)
    assert streamed.range() == whole.range() == (float(x.min()), float(x.max()))


def test_percentile_clips_a_planted_outlier():
    x = gaussian(100_000)
    x[17] = 1000.0
    obs = PercentileObserver(99.99)
    obs.update(x)
    lo, hi = obs.range()
    # the threshold is the 99.99th percentile of |x| rounded up to a bin edge (width 1000 / 2048)
    true = float(np.percentile(np.abs(x), 99.99))
    assert true <= hi <= true + 2 * 1000.0 / HISTOGRAM_BINS
    assert lo == -hi and hi < 10.0  # min-max would say 1000


def test_entropy_threshold_on_a_gaussian_is_inside_the_max_and_keeps_most_mass():
    x = gaussian(100_000)
    obs = EntropyObserver()
    obs.update(x)
    lo, hi = obs.range()
    amax = float(np.abs(x).max())
    assert lo == -hi and 2.5 < hi < 0.9 * amax
    assert np.mean((x >= lo) & (x <= hi)) > 0.99


def test_observers_of_an_all_zero_tensor_answer_zero():
    for cls in OBSERVERS.values():
        obs = cls()
        obs.update(np.zeros(10, np.float32))
        assert obs.range() == (0.0, 0.0)


def test_histogram_rebinning_keeps_every_count():
    """A later batch with a 4x larger max re-bins the earlier counts; with a whole ratio
    every old bin falls wholly into one new bin, so the result equals a histogram of all
    the data at once (up to the earlier max itself, which sits on a new bin edge)."""
    rng = np.random.default_rng(3)
    first = rng.uniform(-1.0, 1.0, 5000).astype(np.float32)
    first[0] = 1.0
    second = rng.uniform(-4.0, 4.0, 3000).astype(np.float32)
    second[0] = -4.0
    obs = PercentileObserver()
    obs.update(first)
    obs.update(second)
    assert obs.amax == 4.0
    assert obs.counts.sum() == first.size + second.size
    direct, _ = np.histogram(np.abs(np.concatenate([first, second])), bins=HISTOGRAM_BINS, range=(0.0, 4.0))
    assert np.abs(np.cumsum(obs.counts) - np.cumsum(direct)).max() <= 1


@pytest.mark.parametrize("growth", [1.7, 3.0, 50.0])
def test_percentile_after_rebinning_matches_one_pass(growth):
    """Whatever the ratio of the maxima, streaming gives the percentile of all the data
    within a couple of (final) bin widths."""
    first = gaussian(20_000, seed=5)
    second = gaussian(20_000, seed=6) * growth
    streamed, whole = PercentileObserver(99.0), PercentileObserver(99.0)
    streamed.update(first)
    streamed.update(second)
    whole.update(np.concatenate([first, second]))
    assert streamed.counts.sum() == whole.counts.sum() == 40_000
    width = whole.amax / HISTOGRAM_BINS
    assert abs(streamed.range()[1] - whole.range()[1]) <= 2 * width


# -- the calibration set ----------------------------------------------------------------
def test_batches_pad_the_last_batch_and_say_how_many_rows_are_real():
    data = CalibrationSet({"x": np.arange(5, dtype=np.float32)[:, None]})
    got = [(b["x"][:, 0].tolist(), valid) for b, valid in data.batches(2)]
    assert [valid for _, valid in got] == [2, 2, 1]
    assert [rows[:valid] for rows, valid in got] == [[0.0, 1.0], [2.0, 3.0], [4.0]]
    assert all(len(rows) == 2 for rows, _ in got)


# -- calibrate() -------------------------------------------------------------------------
CALIB_NET = """\
module @calib {{
  input %x : f32[{b},2,3,3]
  const %w : f32[2,2,1,1] = [1.0, -1.0, 0.5, 2.0]
  const %bias : f32[2] = [0.5, -0.25]
  %c = qv.conv(%x, %w, %bias) {{dilations = [1, 1], group = 1, pads = [0, 0, 0, 0], strides = [1, 1]}} : f32[{b},2,3,3]
  %r = qv.relu(%c) : f32[{b},2,3,3]
  %p = qv.maxpool(%r) {{ceil_mode = 0, dilations = [1, 1], kernel = [2, 2], pads = [0, 0, 0, 0], strides = [1, 1]}} : f32[{b},2,2,2]
  output %p
}}
"""


def three_samples() -> np.ndarray:
    """Samples 0 and 1 in [1, 2], sample 2 in [3, 4]: nothing is near 0, so a padded row of
    zeros would move every minimum, and sample 2 (alone in the last batch of 2) would be
    counted twice by a histogram if its padded repeat slipped through."""
    rng = np.random.default_rng(7)
    x = rng.uniform(1.0, 2.0, (3, 2, 3, 3)).astype(np.float32)
    x[2] += 2.0
    return x


def per_sample_values(x: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Every value of CALIB_NET by printed name, one array per sample (batch-1 runs)."""
    m1 = parse(CALIB_NET.format(b=1))
    runs = [interpret(m1, {"x": x[i:i + 1]}, intermediates=True) for i in range(len(x))]
    return {name: [run[name] for run in runs] for name in runs[0]}


def test_calibrate_minmax_is_exact_and_ignores_padding():
    x = three_samples()
    ranges = calibrate(parse(CALIB_NET.format(b=2)), CalibrationSet({"x": x}), batch=2)
    values = per_sample_values(x)
    assert set(ranges) == {"x", "c", "r", "p"}  # constants are not calibrated
    for name, arrays in values.items():
        if name in ranges:
            assert ranges[name] == (min(float(a.min()) for a in arrays), max(float(a.max()) for a in arrays)), name


class PoisonedPadding(CalibrationSet):
    """The same samples, but the padding rows of a short last batch hold 1e6 instead of a
    repeated sample: counted anywhere, they would move every maximum."""

    def batches(self, batch):
        for inputs, valid in super().batches(batch):
            yield {k: np.concatenate([a[:valid], np.full_like(a[valid:], 1e6)]) for k, a in inputs.items()}, valid


@pytest.mark.parametrize("method", sorted(OBSERVERS))
def test_calibrate_never_counts_padding_rows(method):
    """3 samples at batch 2: calibrate() must give what an observer fed only the real rows
    of each batch (samples 0-1, then sample 2) gives, whatever the padding holds."""
    x = three_samples()
    ranges = calibrate(parse(CALIB_NET.format(b=2)), PoisonedPadding({"x": x}), batch=2, method=method)
    values = per_sample_values(x)
    assert set(ranges) == {"x", "c", "r", "p"}
    for name in ranges:
        exact = OBSERVERS[method]()
        exact.update(np.concatenate(values[name][:2]))
        exact.update(values[name][2])
        assert ranges[name] == exact.range(), name
        assert ranges[name][1] < 100.0


def test_calibrate_observes_exactly_the_real_rows(monkeypatch):
    """Whatever an observer does with them, the rows it is given sum to the sample count."""
    seen: dict[int, int] = {}

    class Counting(MinMaxObserver):
        def update(self, a):
            seen[id(self)] = seen.get(id(self), 0) + a.shape[0]
            super().update(a)

    monkeypatch.setitem(observers.OBSERVERS, "minmax", Counting)
    calibrate(parse(CALIB_NET.format(b=2)), CalibrationSet({"x": three_samples()}), batch=2)
    assert len(seen) == 4 and set(seen.values()) == {3}


def test_calibrate_streams_like_one_batch():
    """minmax over batches of 2 (with padding) equals minmax over one batch of 3."""
    x = three_samples()
    by_two = calibrate(parse(CALIB_NET.format(b=2)), CalibrationSet({"x": x}), batch=2)
    at_once = calibrate(parse(CALIB_NET.format(b=3)), CalibrationSet({"x": x}), batch=3)
    assert by_two == at_once


def test_calibrate_keys_are_printed_value_names():
    """An input called "input:0" prints as %input_0 and an unnamed result as %0: the
    ranges use those names, which is what realize-quant and the IR text show."""
    m = Module("names")
    x = m.add_input(Value(TensorType((1, 4), "f32"), "input:0"))
    minus_one = m.add_constant(np.array([-1.0], np.float32), "minus_one")
    b = Builder(m)
    m.outputs = [b.op("qv.relu", [b.op("qv.mul", [x, minus_one])], result_names=["out"])]
    ranges = calibrate(m, CalibrationSet({"input:0": np.array([[1.0, -2.0, 3.0, -4.0]], np.float32)}), batch=1)
    assert ranges == {"input_0": (-4.0, 3.0), "0": (-3.0, 4.0), "out": (0.0, 4.0)}
    assert "input %input_0" in str(m) and "%0 = qv.mul" in str(m)


def test_unknown_calibration_method_is_a_config_error():
    with pytest.raises(ConfigError, match="calibration_method 'kl'"):
        calibrate(parse(CALIB_NET.format(b=1)), CalibrationSet({"x": three_samples()}), batch=1, method="kl")
