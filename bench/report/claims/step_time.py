"""The design target on time: a reversible step against a residual one at the same depth."""

from __future__ import annotations

import pandas as pd

from bench import paper
from bench.report.aggregate import depth_means
from bench.report.claims.base import NOT_SUPPORTED, Claim, per_slice, series_pairs, split_series
from bench.report.claims.rules import TIME_RATIO
from bench.report.fmt import fmt_num
from bench.report.select import FIGURE_BY_KEY, ablation_rows
from bench.stats import SUPPORTED


def time_claims(df: pd.DataFrame) -> list[Claim]:
    """Step time of rev relative to res at the same depth (depth ablation)."""
    rows, _ = ablation_rows(df, FIGURE_BY_KEY["fig7"])
    out = []
    for slice_, panel in per_slice(rows):
        for rev, res in series_pairs(split_series(panel), "rev", "res"):
            a, b = depth_means(rev.rows, "step_time_s"), depth_means(res.rows, "step_time_s")
            common = sorted(set(a.index) & set(b.index))
            if not common:
                continue
            ratios = pd.Series([a[d] / b[d] for d in common], index=common)
            evidence = "rev/res step time: " + ", ".join(
                f"L={fmt_num(d)} {r:.3g}×" for d, r in ratios.items()
            )
            median = float(ratios.median())
            evidence += f"; median {median:.3g}× (target {paper.REV_STEP_TIME_TARGET:.3g}×)"
            verdict = SUPPORTED if median <= TIME_RATIO else NOT_SUPPORTED
            out.append(
                Claim("rev-time", "fig7", slice_, f"{rev.label} vs {res.label}", evidence, verdict)
            )
    return out
