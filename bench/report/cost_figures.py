"""What memory savings cost and what they are traded for: parameters, memory and score against
the group count (groups figure), step time against depth (step-time figure) and the tuner's
Pareto front of score against cost."""

from __future__ import annotations

import pathlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, FixedLocator, NullFormatter

from bench.report import figures as look
from bench.report.claims.step_time import TIME_RATIO
from bench.report.fmt import byte_unit
from bench.report.select import FigureSpec

RELATIVE = "step time relative to ResGNN (×)"


def _seed_dots(ax: plt.Axes, rows: pd.DataFrame, x: str, y: str, style: look.Look,
               scale: float) -> None:  # fmt: skip
    """Every seed's own value, small and hollow, beside the mean line."""
    ok = rows[(rows["status"] == "ok") & rows[y].notna()]
    ax.scatter(ok[x], ok[y] / scale, s=16, marker=style.marker, facecolors="none",
               edgecolors=style.color, linewidths=0.8, zorder=4, alpha=0.8)  # fmt: skip


def groups_figure(rows: pd.DataFrame, fig: FigureSpec, out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Parameters, step memory and score against the group count, a row per slice. No
    intervals: with the seeds these ablations ran (one or two) a t-interval says nothing (t with
    1 degree of freedom is 12.7); every seed is drawn instead, the line through their mean."""
    rows = look.prepare(rows, exclude=("arch", "groups", "dataset", "device"))
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return []
    column = look.step_memory(rows)
    metric = ok["metric"].dropna().iloc[0] if ok["metric"].notna().any() else "score"
    slices = sorted(ok["slice"].unique())
    f, axes = plt.subplots(len(slices), 3, figsize=(13.5, 3.9 * len(slices)), squeeze=False,
                           layout="constrained")  # fmt: skip
    seeds = []
    for i, slice_ in enumerate(slices):
        part = ok[ok["slice"] == slice_]
        unit, scale = look.memory_scale(part[column])
        seeds.append(f"{part.groupby('config_id')['seed'].nunique().max()} on {slice_}")
        keys = look.series_keys(part)
        styles = look.looks(keys)
        quantities = (("params", 1.0, "parameters"), (column, scale, look.memory_label(column, unit)),
                      ("score", 1.0, f"test {metric}"))  # fmt: skip
        for ax, (y, yscale, label) in zip(axes[i], quantities, strict=True):
            for key in keys:
                series = part[(part["model"] == key[0]) & (part["variant"] == key[1])]
                pts = look.interval_points(series, "groups", y).assign(n=1)  # no bars
                look.draw_series(ax, pts, styles[key], look.series_label(*key), yscale)
                _seed_dots(ax, series, "groups", y, styles[key], yscale)
            if y == "score":
                seeds_drawn = part.assign(mean=part["score"], lo=np.nan, hi=np.nan)
                look.score_limits(ax, *look.data_range(seeds_drawn))
            if y == "params":
                ax.yaxis.set_major_formatter(EngFormatter())
                _ideal_params(ax, part)
            ax.xaxis.set_major_locator(FixedLocator(sorted(ok["groups"].unique())))
            ax.set(xlabel="groups", ylabel=label)
            ax.set_title(f"{label}\n{slice_}", fontsize=9)
        ideal = Line2D([], [], ls=":", color="0.4", label="parameters if divided exactly by G")
        handles = [*axes[i][0].get_legend_handles_labels()[0], ideal]
        axes[i][2].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                          fontsize=8, frameon=False)  # fmt: skip
    f.suptitle(fig.title, fontsize=12)
    look.caption(f, ["Lines: mean over seeds of ok trials; hollow marks: each seed. Seeds per "
                     f"configuration: {'; '.join(seeds)}. No interval is drawn: parameters do not "
                     "vary between seeds, and one or two seeds give no useful t-interval.",
                     "Dotted grey: the parameters if grouping divided them exactly by G (from "
                     "the smallest G).", look.STEP_NOTE if column == "step_added_bytes" else "",
                     look.SCORE_NOTE])  # fmt: skip
    return look.save(f, out_dir, fig.stem)


def _ideal_params(ax: plt.Axes, ok: pd.DataFrame) -> None:
    for _, series in ok.groupby(["model", "variant"], sort=True):
        means = series.groupby("groups")["params"].mean().sort_index()
        if len(means) >= 2:
            g0 = means.index[0]
            xs = np.array(sorted(means.index), dtype=float)
            ax.plot(xs, means.iloc[0] * g0 / xs, ls=":", color="0.4", lw=1.2)


def step_time_figure(rows: pd.DataFrame, fig: FigureSpec,
                     out_dir: pathlib.Path) -> list[pathlib.Path]:  # fmt: skip
    """Step time vs depth per arch, and each arch's time relative to ResGNN at the same depth,
    with the rev-time claim's threshold (the line its verdict is read against)."""
    rows = look.prepare(rows)
    ok = rows[(rows["status"] == "ok") & rows["step_time_s"].notna()]
    if ok.empty:
        return []
    ok = ok.assign(relative=_relative_time(ok))
    slices = sorted(ok["slice"].unique())
    f, axes = plt.subplots(len(slices), 2, figsize=(11.5, 4.0 * len(slices)), squeeze=False,
                           layout="constrained")  # fmt: skip
    ns = []
    for i, slice_ in enumerate(slices):
        part = ok[ok["slice"] == slice_]
        keys = look.series_keys(part)
        styles = look.looks(keys)
        for ax, y in zip(axes[i], ("step_time_s", "relative"), strict=True):
            for key in keys:
                series = part[(part["model"] == key[0]) & (part["variant"] == key[1])]
                pts = look.interval_points(series, "depth", y)
                ns += pts["n"].tolist()
                look.draw_series(ax, pts, styles[key], look.series_label(*key))
            look.depth_axis(ax, part["depth"])
            ax.set_xlabel("layers")
            ax.set_title(f"{'step time (s)' if y == 'step_time_s' else RELATIVE}\n{slice_}",
                         fontsize=9)  # fmt: skip
        axes[i][0].set_ylabel("step time (s)")
        if part["step_time_s"].max() / max(part["step_time_s"].min(), 1e-12) >= 10:
            axes[i][0].set_yscale("log")
            axes[i][0].yaxis.set_major_formatter(look.PLAIN)
            axes[i][0].yaxis.set_minor_formatter(NullFormatter())
        axes[i][1].set_ylabel(RELATIVE)
        axes[i][1].axhline(TIME_RATIO, ls=":", color="firebrick", lw=1.2,
                           label=f"rev-time threshold {TIME_RATIO:g}×")  # fmt: skip
        axes[i][1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    f.suptitle(fig.title, fontsize=12)
    look.caption(f, [look.interval_note(ns), "Step: one optimiser step (forward + backward) after "
                     "warm-up. Relative: each model's mean over ResGNN's at the same depth. Dotted "
                     f"red: {TIME_RATIO:g}×, the threshold the rev-time verdict reads (the design "
                     "target 4/3 plus 12.5%)."])  # fmt: skip
    return look.save(f, out_dir, fig.stem)


def _relative_time(ok: pd.DataFrame) -> pd.Series:
    """Step time / ResGNN's mean at the same slice, variant and depth (NaN without one)."""
    res = ok[ok["arch"] == "res"].groupby(["slice", "variant", "depth"])["step_time_s"].mean()
    keys = list(zip(ok["slice"], ok["variant"], ok["depth"], strict=True))
    base = pd.Series([res.get(k, np.nan) for k in keys], index=ok.index)
    return ok["step_time_s"] / base


def cost_axis(column: str, values: pd.Series) -> tuple[str, float]:
    """Axis label and divisor for a tuning cost: bytes in binary units, seconds, or a count."""
    if column.endswith("bytes"):
        unit, scale = byte_unit(float(values.max()))
        return f"peak memory ({unit})", scale
    if column.endswith("_s"):
        return column.removesuffix("_s").replace("_", " ") + " (s)", 1.0
    return column.replace("_", " "), 1.0


def pareto_figure(rows: pd.DataFrame, fig: FigureSpec, out_dir: pathlib.Path,
                  cost_col: str, score_col: str) -> list[pathlib.Path]:  # fmt: skip
    """Every tuning trial (grey) and the Pareto front (coloured, joined) per slice."""
    rows = look.prepare(rows)
    slices = sorted(rows["slice"].unique())
    f, axes = look.panels(len(slices), len(slices), 6.5, 4.8)
    score_words = score_col.replace("_", " ")
    for ax, slice_ in zip(axes, slices, strict=True):
        part = rows[rows["slice"] == slice_]
        label, scale = cost_axis(cost_col, part[cost_col])
        front = part[part["pareto"]].sort_values(cost_col)
        ax.scatter(part[cost_col] / scale, part[score_col], color="0.7", s=25, label="all trials")
        ax.step(front[cost_col] / scale, front[score_col], where="post", color="0.3", lw=1)
        for model, g in front.groupby("model", sort=True):
            ax.scatter(g[cost_col] / scale, g[score_col], s=80, color=look.PALETTE.get(model, "0.2"),
                       label=f"{model} on the front", zorder=3)  # fmt: skip
        ax.set(xlabel=label, ylabel=score_words)
        ax.set_title(slice_, fontsize=9)
        ax.legend(fontsize=8)
    cost_words = cost_axis(cost_col, rows[cost_col])[0].split(" (")[0]
    f.suptitle(f"Tuning: Pareto front of {score_words} vs {cost_words}", fontsize=12)
    look.caption(f, ["Grey: every completed tuning trial. Coloured and joined: the Pareto front "
                     f"(no other trial has both a higher {score_words} and a lower {cost_words})."])  # fmt: skip
    return look.save(f, out_dir, fig.stem)
