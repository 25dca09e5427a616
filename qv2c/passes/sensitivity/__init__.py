"""Layer sensitivity analysis: QuantuneV2 and the baselines it is measured against.

`rank_layers(method, ctx)` returns a `Ranking` (layers, most sensitive first, with
every metric and the number of inferences used). Methods are listed in `METHODS`.
"""

from __future__ import annotations

from qv2c.errors import ConfigError
from qv2c.passes.sensitivity.baselines import (
    rank_first_last,
    rank_leave_one_out,
    rank_output_sqnr,
    rank_random,
    rank_weight_sqnr,
)
from qv2c.passes.sensitivity.quantunev2 import rank_quantunev2
from qv2c.passes.sensitivity.ranking import LayerRecord, Ranking, SensitivityContext
from qv2c.passes.sensitivity.referred import rank_referred

METHODS = {
    "quantunev2": lambda ctx: rank_quantunev2(ctx, "local"),
    "quantunev2-global": lambda ctx: rank_quantunev2(ctx, "global"),
    "quantunev2-referred": rank_referred,
    "leave-one-out": rank_leave_one_out,
    "output-sqnr": rank_output_sqnr,
    "weight-sqnr": rank_weight_sqnr,
    "first-last": rank_first_last,
    "random": rank_random,
}


def rank_layers(method: str, ctx: SensitivityContext) -> Ranking:
    if method not in METHODS:
        raise ConfigError(f"unknown sensitivity method {method!r}; choose one of {sorted(METHODS)}")
    return METHODS[method](ctx)


__all__ = ["METHODS", "rank_layers", "Ranking", "LayerRecord", "SensitivityContext"]
