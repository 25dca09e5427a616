"""The claims the accuracy experiment must show, checked against its own measured rows.

Every line names the claim, the figures it was judged on and PASS or FAIL; nothing is
asserted that the rows do not contain.  Used by `accuracy.py` to end its report.
"""

from __future__ import annotations

WEAK_BASELINES = ("random", "first-last", "weight-sqnr")
VARIANTS = ("quantunev2", "quantunev2-global", "quantunev2-referred")
#: top-1s are image counts over n in percent, so a gap of exactly 1 point (12 of 1200 images) comes
#: out as 1.0000000000000142 or 0.9999999999999858 depending on the counts; gaps are compared with
#: this slack, a billionth of a point (one image is at least 0.01 points here)
EPS = 1e-9


def within(top1: float, reference: float, points: float) -> bool:
    """`top1` is at most `points` below `reference` (exactly `points` counts as within)."""
    return reference - top1 <= points + EPS


def _by_k(method: dict) -> dict[int, float]:
    return {int(k): v for k, v in method["top1_by_k"].items()}


def _mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _k_text(k) -> str:
    return "none up to the search limit" if k is None else str(k)


def _fewer(a, b) -> bool:
    """a needs fewer fp32 layers than b (None = not reached)."""
    return a is not None and (b is None or a < b)


def must_show(rows: list[dict]) -> list[str]:
    lines = ["\n## What the experiment must show, checked on the rows above\n"]
    for row in rows:
        fp32 = row["fp32_top1"]
        for scheme, e in row["schemes"].items():
            where = f"{row['model']} {scheme}"
            int8, ort = e["int8_top1"], e.get("onnxruntime_int8_top1")
            if scheme.startswith("per-channel"):
                lines.append(f"- {_mark(within(int8, fp32, 1.0))} {where}: full int8 within 1 point of fp32 "
                             f"({int8:.2f} vs {fp32:.2f}).")
            if ort is not None:
                lines.append(f"- {_mark(within(int8, ort, 0.0))} {where}: full int8 no worse than onnxruntime ({int8:.2f} vs "
                             f"{ort:.2f}).")
            lines += _method_checks(where, e["methods"], fp32 - int8, e.get("paired", {}))
            if row["model"] == "mobilenetv2" and scheme.startswith("per-tensor"):
                lines += _smallest_k_checks(where, e["methods"])
    lines += _linearity(rows)
    lines += _significance_summary(rows)
    lines += _bar_for_every_ranking(rows)
    return lines


def _bar_for_every_ranking(rows: list[dict]) -> list[str]:
    """The "no worse than random, first-last and weight-sqnr at every k" check applied to every
    ranking in the rows, leave-one-out's included: how attainable the bar is at all when the
    top-1 gaps it judges are a few images."""
    lines = []
    for method in sorted({m for row in rows for e in row["schemes"].values() for m in e["methods"]} - set(WEAK_BASELINES)):
        passing = pairs = ahead = cells = 0
        for row in rows:
            for e in row["schemes"].values():
                if method not in e["methods"]:
                    continue
                qk = _by_k(e["methods"][method])
                beaten = [not within(qk[k], _by_k(e["methods"][b])[k], 0.0) for b in WEAK_BASELINES
                          if b in e["methods"] for k in qk if k in _by_k(e["methods"][b])]
                pairs += 1
                passing += not any(beaten)
                ahead += sum(beaten)
                cells += len(beaten)
        lines.append(f"- INFO the bar \"no worse than {', '.join(WEAK_BASELINES)} at every k\" applied to {method}: met on "
                     f"{passing} of {pairs} model x scheme pairs; a weak baseline is ahead in {ahead} of {cells} cells.")
    return lines


def _significance_summary(rows: list[dict]) -> list[str]:
    """All paired QuantuneV2-vs-weak-baseline comparisons of the report, counted: how many put the
    variant behind or ahead at p < 0.05, against how many chance alone would."""
    lines = []
    for variant in VARIANTS:
        pairs = [pair for row in rows for e in row["schemes"].values() for key, pair in e.get("paired", {}).items()
                 if key.split("|")[0] == variant and key.split("|")[1] in WEAK_BASELINES]
        if not pairs:
            continue
        behind = sum(1 for pair in pairs if pair["b_only"] > pair["a_only"] and pair["p"] < 0.05)
        ahead = sum(1 for pair in pairs if pair["a_only"] > pair["b_only"] and pair["p"] < 0.05)
        smallest = min(pair["p"] for pair in pairs)
        lines.append(f"- INFO all models and schemes with per-image results: {variant} vs {', '.join(WEAK_BASELINES)} "
                     f"at every k, {len(pairs)} paired comparisons: behind at p < 0.05 in {behind}, ahead in {ahead}; "
                     f"chance alone gives about {0.05 * len(pairs):.1f} in all; smallest p {smallest:.3f} "
                     f"(Bonferroni threshold for {len(pairs)} comparisons: {0.05 / len(pairs):.5f}).")
    return lines


def _split(paired: dict, variant: str, other: str, k: int) -> str:
    """' (images only variant / only other right, McNemar p)' where per-image results exist."""
    pair = paired.get(f"{variant}|{other}|{k}")
    return "" if pair is None else f" ({pair['a_only']}/{pair['b_only']} images, p {pair['p']:.2f})"


def _significance(where: str, variant: str, paired: dict, others: tuple[str, ...]) -> list[str]:
    """An informational line (not a PASS/FAIL): the k at which `variant` is behind one of `others`
    by more than chance (McNemar p < 0.05 on the images where they differ). Only where per-image
    results were recorded."""
    pairs = {key: pair for key, pair in paired.items() if key.split("|")[0] == variant and key.split("|")[1] in others}
    if not pairs:
        return []
    behind = [f"k={key.split('|')[2]} {key.split('|')[1]} ({pair['a_only']}/{pair['b_only']} images, p {pair['p']:.3f})"
              for key, pair in pairs.items() if pair["b_only"] > pair["a_only"] and pair["p"] < 0.05]
    ahead = sum(1 for pair in pairs.values() if pair["a_only"] > pair["b_only"] and pair["p"] < 0.05)
    return [f"- INFO {where}: {variant} vs {', '.join(others)}, paired over the same images: significantly behind "
            f"(p < 0.05) in {len(behind)} of {len(pairs)} comparisons" + (f" ({'; '.join(behind)})" if behind else "")
            + f", significantly ahead in {ahead} (by chance alone about {0.05 * len(pairs):.1f} of {len(pairs)} "
            "would fall below p = 0.05 either way)."]


def _method_checks(where: str, methods: dict, int8_drop: float, paired: dict) -> list[str]:
    lines = []
    loo = methods.get("leave-one-out")
    for variant in VARIANTS:
        q = methods.get(variant)
        if q is None:
            continue
        qk = _by_k(q)
        worse = [f"k={k} {b} {_by_k(methods[b])[k]:.2f} > {qk[k]:.2f}{_split(paired, variant, b, k)}"
                 for b in WEAK_BASELINES if b in methods for k in qk
                 if k in _by_k(methods[b]) and not within(qk[k], _by_k(methods[b])[k], 0.0)]
        lines.append(f"- {_mark(not worse)} {where}: {variant} no worse than {', '.join(WEAK_BASELINES)} at every k"
                     + (f" (worse: {'; '.join(worse)})" if worse else "") + ".")
        lines += _significance(where, variant, paired, tuple(b for b in WEAK_BASELINES if b in methods))
        if loo is not None and int8_drop < 2.0:
            gaps = {k: _by_k(loo)[k] - qk[k] for k in qk if k in _by_k(loo)}
            bad = {k: g for k, g in gaps.items() if g > 0.3 + EPS}
            worst = max(gaps, key=gaps.get, default=None)
            lines.append(f"- {_mark(not bad)} {where} (int8 drop {int8_drop:.2f} < 2): {variant} within 0.3 of "
                         f"leave-one-out at every k (largest shortfall {max(gaps.values(), default=0.0):.2f}"
                         + (f" at k={worst}{_split(paired, variant, 'leave-one-out', worst)}" if worst is not None
                            else "") + ").")
        if loo is not None:
            speedup = loo["seconds"] / q["seconds"]
            lines.append(f"- {_mark(speedup >= 5 and q['inferences'] == 2)} {where}: {variant} list {speedup:.1f}x "
                         f"faster than leave-one-out ({q['seconds']:.1f} s vs {loo['seconds']:.1f} s), "
                         f"{q['inferences']} inferences vs {loo['inferences']}.")
    return lines


def _smallest_k_checks(where: str, methods: dict) -> list[str]:
    lines = []
    loo_k = methods["leave-one-out"]["smallest_k_within_1pt"] if "leave-one-out" in methods else None
    for variant in VARIANTS:
        if variant not in methods:
            continue
        k = methods[variant]["smallest_k_within_1pt"]
        near_loo = k is not None and (loo_k is None or k <= loo_k + 1)
        others = {b: methods[b]["smallest_k_within_1pt"] for b in WEAK_BASELINES if b in methods}
        beats = all(_fewer(k, kb) for kb in others.values())
        lines.append(f"- {_mark(near_loo and beats)} {where}: {variant} reaches 1 point of fp32 with k = {_k_text(k)}; "
                     f"leave-one-out k = {_k_text(loo_k)}; " + ", ".join(f"{b} k = {_k_text(v)}" for b, v in
                                                                      others.items()) + ".")
    return lines


def _linearity(rows: list[dict]) -> list[str]:
    """Seconds per layer of the QuantuneV2 list across the CIFAR-10 models (per-channel scheme)."""
    lines = []
    for variant in VARIANTS:
        per_layer = []
        for row in rows:
            e = row["schemes"].get("per-channel/float", {})
            q = e.get("methods", {}).get(variant)
            if row["model"].startswith("cifar10") and q is not None:
                per_layer.append(f"{row['model']} {q['seconds']:.1f} s / {row['layers']} layers = "
                                 f"{q['seconds'] / row['layers']:.2f} s")
        if per_layer:
            lines.append(f"- {variant} list time per layer (CIFAR-10, per-channel, analysis batch 20 over 100 images): "
                         + "; ".join(per_layer) + ".")
    return lines
