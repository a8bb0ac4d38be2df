"""The accuracy ablation in the report: the paper's thesis that depth buys accuracy which,
within one memory budget, only the memory-efficient archs can afford.

Depth is counted in message-passing hops: each trial's receptive field (the record's
``receptive_hops``, from :func:`bench.trial.hops.receptive_hops` of its config:
ResGNN L, RevGNN and WT-RevGNN G x L, DEQ-GNN 2 n - 1 at its iteration cap n). Two kinds of
case, never pooled (each measurement slice is one dataset):

* **the mechanism**, on a ground-truth task whose needed hops k are a fact of the data
  (``synthetic-depth``'s ``depth``; the record's ``needed_hops``): does res fall short of k
  hops under the budget while the arch reaches k, and does reaching k buy the score?
* **does it pay on these graphs**, on real graphs (no known k): does the depth res cannot
  afford buy a score there?

Per slice and configuration family, ``depth-buys-accuracy`` asks of each memory-efficient arch
(rev, wt-rev, deq) against res:

1. *memory*: res runs out of the budget at some depth and the arch reaches more hops than res
   does (on the ground-truth task: res falls short of k and the arch reaches k; where res
   reaches k the budget cannot test the thesis: not enough data);
2. *score*: the arch at its best depth beyond res's reach scores higher on test than the best
   res that fits, both depths chosen by mean validation score (so test scores never pick the
   winner), judged by the 95% t-interval of the difference over seeds (``bench.stats``).

Slices without any memory budget (the ``criteria`` and ``limits`` profiles: the task's ground
truth and each arch's trainability limit) test no budget, so they are no case of the claim;
the figure draws them (score against the hops k the task needs).

Where an arch gets there but does not collect the score, the evidence says what the trials
show: its score at chance (it did not learn the k-hop rule), a DEQ solver that stopped above
its tolerance (not converged) or after fewer iterations than k hops need. The figure draws the test score (mean and 95%
t-interval over seeds) against the receptive field in hops per arch, one panel per slice,
with each arch's OOM boundary and the needed hops marked. The claim is declared at the end of
the module (``DEPTH_BUYS_ACCURACY``)."""

from __future__ import annotations

import math

import pandas as pd

from bench import paper
from bench.models import archs
from bench.report.claims.base import (
    NOT_SUPPORTED,
    Finding,
    Series,
    score_difference,
    series_pairs,
    split_series,
)
from bench.report.claims.registry import Claim
from bench.report.fmt import fmt_num
from bench.report.select import FIGURE_BY_KEY, ablation_rows
from bench.stats import NO_DATA, SUPPORTED, judge, summarize
from bench.trial.hops import deq_hops
from bench.units import format_bytes

KEY = "depth-buys-accuracy"
FIGURE = "fig10"
ACCURACY_MARGIN = 0.0  # "scores higher": the interval of the difference lies above 0
CHANCE_BAND = 0.05  # a mean test ROC-AUC within 0.5 +- this is read as chance


def with_hops(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with ``hops`` (receptive field) and ``needed`` (the task's hops, NaN when not a
    fact): the record's ``receptive_hops`` and ``needed_hops``, as exported."""
    rows = rows.copy()
    rows["hops"] = pd.to_numeric(rows["receptive_hops"], errors="coerce")
    rows["needed"] = pd.to_numeric(rows["needed_hops"], errors="coerce")
    return rows


def needed_depth(rows: pd.DataFrame) -> int | None:
    """The task's needed hops k, if the rows share one (a ground-truth task)."""
    found = set(with_hops(rows)["needed"].dropna().astype(int))
    return found.pop() if len(found) == 1 else None


def _ok(series: Series) -> pd.DataFrame:
    return series.rows[series.rows["status"] == "ok"]


def _reach(series: Series) -> tuple[float, float]:
    """Most hops with an ok trial, and the fewest hops with an OOM (NaN when none)."""
    ok = _ok(series)["hops"]
    oom = series.rows.loc[series.rows["status"] == "oom", "hops"]
    return (float(ok.max()) if len(ok) else math.nan, float(oom.min()) if len(oom) else math.nan)


def _best_by_valid(series: Series, hops: list[float]) -> float:
    """The hops among ``hops`` with the highest mean validation score (ties: fewer hops)."""
    ok = _ok(series)
    means = ok[ok["hops"].isin(hops)].groupby("hops")["best_valid"].mean().dropna()
    if means.empty:  # no validation score recorded: fall back to the most hops
        return max(hops)
    return float(means[means == means.max()].index.min())


def _at(series: Series, hops: float) -> pd.DataFrame:
    return series.rows[series.rows["hops"] == hops]


def _layers_text(series: Series, hops: float) -> str:
    """'8 hops (4 layers)': hops with the depth axis the spec set (DEQ: iterations)."""
    depth = _at(series, hops)["depth"].dropna()
    if not len(depth):
        return f"{fmt_num(hops)} hops"
    unit = archs.get(series.arch).depth_unit
    plural = "" if float(depth.iloc[0]) == 1 else "s"
    return f"{fmt_num(hops)} hops ({fmt_num(depth.iloc[0])} {unit}{plural})"


def budget_text(rows: pd.DataFrame) -> str:
    caps = rows["memory_cap_bytes"].dropna().unique()
    return f"a {format_bytes(int(caps[0]))} budget" if len(caps) == 1 else "no single memory cap"


def accuracy_claims(df: pd.DataFrame) -> list[Finding]:
    """``depth-buys-accuracy`` for every memory-efficient arch paired with res, per slice."""
    rows, _ = ablation_rows(df, FIGURE_BY_KEY[FIGURE])
    if rows.empty:
        return []
    rows = with_hops(rows)
    out = []
    for slice_, panel in rows.groupby("slice", sort=True):
        if panel["memory_cap_bytes"].isna().all():  # no budget (criteria, limits): figure only
            continue
        series = split_series(panel)
        for arch in archs.names(flat_memory=True):
            out += [
                _claim(str(slice_), deep, res) for deep, res in series_pairs(series, arch, "res")
            ]
    return out


def _claim(slice_: str, deep: Series, res: Series) -> Finding:
    """Did ``deep`` reach more hops than res under the cap (the needed k, on a ground-truth
    task), and score higher there?"""
    both = pd.concat([deep.rows, res.rows])
    k = needed_depth(both)
    kind = f"the mechanism: a ground-truth task needing {k} hops" if k else (
        "does it pay: a real graph, needed hops unknown")  # fmt: skip
    case = f"{deep.label} vs {res.label} ({kind})"

    def claim(evidence: str, verdict: str) -> Finding:
        return Finding(KEY, FIGURE, slice_, case, evidence, verdict)

    res_reach, res_oom = _reach(res)
    deep_reach, _ = _reach(deep)
    budget = budget_text(both)
    if math.isnan(res_reach) or math.isnan(deep_reach):
        return claim(f"no ok {'res' if math.isnan(res_reach) else deep.arch} trial", NO_DATA)
    if math.isnan(res_oom):
        return claim(f"res fit every depth tried (up to {_layers_text(res, res_reach)}) under "
                     f"{budget}: the cap never bound, so no depth was {deep.arch}'s alone",
                     NO_DATA)  # fmt: skip
    memory = (f"under {budget}: res reaches {_layers_text(res, res_reach)} (OOM from "
              f"{fmt_num(res_oom)} hops), {deep.arch} {_layers_text(deep, deep_reach)}")  # fmt: skip
    if k is not None:
        memory += f"; the task needs {k}"
        if res_reach >= k:
            return claim(memory + ": the budget lets res reach the needed hops, so it cannot "
                         "test the thesis", NO_DATA)  # fmt: skip
        if deep_reach < k:
            return claim(memory + f": {deep.arch} cannot reach the needed hops within the budget",
                         NOT_SUPPORTED)  # fmt: skip
    beyond = sorted(float(h) for h in _ok(deep)["hops"].unique() if h > res_reach)
    if not beyond:
        return claim(memory + f": {deep.arch} got no farther", NOT_SUPPORTED)
    h_deep = _best_by_valid(deep, beyond)
    h_res = _best_by_valid(res, sorted(float(h) for h in _ok(res)["hops"].unique()))
    a, b = _at(deep, h_deep), _at(res, h_res)
    diff = score_difference(a, b)
    verdict = judge(diff, margin=ACCURACY_MARGIN)
    sa, sb = (summarize(a.loc[a["status"] == "ok", "score"]),
              summarize(b.loc[b["status"] == "ok", "score"]))  # fmt: skip
    evidence = (f"{memory}; test score {deep.arch} at {_layers_text(deep, h_deep)} (its best "
                f"beyond res's reach, by validation) {sa.text()} vs the best res that fits, "
                f"{_layers_text(res, h_res)} (by validation), {sb.text()}; difference "
                f"{diff.text()}: {verdict}")  # fmt: skip
    if verdict != SUPPORTED and verdict != NO_DATA:
        evidence += "".join(f"; {why}" for why in _why_not(deep, a, sa.mean, k))
    return claim(evidence, verdict)


def _why_not(deep: Series, at: pd.DataFrame, mean: float, k: int | None) -> list[str]:
    """What the trials say about an arch that got deep enough but did not collect the score."""
    reasons = []
    ok = at[at["status"] == "ok"]
    if ok["metric"].eq("rocauc").all() and abs(mean - 0.5) <= CHANCE_BAND:
        reasons.append(f"{deep.arch} scores at chance there: it did not learn the rule its "
                       "receptive field reaches")  # fmt: skip
    if archs.get(deep.arch).family == "equilibrium" and len(ok):
        tol = pd.to_numeric(ok["deq_tol"], errors="coerce").fillna(1e-4)
        residual = pd.to_numeric(ok.get("solver_fwd_rel_residual_max"), errors="coerce")
        stuck = int((residual > tol).sum())
        if stuck:
            reasons.append(f"its forward solver ended above tolerance in {stuck} of {len(ok)} "
                           f"trials (worst relative residual {residual.max():.2g}): not "
                           "converged")  # fmt: skip
        iters = pd.to_numeric(ok.get("solver_fwd_iters_mean"), errors="coerce").mean()
        if k is not None and iters == iters and deq_hops(iters) < k:
            reasons.append(f"its solver stopped after {iters:.1f} iterations on average (about "
                           f"{deq_hops(iters)} hops, fewer than the {k} needed): converged "
                           "before the marker's signal arrived")  # fmt: skip
    return reasons


# --- the claim ----------------------------------------------------------------------------

_DEEP, _WIDE, _RES = (paper.point(k) for k in ("RevGNN-Deep", "RevGNN-Wide", "ResGNN-64"))

DEPTH_BUYS_ACCURACY = Claim(
    key=KEY,
    statement="Depth buys accuracy that, within one memory budget, only the memory-efficient "
    "models can afford: ResGNN runs out of the budget before the depth the task needs, while "
    "RevGNN (and WT-RevGNN, DEQ-GNN) get there and score higher than the best ResGNN that fits "
    "(the paper's thesis; figure 1, RevGNN-Deep and -Wide).",
    short="depth buys accuracy within a budget",
    paper=f"{_DEEP.label} {_DEEP.test_score}, {_WIDE.label} {_WIDE.test_score} ROC-AUC against "
    f"{_RES.label}'s {_RES.test_score}",
    figure=FIGURE,
    threshold="accuracy ablation, per arch in rev / wt-rev / deq against res under the spec's "
    "memory cap, depth counted in message-passing hops (receptive field: res L, rev and wt-rev "
    "G x L, deq 2n - 1): res OOMs at some depth and the arch reaches more hops than res (on a "
    "ground-truth task: res short of the k hops the task needs and the arch at k or more, else "
    "not supported; no res OOM, or res reaching k: not enough data); then the 95% t-interval "
    "of the test-score difference, the arch at its best depth beyond res's reach minus the "
    "best res that fits (both depths chosen by mean validation score), against the margin 0",
    threshold_source="the paper's thesis (figure 1; RevGNN-Deep and -Wide, 87.74 and 88.24 "
    "ROC-AUC, beyond any ResGNN that fits a V100): depth must buy a real gain, so any positive "
    "difference counts (margin 0) once the interval excludes 0; choosing both depths by "
    "validation keeps the test scores from picking the winner",
    judge=accuracy_claims,
)
