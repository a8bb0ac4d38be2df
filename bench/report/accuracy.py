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
import pathlib

import matplotlib.pyplot as plt
import matplotlib.transforms as mtransforms
import numpy as np
import pandas as pd

from bench.report import figures
from bench.report.claims import (
    NO_DATA,
    NOT_SUPPORTED,
    Claim,
    Series,
    score_difference,
    series_pairs,
    split_series,
)
from bench.report.fmt import fmt_num
from bench.report.load import canonical
from bench.report.select import FIGURE_BY_KEY, FigureSpec, ablation_rows
from bench.stats import judge, summarize
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


def _budget(rows: pd.DataFrame) -> str:
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
    budget = _budget(pd.concat([deep.rows, res.rows]))
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


# --- the figure -------------------------------------------------------------------------------

CI_NOTE = ("Points: mean test score over seeds of ok trials; bars: 95% Student t-interval of "
           "the mean (none for a single seed).\n")  # fmt: skip


def depth_intervals(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (slice, model, variant, depth): mean test score, its 95% t-interval and n."""
    ok = rows[(rows["status"] == "ok") & rows["score"].notna()]
    out = []
    for (slice_, model, variant, depth), g in ok.groupby(
        ["slice", "model", "variant", "depth"], sort=True
    ):
        iv = summarize(g["score"])
        out.append({"slice": slice_, "model": model, "variant": variant, "depth": float(depth),
                    "mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n})  # fmt: skip
    return pd.DataFrame(
        out, columns=["slice", "model", "variant", "depth", "mean", "lo", "hi", "n"]
    )


def accuracy_figure(
    rows: pd.DataFrame, fig: FigureSpec, out_dir: pathlib.Path
) -> list[pathlib.Path]:
    """Test score (mean, 95% t-interval) vs depth per arch, one panel per slice; a dashed line
    and an x at each arch's first OOM depth; a grey band at the task's needed depth."""
    rows = figures._prepare(rows)
    points = depth_intervals(rows)
    if points.empty:
        return []
    slices = sorted(rows["slice"].unique())
    f, axes = plt.subplots(1, len(slices), figsize=(6.8 * len(slices), 5.0), squeeze=False)
    for ax, slice_ in zip(axes[0], slices, strict=True):
        part = rows[rows["slice"] == slice_]
        _panel(ax, part, points[points["slice"] == slice_])
    f.suptitle(fig.title, fontsize=12)
    figures._caption(f, CI_NOTE + " Dashed vertical line and x: the first depth at which that "
                     "arch ran out of the memory budget. Grey band: the depth the task needs.")  # fmt: skip
    f.tight_layout(rect=(0, 0.09, 1, 1))
    return figures.save(f, out_dir, fig.stem)


def _panel(ax: plt.Axes, part: pd.DataFrame, points: pd.DataFrame) -> None:
    series = list(points.groupby(["model", "variant"], sort=False).groups)
    order = {m: i for i, m in enumerate(figures.MODEL_ORDER)}
    series.sort(key=lambda mv: (order.get(mv[0], 99), mv[1]))
    styles = ("o", "s", "^", "D", "v", "P")
    for i, (model, variant) in enumerate(series):
        p = points[(points["model"] == model) & (points["variant"] == variant)]
        x = p["depth"].to_numpy() * (1 + 0.025 * (i - (len(series) - 1) / 2))  # dodge the bars
        err = np.vstack([p["mean"] - p["lo"], p["hi"] - p["mean"]])
        label = f"{model} [{variant}]" if variant else model
        ax.errorbar(x, p["mean"], yerr=np.nan_to_num(err), color=figures.PALETTE.get(model, "black"),
                    marker=styles[i % len(styles)], ms=6, lw=1.5, capsize=3, label=label)  # fmt: skip
    figures._log_x(ax, part["depth"].tolist())
    _oom_lines(ax, part)
    k = needed_depth(part)
    if k is not None:
        ax.axvspan(k * 0.97, k * 1.03, color="0.85", zorder=0)
        ax.annotate(f"needed depth k={k}", (k, 0.02), xycoords=("data", "axes fraction"),
                    xytext=(4, 0), textcoords="offset points", fontsize=8, color="0.35")  # fmt: skip
    metric = part["metric"].dropna()
    ax.set_ylabel(f"test {metric.iloc[0] if len(metric) else 'score'} at best valid epoch")
    ax.set_xlabel("layers (DEQ: solver iterations when capped)")
    ax.set_title(figures._wrap(f"{part['slice'].iloc[0]}, {_budget(part)}"), fontsize=9)
    ax.legend(fontsize=8, loc="lower right")


def _oom_lines(ax: plt.Axes, part: pd.DataFrame) -> None:
    """Each arch's OOM boundary: a dashed line at its first OOM depth, an x and a label."""
    oom = part[part["status"] == "oom"]
    blend = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    for j, (model, group) in enumerate(oom.groupby("model", sort=True)):
        depth = float(group["depth"].min())
        color = figures.PALETTE.get(model, "black")
        ax.axvline(depth, ls="--", lw=1.2, color=color, alpha=0.8)
        ax.scatter([depth], [0.96], marker="x", s=80, linewidths=2.5, color=color,
                   transform=blend, clip_on=False, zorder=6)  # fmt: skip
        ax.annotate(f"{model} OOM from {fmt_num(depth)}", (depth, 0.93 - 0.06 * j), xycoords=blend,
                    xytext=(4, 0), textcoords="offset points", fontsize=8, color=color,
                    fontweight="bold", va="top")  # fmt: skip
