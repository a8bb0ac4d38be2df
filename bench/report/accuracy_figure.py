"""Figure 10: test score (mean, 95% t-interval over seeds) against the receptive field in
message-passing hops per arch under the accuracy ablation's memory budget, each arch's
out-of-memory boundary and the task's needed hops marked (ground-truth tasks only).

Scores sit on an axis inside [0, 1] that spans at least ``figures.MIN_SPAN`` (a 0.944-0.956 axis
makes a 0.003 difference look large); out-of-memory marks sit in the margin above the data,
and every label is a legend entry, so none collides with another at a crowded depth."""

from __future__ import annotations

import pathlib
import textwrap

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from bench.report import figures as look
from bench.report.claims.accuracy import budget_text, needed_depth, panel_budget, with_hops
from bench.report.claims.budget import Budget
from bench.report.fmt import fmt_num
from bench.report.load import device_short
from bench.report.select import FigureSpec
from bench.stats import SCORE_BOUNDS, summarize

HOPS_NOTE = ("x: receptive field in message-passing hops (ResGNN: layers; RevGNN, WT-RevGNN: "
             "groups x layers; DEQ-GNN: 2 x iterations - 1).")  # fmt: skip


def depth_intervals(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (slice, model, variant, hops): mean test score, its 95% t-interval and n."""
    ok = rows[(rows["status"] == "ok") & rows["score"].notna() & rows["hops"].notna()]
    out = []
    for (slice_, model, variant, hops), g in ok.groupby(
        ["slice", "model", "variant", "hops"], sort=True
    ):
        iv = summarize(g["score"], bounds=SCORE_BOUNDS)
        out.append({"slice": slice_, "model": model, "variant": variant, "hops": float(hops),
                    "mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n})  # fmt: skip
    return pd.DataFrame(out, columns=["slice", "model", "variant", "hops", "mean", "lo", "hi", "n"])


def panel_names(rows: pd.DataFrame) -> pd.Series:
    """A panel per slice, except that the rows of a study over several needed k (the criteria
    and limits profiles: no budget) on one ground-truth dataset and device share one, the
    trainability panel; a study of one k (the cpu profile, whose budget the report computes)
    keeps its slice's panel."""
    several = rows.groupby("study")["needed"].transform("nunique") > 1
    pooled = several & rows["memory_cap_bytes"].isna() & rows["needed"].notna()
    name = rows["dataset"] + ", tasks of several k · " + rows["device_name"].map(device_short)
    return name.where(pooled, rows["slice"])


def accuracy_figure(
    rows: pd.DataFrame, fig: FigureSpec, out_dir: pathlib.Path
) -> list[pathlib.Path]:
    """Test score (mean, 95% t-interval) vs receptive field in hops per arch, one panel per
    slice; an x above the panel and a dashed line at each arch's first OOM; a grey band at the
    hops the task needs."""
    rows = with_hops(look.prepare(rows))
    points = depth_intervals(rows)
    if points.empty:
        return []
    rows["panel"] = panel_names(rows)
    names = sorted(rows["panel"].unique())
    f, axes = look.panels(len(names), 3, 6.0, 5.6)
    drawn: dict[str, bool] = {}
    for ax, name in zip(axes, names, strict=True):
        part = rows[rows["panel"] == name]
        if part["needed"].nunique() > 1:  # tasks of several k: the trainability panel
            drawn["limits"] = True
            _limits_panel(ax, part)
        else:
            drawn["oom"] = _panel(ax, part, depth_intervals(part)) or drawn.get("oom", False)
            drawn["needed"] = drawn.get("needed", False) or needed_depth(part) is not None
    f.suptitle(fig.title, fontsize=12)
    look.caption(f, [
        look.interval_note(points["n"]), HOPS_NOTE,
        "x above a panel and dashed line: the fewest hops at which that arch is out of the "
        "memory budget (legend): under a cap it ran out; under a budget computed from the run, "
        "its measured peak exceeds the budget (the point is drawn, but does not fit)."
        if drawn.get("oom") else "",
        "Grey band: the hops the task needs (a ground-truth task; a real graph has none)."
        if drawn.get("needed") else "",
        "Panel over several tasks (no budget): score against the hops k each task needs, per arch "
        "at a receptive field near k (dotted: short of k; dashed grey: chance)."
        if drawn.get("limits") else "",
        look.SCORE_NOTE,
    ])  # fmt: skip
    return look.save(f, out_dir, fig.stem)


def _panel(ax: plt.Axes, part: pd.DataFrame, points: pd.DataFrame) -> bool:
    """One budgeted slice; True when an OOM boundary was drawn."""
    keys = look.series_keys(points)
    styles = look.looks(keys)
    handles = []
    for i, (model, variant) in enumerate(keys):
        p = points[(points["model"] == model) & (points["variant"] == variant)]
        pts = p.rename(columns={"hops": "x"})
        dodge = 1 + 0.025 * (i - (len(keys) - 1) / 2)  # bars at one x stand apart
        handles.append(look.draw_series(ax, pts, styles[(model, variant)],
                                        look.series_label(model, variant), dodge=dodge))  # fmt: skip
    look.depth_axis(ax, part["hops"].dropna())
    budget = panel_budget(part)
    marks = []
    for label, hops, color in _over_budget(part, budget):
        ax.axvline(hops, ls="--", lw=1.2, color=color, alpha=0.8)
        marks.append((hops, color))
        handles.append(look.oom_handle(color, f"{label}: out of budget from {fmt_num(hops)} hops"))
    look.oom_marks(ax, marks)
    k = needed_depth(part)
    if k is not None:
        ax.axvspan(k * 0.97, k * 1.03, color="0.85", zorder=0)
        handles.append(Patch(color="0.85", label=f"hops the task needs: {k}"))
    look.score_limits(ax, *look.data_range(points))
    metric = part["metric"].dropna()
    ax.set_ylabel(f"test {metric.iloc[0] if len(metric) else 'score'} at best valid epoch")
    ax.set_xlabel("receptive field (message-passing hops)")
    title = budget.text() if budget is not None else "no memory budget"
    ax.set_title(textwrap.fill(f"{part['slice'].iloc[0]}, {title}", 70), fontsize=9,
                 pad=look.OOM_PAD if marks else 6)  # fmt: skip
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.14), fontsize=8,
              frameon=False, ncol=2)  # fmt: skip
    return bool(marks)


def _over_budget(part: pd.DataFrame, budget: Budget | None) -> list[tuple[str, float, str]]:
    """(label, fewest hops out of the budget, colour) per arch: under a cap, its first OOM; under
    a budget computed after the run, per series its first depth whose measured peaks exceed it
    (drawn, but not affordable within the budget)."""
    if budget is None or budget.capped:
        oom = part[(part["status"] == "oom") & part["hops"].notna()]
        return [(str(model), float(group["hops"].min()), look.PALETTE.get(model, "black"))
                for model, group in oom.groupby("model", sort=True)]  # fmt: skip
    out = []
    for (model, variant), group in part[part["hops"].notna()].groupby(["model", "variant"]):
        fits = budget.fitting(group)
        if not fits.all():
            out.append((look.series_label(model, variant), float(fits.index[~fits].min()),
                        look.PALETTE.get(model, "black")))  # fmt: skip
    return out


def _limits_panel(ax: plt.Axes, part: pd.DataFrame) -> None:
    """Slices over tasks of several needed hops k (the criteria and limits profiles): test score
    against k, one line per arch and receptive field relative to k ("k hops", "k - 1 hops")."""
    ok = part[(part["status"] == "ok") & part["score"].notna() & part["needed"].notna()].copy()
    ok["offset"] = (ok["hops"] - ok["needed"]).astype(int)
    order = {m: i for i, m in enumerate(look.MODEL_ORDER)}
    groups = sorted(ok.groupby(["model", "offset"]).groups,
                    key=lambda mo: (order.get(mo[0], 99), mo[1]))  # fmt: skip
    for i, (model, offset) in enumerate(groups):
        g = ok[(ok["model"] == model) & (ok["offset"] == offset)]
        pts = look.interval_points(g, "needed", "score")
        reach = "k hops" if offset == 0 else f"k {'+' if offset > 0 else '-'} {abs(offset)} hops"
        style = look.Look(look.PALETTE.get(model, "black"), look.MARKERS[i % len(look.MARKERS)],
                          "-" if offset >= 0 else ":")  # fmt: skip
        look.draw_series(ax, pts, style, f"{model}, {reach}",
                         dodge=1 + 0.02 * (i - (len(groups) - 1) / 2))  # fmt: skip
    look.depth_axis(ax, ok["needed"])
    ax.axhline(0.5, color="0.6", lw=1, ls="--", zorder=0)
    handles = [*ax.get_legend_handles_labels()[0],
               Line2D([], [], color="0.6", ls="--", label="chance")]  # fmt: skip
    look.score_limits(ax, float(ok["score"].min()), float(ok["score"].max()))
    ax.set_ylabel("test rocauc at best valid epoch")
    ax.set_xlabel("hops the task needs (k); each arch with a receptive field near k")
    ax.set_title(look.wrap(f"{part['panel'].iloc[0]}, {budget_text(part)}"), fontsize=9)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.14),
              frameon=False, ncol=2)  # fmt: skip
