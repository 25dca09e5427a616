"""How well does each two-inference metric predict leave-one-out's ranking? (offline, from accuracy.py's cache)

    python benchmarks/metric_agreement.py

Leave-one-out ranks layers by the network-output SQNR on the calibration images when only that layer
returns to fp32: N + 1 inferences, and the ranking QuantuneV2 tries to approximate with two. This
script reads the rankings accuracy.py cached (every layer's metrics are in them) and, for every model
and scheme, gives the Spearman rank correlation between leave-one-out's score and each candidate:
the combined scores of both QuantuneV2 variants, each of their metrics on its own, output-sqnr and
weight-sqnr, plus how many of leave-one-out's first three layers each candidate's first three hold.
Everything here is calibration-set data: no evaluation image or label is used, so it can guide the
choice of weighting without fitting to the figures accuracy.md reports. Nothing is computed anew.
Writes results/metric_agreement.md.
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

SCHEMES = ("per-channel/float", "per-tensor/float", "per-tensor/power-of-2")

#: candidate -> (cached ranking, record field, sign): sign +1 when a larger value means "keep fp32 first"
CANDIDATES = {
    "quantunev2 (local) score": ("quantunev2", "score", 1),
    "quantunev2-global score": ("quantunev2-global", "score", 1),
    "weight SQNR": ("quantunev2", "weight_sqnr_db", -1),
    "weight MSE": ("quantunev2", "weight_mse", 1),
    "local activation SQNR": ("quantunev2", "act_sqnr_db", -1),
    "local activation MSE": ("quantunev2", "act_mse", 1),
    "local SQNR drop (added noise)": ("quantunev2", "sqnr_drop_db", 1),
    "global activation SQNR": ("quantunev2-global", "act_sqnr_db", -1),
    "global activation MSE": ("quantunev2-global", "act_mse", 1),
    "global SQNR drop": ("quantunev2-global", "sqnr_drop_db", 1),
    "quantunev2-referred score": ("quantunev2-referred", "score", 1),
    "output-referred SQNR (quantunev2-referred)": ("quantunev2-referred", "referred_sqnr_db", -1),
    "output-sqnr (N + 1 inferences)": ("output-sqnr", "score", 1),
}


#: the rankings whose placement of the first and last layer the report shows
END_RANKED = ("leave-one-out", "output-sqnr", "quantunev2", "quantunev2-global", "quantunev2-referred")


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 with ties sharing their mean rank (what Spearman's rho needs)."""
    order = np.argsort(values, kind="stable")
    r = np.empty(len(values))
    r[order] = np.arange(len(values))
    for v in np.unique(values):
        tied = values == v
        r[tied] = r[tied].mean()
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def agreement(cache: dict, model: str, scheme: str) -> dict[str, tuple[float, int]] | None:
    """Candidate -> (Spearman rho with leave-one-out's score, overlap of the first three layers)."""
    loo = cache.get(f"{model}|{scheme}|ranking|leave-one-out")
    if loo is None:
        return None
    names = [r["name"] for r in loo["records"]]
    target = np.array([r["score"] for r in loo["records"]])
    loo_top3 = set(loo["order"][:3])
    out = {}
    for label, (method, field, sign) in CANDIDATES.items():
        ranking = cache.get(f"{model}|{scheme}|ranking|{method}")
        if ranking is None:
            continue
        by_name = {r["name"]: sign * r[field] for r in ranking["records"]}
        values = np.array([by_name[n] for n in names])
        top3 = {names[i] for i in np.argsort(-values, kind="stable")[:3]}
        out[label] = (spearman(values, target), len(top3 & loo_top3))
    return out


def main() -> None:
    cells, layer_count = {}, {}
    for model in ALL_MODELS:
        cache = json.loads((CACHE_DIR / f"{model}.json").read_text())
        for scheme in SCHEMES:
            result = agreement(cache, model, scheme)
            if result:
                cells[(model, scheme)] = result
                layer_count[(model, scheme)] = len(cache[f"{model}|{scheme}|ranking|leave-one-out"]["order"])
    columns = list(cells)
    lines = ["# Which two-inference metric predicts leave-one-out's ranking? (benchmarks/metric_agreement.py)", "",
             "Spearman's rho between each candidate and leave-one-out's score (output SQNR on the calibration "
             "images with only that layer in fp32), over all layers of a model, and in brackets how many of "
             "leave-one-out's first three layers the candidate's first three hold. From accuracy.py's cached "
             f"rankings, calibration data only; {time.strftime('%Y-%m-%d')}.", "",
             "| candidate | " + " | ".join(f"{m} {s}" for m, s in columns) + " | median rho | top-3 hits |",
             "|---|" + "---|" * (len(columns) + 2)]
    for label in CANDIDATES:
        got = [cells[c].get(label) for c in columns]
        rhos = [g[0] for g in got if g is not None and not np.isnan(g[0])]
        hits = sum(g[1] for g in got if g is not None)
        lines.append(f"| {label} | " + " | ".join("-" if g is None else f"{g[0]:+.2f} ({g[1]})" for g in got)
                     + f" | {np.median(rhos):+.2f} | {hits} of {3 * sum(g is not None for g in got)} |")
    chance = sum(9 / layer_count[c] for c in columns)
    lines += ["", f"Two random top-3 lists would share about {chance:.1f} of {3 * len(columns)} layers "
              "(3 x 3 / layers per pair, summed over the pairs)."]
    lines += ["", "Where each method places the network's first and last layer (first-last's first two), as "
              "rank / layers, and below the table on how many pairs it puts at least one of them, and both, "
              "among its first six. first-last's lead over QuantuneV2 in fidelity to fp32 "
              "(method_stability.md) comes from here.", "",
              "| model | scheme | layers | " + " | ".join(f"{m}: first, last" for m in END_RANKED) + " |",
              "|---|---|---|" + "---|" * len(END_RANKED)]
    early = {m: [0, 0, 0] for m in END_RANKED}  # pairs with one / both ends in the first six, pairs
    for model in ALL_MODELS:
        cache = json.loads((CACHE_DIR / f"{model}.json").read_text())
        for scheme in SCHEMES:
            orders = {m: cache.get(f"{model}|{scheme}|ranking|{m}", {}).get("order") for m in (*END_RANKED, "first-last")}
            if orders["first-last"] is None:
                continue
            ends = orders["first-last"][:2]
            for m in END_RANKED:
                if orders[m] is not None:
                    places = [orders[m].index(n) + 1 for n in ends]
                    early[m][0] += min(places) <= 6
                    early[m][1] += max(places) <= 6
                    early[m][2] += 1
            lines.append(f"| {model} | {scheme} | {len(orders['first-last'])} | " + " | ".join(
                "-" if orders[m] is None else ", ".join(str(orders[m].index(n) + 1) for n in ends) for m in END_RANKED)
                + " |")
    lines += ["", "First or last layer among the first six: " + "; ".join(
        f"{m} at least one on {one} of {n} pairs, both on {both}" for m, (one, both, n) in early.items()) + "."]
    text = "\n".join(lines) + "\n"
    (RESULTS / "metric_agreement.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
