"""The ground-truth task's own check: does ``synthetic-depth`` really need its k hops?

depth-buys-accuracy reads "res short of k hops scores at chance, an arch at k learns it" as the
mechanism; that holds only if the task needs k hops and k hops suffice. The accuracy spec's
``criteria`` profile runs res with k - 1 and k layers, without a budget, to test exactly that
(and the ``cpu`` profile's res rows test it too). Per slice with a known k:

* *needed*: every res configuration with fewer than k hops scores at chance: no 95% interval of
  its test ROC-AUC lies wholly above 0.5 + :data:`~.accuracy.CHANCE_BAND` (else the task leaks:
  *not supported*);
* *sufficient*: the res configuration at k hops with the best mean validation score beats its
  own k - 1 by the interval of the paired difference (against 0); where it does not, res did not
  learn the task in this recipe (*inconclusive*: the task cannot serve as ground truth here).
"""

from __future__ import annotations

import pandas as pd

from bench.report.claims.accuracy import CHANCE_BAND, FIGURE, needed_depth, with_hops
from bench.report.claims.base import NOT_SUPPORTED, Finding, score_difference, split_series
from bench.report.claims.registry import NO_PAPER, SANITY_CHECK, Claim
from bench.report.select import FIGURE_BY_KEY, ablation_rows
from bench.stats import SCORE_BOUNDS, SUPPORTED, judge, summarize

KEY = "task-needs-k"


def ground_truth_claims(df: pd.DataFrame) -> list[Finding]:
    """One case per ground-truth slice whose res rows have k - 1 and k hops."""
    rows, _ = ablation_rows(df, FIGURE_BY_KEY[FIGURE])
    if rows.empty:
        return []
    rows = with_hops(rows)
    res = rows[(rows["arch"] == "res") & (rows["status"] == "ok") & (rows["metric"] == "rocauc")]
    out = []
    for slice_, panel in res.groupby("slice", sort=True):
        k = needed_depth(panel)
        if k is None or not {k - 1, k} <= set(panel["hops"].dropna().astype(int)):
            continue
        out.append(_case(str(slice_), panel, k))
    return out


def _case(slice_: str, panel: pd.DataFrame, k: int) -> Finding:
    case = f"res below and at the task's {k} hops"
    series_all = split_series(panel)
    leaks = []
    for series in series_all:
        for hops, trials in series.rows[series.rows["hops"] < k].groupby("hops"):
            interval = summarize(trials["score"], bounds=SCORE_BOUNDS)
            if interval.lo > 0.5 + CHANCE_BAND:
                leaks.append(f"{series.label} at {hops:g} hops {interval.text()}")
    if leaks:
        return Finding(KEY, FIGURE, slice_, case, "above chance short of k: " + "; ".join(leaks),
                       NOT_SUPPORTED)  # fmt: skip
    families = [s for s in series_all if {k - 1, k} <= set(s.rows["hops"].astype(int))]
    best = max(families, key=lambda s: float(s.rows.loc[s.rows["hops"] == k, "best_valid"].mean()))
    at, below = (best.rows[best.rows["hops"] == h] for h in (k, k - 1))
    diff = score_difference(at, below)
    verdict = judge(diff, margin=0.0)
    evidence = (f"every res short of {k} hops at chance (no interval above "
                f"{0.5 + CHANCE_BAND:g}); {best.label}, the best at {k} hops by validation: "
                f"{summarize(at['score'], bounds=SCORE_BOUNDS).text()} against "
                f"{summarize(below['score'], bounds=SCORE_BOUNDS).text()} at {k - 1}, "
                f"difference {diff.text()}: {verdict}")  # fmt: skip
    if verdict != SUPPORTED:
        evidence += f": res did not learn the {k}-hop rule in this recipe"
    return Finding(KEY, FIGURE, slice_, case, evidence, verdict)


TASK_NEEDS_K = Claim(
    key=KEY,
    statement="The ground-truth task needs its k hops: ResGNN short of k hops scores at chance, "
    "and ResGNN with k layers learns it. depth-buys-accuracy's mechanism cases rest on this.",
    short="the ground-truth task needs k hops, and k suffice",
    paper=NO_PAPER,
    figure=FIGURE,
    threshold=f"res short of k hops: no 95% interval of test ROC-AUC above "
    f"{0.5 + CHANCE_BAND:g}; res at k hops (the best configuration by validation) minus the "
    "same configuration at k - 1: the interval of the paired difference above 0",
    threshold_source=f"the task's construction (the marker lies k hops from the root, so fewer "
    f"hops can only guess: ROC-AUC 0.5, read with the accuracy claims' chance band "
    f"±{CHANCE_BAND:g}); k hops suffice if they buy any gain the interval can show",
    judge=ground_truth_claims,
    kind=SANITY_CHECK,
)
