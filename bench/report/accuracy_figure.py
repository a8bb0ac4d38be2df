"""Figure 10: test score (mean, 95% t-interval over seeds) against the receptive field in
message-passing hops per arch under the accuracy ablation's memory budget, each arch's
out-of-memory boundary and the task's needed hops marked (ground-truth tasks only)."""

from __future__ import annotations

import pathlib

import matplotlib.pyplot as plt
import matplotlib.transforms as mtransforms
import numpy as np
import pandas as pd

from bench.report import figures
from bench.report.claims.accuracy import budget_text, needed_depth, with_hops
from bench.report.fmt import fmt_num
from bench.report.load import device_short
from bench.report.select import FigureSpec
from bench.stats import summarize

CI_NOTE = ("Points: mean test score over seeds of ok trials; bars: 95% Student t-interval of "
           "the mean (none for a single seed). x: receptive field in message-passing hops "
           "(ResGNN: layers; RevGNN, WT-RevGNN: groups x layers; DEQ-GNN: 2 x iterations - 1).\n")  # fmt: skip


def depth_intervals(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (slice, model, variant, hops): mean test score, its 95% t-interval and n."""
    ok = rows[(rows["status"] == "ok") & rows["score"].notna() & rows["hops"].notna()]
    out = []
    for (slice_, model, variant, hops), g in ok.groupby(
        ["slice", "model", "variant", "hops"], sort=True
    ):
        iv = summarize(g["score"])
        out.append({"slice": slice_, "model": model, "variant": variant, "hops": float(hops),
                    "mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n})  # fmt: skip
    return pd.DataFrame(out, columns=["slice", "model", "variant", "hops", "mean", "lo", "hi", "n"])


def panel_names(rows: pd.DataFrame) -> pd.Series:
    """A panel per slice, except that budget-less rows on one ground-truth dataset and device
    (tasks of several k: the criteria and limits profiles) share one, the trainability panel."""
    pooled = rows["memory_cap_bytes"].isna() & rows["needed"].notna()
    name = rows["dataset"] + ", tasks of several k · " + rows["device_name"].map(device_short)
    return name.where(pooled, rows["slice"])


def accuracy_figure(
    rows: pd.DataFrame, fig: FigureSpec, out_dir: pathlib.Path
) -> list[pathlib.Path]:
    """Test score (mean, 95% t-interval) vs receptive field in hops per arch, one panel per
    slice; a dashed line and an x at each arch's first OOM; a grey band at the needed hops."""
    rows = with_hops(figures._prepare(rows))
    points = depth_intervals(rows)
    if points.empty:
        return []
    rows["panel"] = panel_names(rows)
    panels = sorted(rows["panel"].unique())
    f, axes = plt.subplots(1, len(panels), figsize=(6.8 * len(panels), 5.0), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        part = rows[rows["panel"] == panel]
        if part["needed"].nunique() > 1:  # tasks of several k: the trainability panel
            _limits_panel(ax, part)
        else:
            _panel(ax, part, points[points["slice"] == part["slice"].iloc[0]])
    f.suptitle(fig.title, fontsize=12)
    figures._caption(f, CI_NOTE + " Dashed vertical line and x: the fewest hops at which that "
                     "arch ran out of the memory budget. Grey band: the hops the task needs "
                     "(ground-truth tasks; a real graph has none). Panels over several tasks "
                     "(no budget): score against the hops k each task needs, per arch at a "
                     "receptive field near k (dotted: short of k; dashed grey: chance).")  # fmt: skip
    f.tight_layout(rect=(0, 0.09, 1, 1))
    return figures.save(f, out_dir, fig.stem)


def _panel(ax: plt.Axes, part: pd.DataFrame, points: pd.DataFrame) -> None:
    series = list(points.groupby(["model", "variant"], sort=False).groups)
    order = {m: i for i, m in enumerate(figures.MODEL_ORDER)}
    series.sort(key=lambda mv: (order.get(mv[0], 99), mv[1]))
    styles = ("o", "s", "^", "D", "v", "P")
    for i, (model, variant) in enumerate(series):
        p = points[(points["model"] == model) & (points["variant"] == variant)]
        x = p["hops"].to_numpy() * (1 + 0.025 * (i - (len(series) - 1) / 2))  # dodge the bars
        err = np.vstack([p["mean"] - p["lo"], p["hi"] - p["mean"]])
        label = f"{model} [{variant}]" if variant else model
        ax.errorbar(x, p["mean"], yerr=np.nan_to_num(err), color=figures.PALETTE.get(model, "black"),
                    marker=styles[i % len(styles)], ms=6, lw=1.5, capsize=3, label=label)  # fmt: skip
    figures._log_x(ax, part["hops"].dropna().tolist())
    _oom_lines(ax, part)
    k = needed_depth(part)
    if k is not None:
        ax.axvspan(k * 0.97, k * 1.03, color="0.85", zorder=0)
        ax.annotate(f"needed: {k} hops", (k, 0.02), xycoords=("data", "axes fraction"),
                    xytext=(4, 0), textcoords="offset points", fontsize=8, color="0.35")  # fmt: skip
    metric = part["metric"].dropna()
    ax.set_ylabel(f"test {metric.iloc[0] if len(metric) else 'score'} at best valid epoch")
    ax.set_xlabel("receptive field (message-passing hops)")
    ax.set_title(figures._wrap(f"{part['slice'].iloc[0]}, {budget_text(part)}"), fontsize=9)
    ax.legend(fontsize=8, loc="lower right")


def _limits_panel(ax: plt.Axes, part: pd.DataFrame) -> None:
    """Slices over tasks of several needed hops k (the criteria and limits profiles): test score
    against k, one line per arch and receptive field relative to k ("k hops", "k - 1 hops")."""
    ok = part[(part["status"] == "ok") & part["score"].notna() & part["needed"].notna()].copy()
    ok["offset"] = (ok["hops"] - ok["needed"]).astype(int)
    order = {m: i for i, m in enumerate(figures.MODEL_ORDER)}
    groups = sorted(ok.groupby(["model", "offset"]).groups,
                    key=lambda mo: (order.get(mo[0], 99), mo[1]))  # fmt: skip
    styles = ("o", "s", "^", "D", "v", "P")
    for i, (model, offset) in enumerate(groups):
        g = ok[(ok["model"] == model) & (ok["offset"] == offset)]
        stats = [(k, summarize(s["score"])) for k, s in g.groupby("needed", sort=True)]
        k = np.array([float(k) for k, _ in stats]) * (1 + 0.02 * (i - (len(groups) - 1) / 2))
        mean = np.array([iv.mean for _, iv in stats])
        err = np.nan_to_num(np.vstack([mean - [iv.lo for _, iv in stats],
                                       [iv.hi for _, iv in stats] - mean]))  # fmt: skip
        reach = "k hops" if offset == 0 else f"k {'+' if offset > 0 else '-'} {abs(offset)} hops"
        ax.errorbar(k, mean, yerr=err, color=figures.PALETTE.get(model, "black"),
                    marker=styles[i % len(styles)], ms=6, lw=1.5, capsize=3,
                    ls="-" if offset >= 0 else ":", label=f"{model}, {reach}")  # fmt: skip
    figures._log_x(ax, ok["needed"].tolist())
    ax.axhline(0.5, color="0.6", lw=1, ls="--", zorder=0)
    ax.set_ylabel("test rocauc at best valid epoch")
    ax.set_xlabel("hops the task needs (k); each arch with a receptive field near k")
    ax.set_title(figures._wrap(f"{part['panel'].iloc[0]}, {budget_text(part)}"), fontsize=9)
    ax.legend(fontsize=7, loc="lower left")


def _oom_lines(ax: plt.Axes, part: pd.DataFrame) -> None:
    """Each arch's OOM boundary: a dashed line at its fewest OOM hops, an x and a label."""
    oom = part[(part["status"] == "oom") & part["hops"].notna()]
    blend = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    for j, (model, group) in enumerate(oom.groupby("model", sort=True)):
        hops = float(group["hops"].min())
        color = figures.PALETTE.get(model, "black")
        ax.axvline(hops, ls="--", lw=1.2, color=color, alpha=0.8)
        ax.scatter([hops], [0.96], marker="x", s=80, linewidths=2.5, color=color,
                   transform=blend, clip_on=False, zorder=6)  # fmt: skip
        ax.annotate(f"{model} OOM from {fmt_num(hops)} hops", (hops, 0.93 - 0.06 * j),
                    xycoords=blend, xytext=(4, 0), textcoords="offset points", fontsize=8,
                    color=color, fontweight="bold", va="top")  # fmt: skip
