"""The accuracy ablation in the report: the paper's thesis that depth buys accuracy which,
within one memory budget, only the memory-efficient archs can afford.

The ``accuracy`` spec trains every arch at increasing depth under one memory cap on a task whose
needed depth is known (``synthetic-proteins`` with ``depth_task`` = k). Per measurement slice and
per configuration family, the claim ``depth-buys-accuracy`` asks two things of each
memory-efficient arch (rev, wt-rev, deq) against res:

1. *memory*: res runs out of the budget at some depth and the arch runs deeper than res does;
2. *score*: the arch at its best depth beyond res's reach scores higher on test than the best
   res that fits, both depths chosen by mean validation score (so test scores never pick the
   winner), judged by the 95% t-interval of the difference over seeds (``bench.stats``). The
   task's needed depth k is named in the evidence; it is not imposed, since a model may need
   more layers than the receptive field alone to fit the task.

The figure draws the test score (mean and 95% t-interval over seeds) against depth per arch,
one panel per slice, with each arch's OOM boundary and the needed depth marked."""

from __future__ import annotations

import json
import math

import pandas as pd

from bench.report.claims.base import (
    NOT_SUPPORTED,
    Claim,
    Series,
    score_difference,
    series_pairs,
    split_series,
)
from bench.report.fmt import fmt_num
from bench.report.load import canonical
from bench.report.select import FIGURE_BY_KEY, ablation_rows
from bench.stats import NO_DATA, judge, summarize
from bench.units import format_bytes

KEY = "depth-buys-accuracy"
FIGURE = "fig10"
EFFICIENT = ("rev", "wt-rev", "deq")  # the archs whose memory does not grow with depth
ACCURACY_MARGIN = 0.0  # "scores higher": the interval of the difference lies above 0


def needed_depth(rows: pd.DataFrame) -> int | None:
    """The task's known depth (``depth_task`` in the dataset options), if it has one."""
    found = set()
    for value in rows["dataset_options"].dropna().unique():
        options = json.loads(value) if isinstance(value, str) else dict(value)
        k = canonical(options.get("depth_task"))
        if isinstance(k, int) and k > 0:
            found.add(k)
    return found.pop() if len(found) == 1 else None


def _ok(series: Series) -> pd.DataFrame:
    return series.rows[series.rows["status"] == "ok"]


def _reach(series: Series) -> tuple[float, float]:
    """Deepest depth with an ok trial, and the first depth with an OOM (NaN when none)."""
    ok = _ok(series)["depth"]
    oom = series.rows.loc[series.rows["status"] == "oom", "depth"]
    return (float(ok.max()) if len(ok) else math.nan, float(oom.min()) if len(oom) else math.nan)


def _best_by_valid(series: Series, depths: list[float]) -> float:
    """The depth among ``depths`` with the highest mean validation score (ties: shallower)."""
    ok = _ok(series)
    means = ok[ok["depth"].isin(depths)].groupby("depth")["best_valid"].mean().dropna()
    if means.empty:  # no validation score recorded: fall back to the deepest
        return max(depths)
    return float(means[means == means.max()].index.min())


def _at(series: Series, depth: float) -> pd.DataFrame:
    return series.rows[series.rows["depth"] == depth]


def budget_text(rows: pd.DataFrame) -> str:
    caps = rows["memory_cap_bytes"].dropna().unique()
    return f"a {format_bytes(int(caps[0]))} budget" if len(caps) == 1 else "no single memory cap"


def accuracy_claims(df: pd.DataFrame) -> list[Claim]:
    """``depth-buys-accuracy`` for every memory-efficient arch paired with res, per slice."""
    rows, _ = ablation_rows(df, FIGURE_BY_KEY[FIGURE])
    out = []
    for slice_, panel in rows.groupby("slice", sort=True):
        series = split_series(panel)
        for arch in EFFICIENT:
            out += [
                _claim(str(slice_), deep, res) for deep, res in series_pairs(series, arch, "res")
            ]
    return out


def _claim(slice_: str, deep: Series, res: Series) -> Claim:
    """Did ``deep`` get deeper than res under the cap, and score higher there?"""
    case = f"{deep.label} vs {res.label}"
    res_reach, res_oom = _reach(res)
    deep_reach, _ = _reach(deep)
    budget = budget_text(pd.concat([deep.rows, res.rows]))
    if math.isnan(res_reach) or math.isnan(deep_reach):
        missing = "res" if math.isnan(res_reach) else deep.arch
        return Claim(KEY, FIGURE, slice_, case, f"no ok {missing} trial", NO_DATA)
    if math.isnan(res_oom):
        return Claim(KEY, FIGURE, slice_, case, f"res fit every depth tried (up to "
                     f"{fmt_num(res_reach)}) under {budget}: the cap never bound, so no depth "
                     f"was {deep.arch}'s alone", NO_DATA)  # fmt: skip
    memory = (f"under {budget}: res fits up to depth {fmt_num(res_reach)} (OOM from "
              f"{fmt_num(res_oom)}), {deep.arch} up to {fmt_num(deep_reach)}")  # fmt: skip
    beyond = sorted(float(d) for d in _ok(deep)["depth"].unique() if d > res_reach)
    if not beyond:
        return Claim(KEY, FIGURE, slice_, case, memory + f": {deep.arch} got no deeper",
                     NOT_SUPPORTED)  # fmt: skip
    d_deep = _best_by_valid(deep, beyond)
    k = needed_depth(pd.concat([deep.rows, res.rows]))
    why = "its best depth beyond res's reach, by validation" + (
        f"; the task needs k={k}" if k is not None else ""
    )
    res_depths = sorted(float(d) for d in _ok(res)["depth"].unique())
    d_res = _best_by_valid(res, res_depths)
    a, b = _at(deep, d_deep), _at(res, d_res)
    diff = score_difference(a, b)
    verdict = judge(diff, margin=ACCURACY_MARGIN)
    sa, sb = (
        summarize(a.loc[a["status"] == "ok", "score"]),
        summarize(b.loc[b["status"] == "ok", "score"]),
    )
    evidence = (f"{memory}; test score {deep.arch} at depth {fmt_num(d_deep)} ({why}) "
                f"{sa.text()} vs the best res that fits, depth {fmt_num(d_res)} (by validation), "
                f"{sb.text()}; difference {diff.text()}: {verdict}")  # fmt: skip
    return Claim(KEY, FIGURE, slice_, case, evidence, verdict)
