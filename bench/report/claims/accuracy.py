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

One claim per memory-efficient family, generated from the architecture registry (every arch
with ``flat_memory``: ``depth-buys-accuracy-rev``, ``-wt-rev``, ``-deq``), so no family decides
another's verdict. Per slice and configuration family each asks of its arch against res:

1. *memory*, under the case's budget (:mod:`.budget`: the spec's cap, or computed in the same
   run midway between res's peaks at k - 1 and k layers): res falls short of k and the arch
   reaches k (real graphs: the arch reaches more hops than res). An arch that cannot is *not
   testable at this budget*, with what it needs beside; res reaching k (or a cap that never
   bound) is *not enough data*;
2. *score*: the arch at its best depth beyond res's reach against the best res that fits, at
   equal width (the paper's convention; it decides), both depths chosen by mean validation
   score, judged by the 95% t-interval of the difference over seeds (``bench.stats``) against
   0. The stronger test, the best res that fits over width *and* depth, is printed beside with
   its own verdict, as are the seeds that would decide the case at the observed spread;
3. *recipe*: a comparison the side that lost could not finish is *recipe-limited*, not judged:
   most of its trials at a depth compared were stopped by patience before half their epoch
   budget (:data:`RECIPE_FRACTION`).

Where an arch gets there but does not collect the score, the evidence says what the trials
show: its score at chance (it did not learn the k-hop rule), a DEQ solver that stopped above
its tolerance (not converged) or after fewer iterations than k hops need. The figure draws the
test score against the receptive field in hops per arch, one panel per slice. The claims are
declared at the end of the module (``DEPTH_BUYS_ACCURACY``)."""

from __future__ import annotations

import functools
import math

import pandas as pd

from bench import paper
from bench.models import archs
from bench.report.claims.base import (
    ARCH_SPECIFIC,
    NOT_TESTABLE,
    RECIPE_LIMITED,
    Finding,
    Series,
    case_label,
    score_difference,
    series_pairs,
    split_series,
)
from bench.report.claims.budget import Budget, cap_budget, case_budget, computed_budget, need
from bench.report.claims.registry import DESIGN_TARGET, NO_PAPER, PAPER_CLAIM, Claim
from bench.report.fmt import fmt_num
from bench.report.select import FIGURE_BY_KEY, ablation_rows
from bench.stats import (
    CONTRADICTED,
    INCONCLUSIVE,
    NO_DATA,
    SCORE_BOUNDS,
    SUPPORTED,
    judge,
    summarize,
)
from bench.trial.hops import deq_hops

KEY = "depth-buys-accuracy"
FIGURE = "fig10"
ACCURACY_MARGIN = 0.0  # "scores higher": the interval of the difference lies above 0
CHANCE_BAND = 0.05  # a mean test ROC-AUC within 0.5 +- this is read as chance
RECIPE_FRACTION = 0.5  # a patience stop before this share of the epoch budget cut a trial short


def claim_key(arch: str) -> str:
    """The claim of one family: ``depth-buys-accuracy-rev``."""
    return f"{KEY}-{arch}"


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


def panel_budget(rows: pd.DataFrame) -> Budget | None:
    """The slice's budget, for a figure: the spec's cap, or the one computed from res at the
    memory-efficient archs' width; None when neither applies."""
    rows = with_hops(rows)
    budget = cap_budget(rows) if rows["memory_cap_bytes"].notna().any() else None
    flat = rows[rows["arch"].isin(archs.names(flat_memory=True))]
    if budget is None and flat["channels"].nunique() == 1:
        res = rows[(rows["arch"] == "res") & (rows["channels"] == flat["channels"].iloc[0])]
        budget = computed_budget(res, needed_depth(rows))
    return budget


def budget_text(rows: pd.DataFrame) -> str:
    """The slice's budget in words, for a figure's title ('no memory budget' without one)."""
    budget = panel_budget(rows)
    return budget.text() if budget is not None else "no memory budget"


def accuracy_claims(df: pd.DataFrame, arch: str | None = None) -> list[Finding]:
    """``depth-buys-accuracy-<arch>`` for ``arch`` (every memory-efficient arch without it)
    paired with res, per slice; a pair without a budget (no cap, no rule) is no case."""
    rows, _ = ablation_rows(df, FIGURE_BY_KEY[FIGURE])
    if rows.empty:
        return []
    rows = with_hops(rows)
    out = []
    for slice_, panel in rows.groupby("slice", sort=True):
        series = split_series(panel)
        for name in [arch] if arch else archs.names(flat_memory=True):
            for deep, res in series_pairs(series, name, "res"):
                k = needed_depth(pd.concat([deep.rows, res.rows]))
                budget = case_budget(pd.concat([deep.rows, res.rows]), res.rows, k)
                if budget is not None:
                    wider = [s for s in series if s.arch == "res"
                             and s.matches(deep, ignore=(*ARCH_SPECIFIC, "channels"))]  # fmt: skip
                    out.append(_case(str(slice_), deep, res, wider, budget))
    return out


def _ok(series: Series) -> pd.DataFrame:
    return series.rows[series.rows["status"] == "ok"]


def _fits(series: Series, budget: Budget) -> list[float]:
    """The hops at which ``series`` fits the budget, ascending."""
    fitting = budget.fitting(series.rows)
    return [float(h) for h in fitting.index[fitting.to_numpy()]]


def _best_by_valid(series: Series, hops: list[float]) -> float:
    """The hops among ``hops`` with the highest mean validation score (ties: fewer hops)."""
    ok = _ok(series)
    means = ok[ok["hops"].isin(hops)].groupby("hops")["best_valid"].mean().dropna()
    if means.empty:  # no validation score recorded: fall back to the most hops
        return max(hops)
    return float(means[means == means.max()].index.min())


def _at(series: Series, hops: float) -> pd.DataFrame:
    return series.rows[series.rows["hops"] == hops]


def _scores(rows: pd.DataFrame) -> str:
    """'0.9999 [0.9996, 1.0000] (n=5), best epoch 160 of 400': the score's interval (inside
    [0, 1]) and when, on average, its best validation came."""
    ok = rows[rows["status"] == "ok"]
    text = summarize(ok["score"], bounds=SCORE_BOUNDS).text()
    best = pd.to_numeric(ok["best_epoch"], errors="coerce").mean()
    epochs = pd.to_numeric(ok["epochs"], errors="coerce").max()
    return text if best != best else f"{text}, best epoch {best:.0f} of {epochs:.0f}"


def _layers_text(series: Series, hops: float) -> str:
    """'8 hops (4 layers)': hops with the depth axis the spec set (DEQ: iterations)."""
    depth = _at(series, hops)["depth"].dropna()
    if not len(depth):
        return _hops(hops)
    unit = archs.get(series.arch).depth_unit
    plural = "" if float(depth.iloc[0]) == 1 else "s"
    return f"{_hops(hops)} ({fmt_num(depth.iloc[0])} {unit}{plural})"


def _hops(hops: float) -> str:
    return f"{fmt_num(hops)} hop{'' if hops == 1 else 's'}"


def _case(slice_: str, deep: Series, res: Series, wider: list[Series], budget: Budget) -> Finding:
    """One case: did ``deep`` reach more hops than res within the budget (the needed k, on a
    ground-truth task), and score higher there?"""
    k = needed_depth(pd.concat([deep.rows, res.rows]))
    kind = f"the mechanism: a ground-truth task needing {k} hops" if k else (
        "does it pay: a real graph, needed hops unknown")  # fmt: skip
    case = f"{case_label(deep, res)} ({kind})"

    def claim(evidence: str, verdict: str) -> Finding:
        return Finding(claim_key(deep.arch), FIGURE, slice_, case, evidence, verdict)

    if _ok(res).empty or _ok(deep).empty:
        return claim(f"no ok {'res' if _ok(res).empty else deep.arch} trial", NO_DATA)
    res_fits, deep_fits = _fits(res, budget), _fits(deep, budget)
    res_reach = max(res_fits, default=math.nan)
    deep_reach = max(deep_fits, default=math.nan)
    if not res_fits:
        return claim(f"res fits no depth within {budget.text()}: no res to compare with",
                     NO_DATA)  # fmt: skip
    short = [float(h) for h in res.rows["hops"].dropna().unique() if float(h) not in res_fits]
    if not short:
        return claim(f"res fit every depth tried (up to {_layers_text(res, res_reach)}) within "
                     f"{budget.text()}: the budget never bound, so no depth was {deep.arch}'s "
                     "alone", NO_DATA)  # fmt: skip
    memory = (f"within {budget.text()} res reaches {_reach_text(res, res_reach)}, {deep.arch} "
              f"{_reach_text(deep, deep_reach)}")  # fmt: skip
    if k is not None:
        memory += f"; the task needs {k}"
        if res_reach >= k:
            return claim(memory + ": the budget lets res reach the needed hops, so it cannot "
                         "test the thesis", NO_DATA)  # fmt: skip
    untestable = _untestable(deep, deep_fits, res_reach, k, budget)
    if untestable:
        return claim(f"{untestable}; {memory}", NOT_TESTABLE)
    beyond = [h for h in deep_fits if h > res_reach]
    h_deep, h_res = _best_by_valid(deep, beyond), _best_by_valid(res, res_fits)
    a, b = _at(deep, h_deep), _at(res, h_res)
    diff = score_difference(a, b)
    verdict = judge(diff, margin=ACCURACY_MARGIN)
    parts = [
        f"{deep.arch} at {_hops(h_deep)} minus the best res that fits ({_hops(h_res)}): "
        f"{diff.text()}: {verdict} ({diff.seeds_text(ACCURACY_MARGIN)})",
        memory,
        f"test score {deep.arch} at {_layers_text(deep, h_deep)} (its best beyond res's reach, "
        f"by validation) {_scores(a)} vs res at {_layers_text(res, h_res)} (by validation) "
        f"{_scores(b)}",
        _over_width(deep, a, wider, budget),
    ]  # fmt: skip
    if verdict not in (SUPPORTED, NO_DATA):
        parts += _why_not(deep, a, k)
    recipe = _recipe_limit(deep, beyond) if verdict in (INCONCLUSIVE, CONTRADICTED) else (
        _recipe_limit(res, res_fits) if verdict == SUPPORTED else None)  # fmt: skip
    if recipe:
        return claim("; ".join([f"recipe-limited ({verdict} by the interval): {recipe}", *parts]),
                     RECIPE_LIMITED)  # fmt: skip
    return claim("; ".join(parts), verdict)


def _reach_text(series: Series, reach: float) -> str:
    return "no depth" if math.isnan(reach) else _layers_text(series, reach)


def _untestable(deep: Series, fits: list[float], res_reach: float, k: int | None,
                budget: Budget) -> str | None:  # fmt: skip
    """Why the budget leaves ``deep`` no depth to test (None when it leaves one): short of
    the task's k, or (real graphs) no farther than res; with what the arch needs beside."""
    target = k if k is not None else res_reach + 1
    if max(fits, default=-math.inf) >= target:
        return None
    tried = sorted(float(h) for h in deep.rows["hops"].dropna().unique() if h >= target)
    what = f"the {k} hops the task needs" if k is not None else "more hops than res"
    if not tried:
        return f"not testable at this budget: {deep.arch} ran at no depth reaching {what}"
    return (f"not testable at this budget: {deep.arch} needs {need(deep.rows, tried[0], budget)} "
            f"at {_layers_text(deep, tried[0])}, its fewest reaching {what}")  # fmt: skip


def _over_width(deep: Series, at: pd.DataFrame, wider: list[Series], budget: Budget) -> str:
    """The stronger test: the deep arch against the best res that fits at any width and depth
    (chosen by mean validation score), with its own verdict."""
    widths = sorted({int(c) for s in wider for c in s.rows["channels"].dropna().unique()})
    if len(widths) < 2:
        return f"over width and depth: res ran at one width ({', '.join(map(str, widths))}) only"
    best, best_valid = None, -math.inf
    for s in wider:
        for h in _fits(s, budget):
            valid = float(_ok(s).loc[_ok(s)["hops"] == h, "best_valid"].mean())
            if valid > best_valid:
                best, best_valid = (s, h), valid
    if best is None:
        return "over width and depth: no res fits the budget"
    s, h = best
    diff = score_difference(at, _at(s, h))
    width = int(_at(s, h)["channels"].iloc[0])
    return (f"over width and depth (the stronger test, res at {', '.join(map(str, widths))} "
            f"channels): the best res that fits is {width} channels at {_layers_text(s, h)}, "
            f"{_scores(_at(s, h))}, difference {diff.text()}: {judge(diff, ACCURACY_MARGIN)} "
            f"({diff.seeds_text(ACCURACY_MARGIN)})")  # fmt: skip


def cut_short(rows: pd.DataFrame) -> pd.Series:
    """Trials stopped by patience before :data:`RECIPE_FRACTION` of their epoch budget."""
    stopped = pd.to_numeric(rows.get("stopped_epoch"), errors="coerce")
    epochs = pd.to_numeric(rows["epochs"], errors="coerce")
    return (rows.get("stop_reason") == "patience") & (stopped < RECIPE_FRACTION * epochs)


def _recipe_limit(series: Series, hops: list[float]) -> str | None:
    """The depths among ``hops`` where most of ``series``' ok trials were cut short, in words;
    None when none was (the recipe let every compared depth train)."""
    found = []
    for h in hops:
        ok = _ok(series)[_ok(series)["hops"] == h]
        short = cut_short(ok)
        if len(ok) and 2 * int(short.sum()) > len(ok):
            stopped = pd.to_numeric(ok.loc[short, "stopped_epoch"]).mean()
            found.append(f"{_layers_text(series, h)} {int(short.sum())} of {len(ok)} (at epoch "
                         f"{stopped:.0f} on average)")  # fmt: skip
    if not found:
        return None
    epochs = int(pd.to_numeric(_ok(series)["epochs"]).max())
    return (f"{series.arch} trials stopped by patience before {RECIPE_FRACTION:.0%} of their "
            f"{epochs} epochs: {', '.join(found)}")  # fmt: skip


def _why_not(deep: Series, at: pd.DataFrame, k: int | None) -> list[str]:
    """What the trials say about an arch that got deep enough but did not collect the score."""
    reasons = []
    ok = at[at["status"] == "ok"]
    mean = float(ok["score"].mean()) if len(ok) else math.nan
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


# --- the claims: one per memory-efficient family -------------------------------------------

_RES, _RES_WIDE = paper.point("ResGNN-64"), paper.point("ResGNN-224")
THRESHOLD = (
    "accuracy ablation, the arch against res, depth counted in message-passing hops (res L, "
    "rev and wt-rev G x L, deq 2n - 1), under the case's budget: the spec's cap, or (trials run "
    "without one) midway between res's mean measured peaks at k - 1 and k layers at the compared "
    "width, a depth fitting when its peaks are within it. Memory: res short of the k hops the "
    "task needs and the arch at k or more (real graphs: more hops than res); an arch that cannot "
    "is not testable at this budget, res reaching k or never bound is not enough data. Score: "
    "the 95% t-interval of the test-score difference, the arch at its best depth beyond res's "
    "reach minus the best res that fits at equal width (both by mean validation score), against "
    "the margin 0; the best res over width and depth is printed beside. Recipe: where most "
    f"trials of the losing side at a compared depth stopped by patience before "
    f"{RECIPE_FRACTION:.0%} of their epochs, recipe-limited"
)
SOURCE = (
    "the paper's thesis (figure 1; RevGNN-Deep and -Wide beyond any ResGNN that fits a V100; "
    "its weight-tied and DEQ models fit where ResGNN-224 runs out of memory): depth must buy a "
    "real gain, so any positive difference counts (margin 0) once the interval excludes 0. "
    "Equal width is the paper's convention (ResGNN-64 against RevGNN-64); the budget is computed "
    "in the run it judges, so no calibration drift decides a case; choosing depths by validation "
    "keeps the test scores from picking the winner; a patience stop before half the epochs "
    "is the recipe's decision, not the model's (the paper trains a fixed 2000 epochs)"
)


def _paper_cell(arch: archs.Architecture) -> str:
    """The paper's numbers for this family: single-view scores where the paper gives them
    (comparable with ours: one evaluation view), else its best model of the family."""
    points = [p for p in paper.ALL_POINTS if p.arch == arch.name and p.test_score is not None]
    single = [p for p in points if p.single_view_score is not None]
    base = f"ResGNN-64's {_RES.test_score}"
    if single:
        scores = ", ".join(f"{p.label} {p.single_view_score}" for p in single)
        return f"{scores} ROC-AUC (single view) against {base}; {_RES_WIDE.label} out of memory"
    if not points:
        return NO_PAPER
    best = max(points, key=lambda p: float(p.test_score or 0))
    return (f"{best.label} {best.test_score} ROC-AUC in {best.peak_memory_gb} GB against {base} "
            f"in {_RES.peak_memory_gb} GB; {_RES_WIDE.label} out of memory")  # fmt: skip


def depth_claim(arch: archs.Architecture) -> Claim:
    """``depth-buys-accuracy-<arch>``: the thesis for one memory-efficient family."""
    cell = _paper_cell(arch)
    return Claim(
        key=claim_key(arch.name),
        statement="Depth buys accuracy that, within one memory budget, only the memory-efficient "
        f"models can afford: ResGNN runs out of the budget before the depth the task needs, while "
        f"{arch.display} gets there and scores higher than the best ResGNN that fits (the paper's "
        "thesis; figure 1, RevGNN-Deep and -Wide).",
        short=f"depth buys accuracy within a budget: {arch.display}",
        paper=cell,
        figure=FIGURE,
        threshold=THRESHOLD,
        threshold_source=SOURCE,
        judge=functools.partial(accuracy_claims, arch=arch.name),
        kind=PAPER_CLAIM if cell != NO_PAPER else DESIGN_TARGET,
    )


#: one claim per registered memory-efficient arch, in registration order
DEPTH_BUYS_ACCURACY: tuple[Claim, ...] = tuple(
    depth_claim(a) for a in archs.registered() if a.flat_memory
)
