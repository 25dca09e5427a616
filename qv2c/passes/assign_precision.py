"""Precision assignment: which layers run int8, given a sensitivity ranking.

Four ways to ask, checked up front so a typo never passes silently:
- `precision="int8"`: every layer int8 except `keep_fp32`;
- `fp32_layers=k`: the k most sensitive layers not in `keep_fp32`/`force_int8`, plus
  `keep_fp32`, stay fp32 (k + len(keep_fp32) fp32 layers in all);
- `max_accuracy_drop=d` with a validation set: the fewest most-sensitive layers
  that keep top-1 within d points of fp32 (k = 0, 1, 2, ... tried in order);
- `keep_fp32=[...]` / `force_int8=[...]`: explicit lists that override the ranking.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qv2c.errors import ConfigError

DEFAULT_FP32_LAYERS = 1


@dataclass(frozen=True)
class PrecisionRequest:
    precision: str
    fp32_layers: int | None
    max_accuracy_drop: float | None
    keep_fp32: tuple[str, ...]
    force_int8: tuple[str, ...]

    @property
    def needs_ranking(self) -> bool:
        return self.precision == "mixed"

    def check(self, layers: list[str], validation) -> None:
        """Raise ConfigError for any request that cannot be honoured exactly."""
        known = set(layers)
        for option, names in (("keep_fp32", self.keep_fp32), ("force_int8", self.force_int8)):
            if isinstance(names, str):
                raise ConfigError(f"{option} must be a list of layer names, not the string {names!r}")
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ConfigError(f"{option} names unknown layer(s) {unknown}; layers are e.g. {layers[:5]} "
                                  f"({len(layers)} in all, see CompiledModel.precision)")
        both = sorted(set(self.keep_fp32) & set(self.force_int8))
        if both:
            raise ConfigError(f"layer(s) {both} are in both keep_fp32 and force_int8")
        if self.precision != "mixed" and (self.fp32_layers is not None or self.max_accuracy_drop is not None):
            raise ConfigError(f"fp32_layers/max_accuracy_drop only apply to precision='mixed', not {self.precision!r}")
        if self.fp32_layers is not None and self.max_accuracy_drop is not None:
            raise ConfigError("give either fp32_layers or max_accuracy_drop, not both")
        if self.fp32_layers is not None:
            if not isinstance(self.fp32_layers, (int, np.integer)) or isinstance(self.fp32_layers, bool) or self.fp32_layers < 0:
                raise ConfigError(f"fp32_layers must be a non-negative int, not {self.fp32_layers!r}")
            free = len(known - set(self.keep_fp32) - set(self.force_int8))
            if self.fp32_layers > free:
                raise ConfigError(f"fp32_layers={self.fp32_layers} but the model has only {len(layers)} quantizable "
                                  f"layers, {free} of them not pinned by keep_fp32/force_int8")
        if self.max_accuracy_drop is not None:
            if validation is None:
                raise ConfigError("max_accuracy_drop needs validation=(inputs, labels) to measure top-1 on")
            if not self.max_accuracy_drop >= 0:
                raise ConfigError(f"max_accuracy_drop must be >= 0 points, not {self.max_accuracy_drop!r}")


def assign_precision(request: PrecisionRequest, layers: list[str], ranking, build: Callable, fp32_model=None,
                     score: Callable | None = None) -> set[str]:
    """The set of layer names that run int8.

    With `max_accuracy_drop`, `score(model)` is the accuracy (in points) a built model reaches on the
    caller's validation set (the API measures top-1 there); `fp32_model` is scored once as the bar.
    The pass knows nothing of data sets: the scoring function is handed in.
    """
    keep, force = set(request.keep_fp32), set(request.force_int8)
    if request.precision == "int8":
        return set(layers) - keep
    # the k ranked picks come from the layers not already pinned, so fp32_layers=k keeps exactly
    # k layers in fp32 besides keep_fp32 (a pinned layer ranked high would otherwise use up a pick)
    order = [n for n in ranking.top(len(layers)) if n not in force and n not in keep]

    def int8_with(k: int) -> set[str]:
        return set(layers) - keep - set(order[:k])

    if request.max_accuracy_drop is None:
        k = DEFAULT_FP32_LAYERS if request.fp32_layers is None else request.fp32_layers
        return int8_with(k)
    target = score(fp32_model) - request.max_accuracy_drop
    for k in range(len(order) + 1):
        candidate = int8_with(k)
        if score(build(candidate)) >= target:
            return candidate
    return int8_with(len(order))
