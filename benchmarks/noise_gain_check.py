"""How right are quantunev2-referred's noise gains? Checked against output-sqnr's single-layer runs (offline).

    python benchmarks/noise_gain_check.py

quantunev2-referred estimates, from the all-int8 inference, the gain from each layer's output to
the network output: output noise energy per unit of noise energy at that layer (noise_gain.py).
output-sqnr measured the real thing layer by layer (N + 1 inferences): the output SQNR when only
that layer runs int8. Its output noise divided by the noise that layer's int8 version puts on its
own output (the local variant's activation MSE, times the elements of one sample's output) is the
layer's measured gain. This script compares the two for every layer of every model and scheme
whose rankings accuracy.py cached, all on calibration images, nothing computed anew. The output
signal energy comes from the referred ranking itself (referred SQNR = signal / (removable x gain)).
Writes results/noise_gain_check.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from accuracy import ALL_MODELS, CACHE_DIR  # noqa: E402 (benchmarks/ is a folder of scripts, not a package)
from common import RESULTS  # noqa: E402
from metric_agreement import SCHEMES, spearman  # noqa: E402

from qv2c.api import load_canonical  # noqa: E402
from qv2c.datasets import model_path  # noqa: E402
from qv2c.errors import QV2CError  # noqa: E402
from qv2c.passes.layers import layer_name, quantizable_layers  # noqa: E402


def output_elements(model: str) -> dict[str, int]:
    """Elements of one sample's output of every layer."""
    module = load_canonical(str(model_path(model)), 1)
    return {layer_name(op): int(np.prod(op.result.type.shape[1:])) for op in quantizable_layers(module)}


def gains(cache: dict, model: str, scheme: str, elements: dict[str, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(estimated, measured) gain of every layer, in the same order."""
    rankings = {m: cache.get(f"{model}|{scheme}|ranking|{m}") for m in ("quantunev2-referred", "output-sqnr", "quantunev2")}
    if any(r is None for r in rankings.values()):
        return None
    referred = {r["name"]: r for r in rankings["quantunev2-referred"]["records"]}
    only = {r["name"]: r["output_sqnr_db_only_layer"] for r in rankings["output-sqnr"]["records"]}
    local = {r["name"]: r["act_mse"] for r in rankings["quantunev2"]["records"]}
    any_layer = next(iter(referred.values()))  # every layer gives the same signal energy
    signal = any_layer["removable_noise"] * any_layer["output_gain"] * 10 ** (any_layer["referred_sqnr_db"] / 10)
    names = [n for n in referred if local[n] > 0]
    estimated = np.array([referred[n]["output_gain"] for n in names])
    measured = np.array([signal * 10 ** (-only[n] / 10) / (local[n] * elements[n]) for n in names])
    return estimated, measured


def main() -> None:
    lines = ["# Are quantunev2-referred's noise gains right? (benchmarks/noise_gain_check.py)", "",
             "Per model and scheme, over its layers: log10 of estimated / measured gain (median and the range "
             "of the middle half; +1 = ten times too high), and Spearman's rho between the two (does the "
             f"estimate at least order the layers right?). Calibration images only; {time.strftime('%Y-%m-%d')}.", "",
             "| model | scheme | layers | median log10(est / measured) | middle half | rho |", "|---|---|---|---|---|---|"]
    all_ratios, rhos = [], []
    for model in ALL_MODELS:
        cache = json.loads((CACHE_DIR / f"{model}.json").read_text())
        elements = output_elements(model)
        for scheme in SCHEMES:
            got = gains(cache, model, scheme, elements)
            if got is None:
                continue
            ratio = np.log10(got[0] / got[1])
            rho = spearman(got[0], got[1])
            all_ratios.append(ratio)
            rhos.append(rho)
            q1, q2, q3 = np.percentile(ratio, [25, 50, 75])
            lines.append(f"| {model} | {scheme} | {len(ratio)} | {q2:+.2f} | {q1:+.2f} .. {q3:+.2f} | {rho:+.2f} |")
    pooled = np.concatenate(all_ratios)
    lines += ["", f"All {len(pooled)} layers of {len(rhos)} model x scheme pairs: median log10 ratio "
              f"{np.median(pooled):+.2f}, middle half {np.percentile(pooled, 25):+.2f} .. "
              f"{np.percentile(pooled, 75):+.2f}; median rho {np.median(rhos):+.2f}."]
    text = "\n".join(lines) + "\n"
    (RESULTS / "noise_gain_check.md").write_text(text)
    print(text)


if __name__ == "__main__":
    try:
        main()
    except QV2CError as e:  # no data root, a model file missing: one line, not a traceback
        sys.exit(f"noise_gain_check.py: {e}")
