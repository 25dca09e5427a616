"""How much of the noise at a tensor reaches the network output, measured in the all-int8 run.

QuantuneV2's local metrics measure the error a layer adds at its own output. What decides
accuracy is the error that reaches the network output, and layers differ a lot in how
much of their error gets there: a first conv's error passes through every later layer, a
classifier's error lands on the logits unfiltered, a ReLU drops the error on the channels
it switches off, a global average pool averages independent noise away but not noise that
is spatially correlated.

The estimate here uses only the all-int8 inference: each value's noise energy `N(v)` per
sample (against the fp32 inference), and each op passes on `N(result) / sum(N(operands))`
of the noise it receives. `gain(v)` is the output noise energy per unit of noise energy at
`v`: 1 at the module outputs, `gain(operand) += ratio * gain(result)` in one reverse sweep.
Along a chain the ratios telescope to `N(output) / N(v)`.

That ratio also counts the noise an op adds itself as noise it passed on, so it
overstates the gain of early layers. Two sounder-looking estimates were tried first and
were worse. Both were checked on ResNet18-CIFAR per-channel against output-sqnr's
single-layer runs, whose first conv puts about 1e-3 of its own output noise on the logits
(exploratory runs whose code this file replaced; their figures are not in results/):

- analytic white noise (sum of squared weights through a conv, 1 / (H x W) through a global
  average pool): too low by 20-40 dB for the early layers, because after a few convs the
  noise is spatially correlated and a pool no longer averages it away;
- subtracting each op's own noise (expected rounding and weight error) from its measured
  output noise before taking the ratio: 5e-6, 200x low. The own-noise estimate is an
  expectation; where it comes close to the measured output noise the ratio passed on
  collapses, and over twenty ops the errors compound.

The telescoped ratio gives 5.5e-3, 5x high. Over all 688 layers of 20 model x scheme pairs
(results/noise_gain_check.md) it is 6x high at the median (the middle half 2.8x to 15x) and
orders the layers of a model well: Spearman's rho with the measured gains +0.87 at the
median. A uniform excess does not change a ranking; the spread does.
"""

from __future__ import annotations

import numpy as np

from qv2c.ir.core import Module, Op, Value


def clip_bounds(op: Op) -> tuple[float, float] | None:
    """(lo, hi) of a ReLU or clip: the range in which its input passes through unchanged."""
    if op.name == "qv.relu":
        return 0.0, np.inf
    if op.name == "qv.clip":
        return float(op.attrs.get("min", -np.inf)), float(op.attrs.get("max", np.inf))
    return None


class ChannelStats:
    """Per-channel (axis 1) statistics of fp32 tensors, accumulated batch by batch."""

    def __init__(self) -> None:
        self.total: np.ndarray | float = 0.0
        self.count = 0

    def add(self, per_channel_total: np.ndarray, elements_per_channel: int) -> None:
        self.total = self.total + per_channel_total
        self.count += elements_per_channel

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.total, dtype=np.float64) / max(self.count, 1)


def by_channel(a: np.ndarray) -> np.ndarray:
    """`a` as [channels, everything else] (channels = axis 1)."""
    return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)


class PassFractions:
    """Per channel, the fraction of each ReLU/clip input that lies strictly inside its range
    in the fp32 inference: the share of a noise at that input that passes the activation."""

    def __init__(self, module: Module):
        self.bounds = {id(op.operands[0]): clip_bounds(op) for op in module.ops if clip_bounds(op) is not None}
        self.stats: dict[int, ChannelStats] = {}

    def observe(self, value: Value, array: np.ndarray) -> None:
        if id(value) in self.bounds:
            lo, hi = self.bounds[id(value)]
            inside = by_channel((array > lo) & (array < hi))
            self.stats.setdefault(id(value), ChannelStats()).add(inside.sum(axis=1), inside.shape[1])

    def fraction(self, value: Value, channels: int) -> np.ndarray:
        stats = self.stats.get(id(value))
        return np.ones(channels) if stats is None else stats.mean


def output_noise_gains(module: Module, noise: dict[int, float]) -> dict[int, float]:
    """`gain[id(v)]` for every value on a noisy path to the outputs of `module` (the int8 run).

    `noise[id(v)]` is the measured noise energy of `v` per sample; values missing from it are
    taken as noiseless."""
    gains = {id(v): 1.0 for v in module.outputs}
    for op in reversed(module.ops):
        if len(op.results) != 1 or id(op.result) not in gains:
            continue
        inputs = [v for v in op.operands if not v.is_constant and noise.get(id(v), 0.0) > 0.0]
        received = sum(noise[id(v)] for v in inputs)
        if received <= 0.0:
            continue
        passed = noise.get(id(op.result), 0.0) / received
        for v in inputs:
            gains[id(v)] = gains.get(id(v), 0.0) + passed * gains[id(op.result)]
    return gains
