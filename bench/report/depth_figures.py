"""Memory against depth: figures 2-5 (one panel per slice, every architecture of the figure)
and figure 9 (one column per convolution, memory and score, ResGNN against RevGNN).

What a reader needs to check a "flat in depth" claim is drawn, not promised: the depths on a log
axis (1 to 1001 on a linear one squash 1-64 into a sliver), every line's least-squares slope in
the legend (outside the data), and the part of the slope the model's gradients explain (4 bytes
a parameter; a reversible model's parameters grow with depth, so its step memory rises by
exactly that while its activations stay flat)."""

from __future__ import annotations

import pathlib

import matplotlib.pyplot as plt
import pandas as pd

from bench.exports.table import CONFIG_COLUMNS
from bench.models import archs
from bench.report import figures as look
from bench.report.aggregate import depth_means, linear_fit
from bench.report.fmt import fmt_bytes
from bench.report.load import GRAD_BYTES_PER_PARAM, as_key, variant_labels, varying_columns
from bench.report.select import FigureSpec

MIN_FIT_DEPTHS = 3  # a line through fewer points is no evidence of a slope
PER_PANEL = (*look.VARIANT_EXCLUDE, "conv", "heads")  # what a figure-9 panel's place says
CONV_NAMES = {"gen": "GENConv", "gat": "GAT", "sage": "GraphSAGE", "gcn": "GCN"}


def _depth_unit(model: str) -> str:
    iterated = {archs.get(a).display for a in archs.names(depth_unit="iteration")}
    return "iteration" if model in iterated else "layer"


def slope_text(series: pd.DataFrame, column: str, model: str) -> str:
    """': +3.68 KiB/layer (gradients +3.62 KiB)': the least-squares slope of the per-depth means
    (3 or more depths) and, where parameters grow with depth, what their gradients add."""
    means = depth_means(series, column)
    fit = linear_fit(means.index.to_numpy(), means.to_numpy())
    if fit is None or fit.n < MIN_FIT_DEPTHS:
        return ""
    unit = _depth_unit(model)
    text = f": {fmt_bytes(fit.slope, signed=True)}/{unit}"
    params = depth_means(series, "params")
    grown = linear_fit(params.index.to_numpy(), params.to_numpy())
    if grown is not None and grown.slope * GRAD_BYTES_PER_PARAM >= 1:
        text += f" (gradients {fmt_bytes(grown.slope * GRAD_BYTES_PER_PARAM, signed=True)})"
    return text


def _cap_line(ax: plt.Axes, rows: pd.DataFrame, scale: float, column: str) -> bool:
    """The memory budget (``memory_cap_bytes``), drawn only on a peak axis (the cap bounds the
    whole peak, not what a step adds) and when it fits the axis. True when drawn."""
    caps = rows["memory_cap_bytes"].dropna().unique()
    if column != "peak_memory_bytes" or len(caps) != 1 or caps[0] / scale > 3 * ax.get_ylim()[1]:
        return False
    ax.set_ylim(top=max(ax.get_ylim()[1], caps[0] / scale * 1.15))
    ax.axhline(caps[0] / scale, ls=":", color="firebrick", lw=1.2, label="memory cap")
    return True


def _memory_panel(ax: plt.Axes, part: pd.DataFrame, column: str, x_label: str) -> dict:
    """One slice: a line per series with its slope in the legend, OOM marks above. Returns
    what was drawn (seed counts, OOM, gradient notes, cap) for the caption."""
    ok = part[(part["status"] == "ok") & part[column].notna()]
    unit, scale = look.memory_scale(ok[column])
    keys = look.series_keys(ok)
    styles = look.looks(keys)
    handles, ns = [], []
    for model, variant in keys:
        series = ok[(ok["model"] == model) & (ok["variant"] == variant)]
        pts = look.interval_points(series, "depth", column)
        ns += pts["n"].tolist()
        label = look.series_label(model, variant) + slope_text(series, column, model)
        handles.append(look.draw_series(ax, pts, styles[(model, variant)], label, scale))
    oom = part[part["status"] == "oom"]
    marks = []
    for (model, variant), g in oom.groupby(["model", "variant"], sort=True):
        depth, color = float(g["depth"].min()), look.PALETTE.get(model, "0.2")
        marks.append((depth, color))
        name = look.series_label(model, variant)
        handles.append(look.oom_handle(color, f"{name}: out of memory from {depth:g}"))
    look.oom_marks(ax, marks)
    look.depth_axis(ax, part["depth"])
    ax.set_ylim(bottom=0)
    cap = _cap_line(ax, part, scale, column)
    ax.set_xlabel(x_label)
    ax.set_ylabel(look.memory_label(column, unit))
    ax.set_title(part["slice"].iloc[0], fontsize=10, pad=look.OOM_PAD if marks else 6)
    sloped = any(": " in h.get_label() and "/" in h.get_label() for h in handles)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.17), fontsize=8,
              frameon=False, title="least-squares slope over depth" if sloped else None,
              title_fontsize=8)  # fmt: skip
    grads = any("gradients" in h.get_label() for h in handles)
    return {"ns": ns, "oom": bool(marks), "grads": grads, "cap": cap}


def memory_vs_depth(rows: pd.DataFrame, fig: FigureSpec, out_dir: pathlib.Path,
                    x_label: str = "layers") -> list[pathlib.Path]:  # fmt: skip
    """Step memory vs depth per series, one panel per slice (figures 2-5)."""
    rows = look.prepare(rows)
    column = look.step_memory(rows)
    if rows[(rows["status"] == "ok") & rows[column].notna()].empty:
        return []
    slices = sorted(rows["slice"].unique())
    f, axes = look.panels(len(slices), 2, 6.2, 5.6)
    drawn = [_memory_panel(ax, rows[rows["slice"] == s], column, x_label)
             for ax, s in zip(axes, slices, strict=True)]  # fmt: skip
    f.suptitle(fig.title, fontsize=12)
    look.caption(f, [
        look.interval_note(n for d in drawn for n in d["ns"]),
        look.STEP_NOTE if column == "step_added_bytes" else "",
        "Depth on a log scale where it spans 8x or more: there, memory that grows linearly in "
        "depth curves upward.",
        "Legend: each line's least-squares slope through its per-depth means (3 or more "
        "depths).",
        "In brackets, what the model's gradients add per layer (4 bytes a parameter, and its "
        "parameters grow with depth): a reversible model's step memory rises by that while its "
        "activations stay flat." if any(d["grads"] for d in drawn) else "",
        look.OOM_NOTE if any(d["oom"] for d in drawn) else "",
        "Dotted red: the memory cap a trial runs out of memory above." if any(
            d["cap"] for d in drawn) else "",
    ])  # fmt: skip
    return look.save(f, out_dir, fig.stem)


def _conv_names(rows: pd.DataFrame) -> pd.Series:
    names = rows["conv"].map(lambda c: CONV_NAMES.get(str(c), str(c)))
    heads = rows["heads"].where(rows["conv"] == "gat")
    return names.where(heads.isna(), names + heads.map(lambda h: f" ({h:g} heads)"))


def group_words(rows: pd.DataFrame, by: str, settings: list[str]) -> dict[str, str]:
    """Per value of ``by``: the ``settings`` fixed within it, in the reader's words (a setting
    that follows from another, as training parts from batching, left out)."""
    fixed = [c for c in settings
             if rows.groupby(by)[c].agg(lambda v: as_key(v).nunique()).max() == 1]  # fmt: skip
    reps = rows.drop_duplicates(by).assign(arch="-")
    labels = variant_labels(reps, exclude=tuple(c for c in CONFIG_COLUMNS if c not in fixed))
    return dict(zip(reps[by], labels, strict=True))


def memory_vs_depth_per_conv(rows: pd.DataFrame, fig: FigureSpec,
                             out_dir: pathlib.Path) -> list[pathlib.Path]:  # fmt: skip
    """Figure 9: a column per convolution and, for each slice, a row of step memory and a row
    of test score against depth, ResGNN against RevGNN. Settings fixed per convolution (its
    aggregation) title its column, those fixed per slice (batching) title its rows, so the
    legend names models only. Why a figure of its own: the claim is "flat for *every* conv"."""
    rows = look.prepare(rows.assign(conv_name=_conv_names(rows)), exclude=PER_PANEL)
    column = look.step_memory(rows)
    ok = rows[(rows["status"] == "ok") & rows[column].notna()]
    if ok.empty:
        return []
    settings = varying_columns(rows, exclude=PER_PANEL)
    conv_words, slice_words = (group_words(rows, "conv_name", settings),
                               group_words(rows, "slice", settings))  # fmt: skip
    convs = [
        n for c in CONV_NAMES.values() for n in sorted(set(ok["conv_name"])) if n.startswith(c)
    ]
    slices = sorted(ok["slice"].unique())
    f = plt.figure(figsize=(3.7 * len(convs), 5.9 * len(slices) + 0.6), layout="constrained")
    subs = f.subfigures(len(slices), 1, squeeze=False)[:, 0]
    unit, scale = look.memory_scale(ok[column])
    metric = str(ok["metric"].dropna().iloc[0]) if ok["metric"].notna().any() else "score"
    ns, oom_drawn, handles = [], False, {}
    for sub, slice_ in zip(subs, slices, strict=True):
        axes = sub.subplots(2, len(convs), squeeze=False, sharex=True)
        words = slice_words.get(slice_, "")
        sub.suptitle(f"{slice_}" + (f" · {words}" if words else ""), fontsize=10)
        for j, conv in enumerate(convs):
            part = rows[(rows["slice"] == slice_) & (rows["conv_name"] == conv)]
            part = part.assign(variant=variant_labels(part, exclude=PER_PANEL))
            for r, (y, yscale) in enumerate(((column, scale), ("score", 1.0))):
                ax = axes[r, j]
                drawn = _conv_panel(ax, part, y, yscale, handles)
                ns += drawn["ns"]
                oom_drawn |= drawn["oom"]
                look.depth_axis(ax, rows["depth"])
                ax.set_xlabel("layers" if r == 1 else "")
                ax.set_ylabel(look.memory_label(column, unit) if r == 0 else
                              f"test {metric} at best valid")  # fmt: skip
            axes[0, j].set_ylim(bottom=0)
            cw = conv_words.get(conv, "")
            axes[0, j].set_title(f"{conv}" + (f"\n{cw}" if cw else ""), fontsize=9)
    f.legend(handles=list(handles.values()), loc="outside lower center",
             ncol=max(1, len(handles)), fontsize=9, frameon=False)  # fmt: skip
    f.suptitle(fig.title, fontsize=12)
    look.caption(f, [look.interval_note(ns), look.STEP_NOTE, "Depth on a log scale.",
                     look.SCORE_NOTE, look.OOM_NOTE if oom_drawn else ""])  # fmt: skip
    return look.save(f, out_dir, fig.stem)


def _conv_panel(ax: plt.Axes, part: pd.DataFrame, y: str, scale: float, handles: dict) -> dict:
    """One convolution on one slice: a line per model (and variant, should one differ)."""
    ok = part[(part["status"] == "ok") & part[y].notna()]
    keys = look.series_keys(ok)
    styles = look.looks(keys)
    ns, lo, hi = [], [], []
    for model, variant in keys:
        pts = look.interval_points(ok[(ok["model"] == model) & (ok["variant"] == variant)],
                                   "depth", y)  # fmt: skip
        ns += pts["n"].tolist()
        lo_hi = look.data_range(pts)
        lo, hi = [*lo, lo_hi[0]], [*hi, lo_hi[1]]
        label = look.series_label(model, variant)
        handles[label] = look.draw_series(ax, pts, styles[(model, variant)], label, scale)
    if y == "score" and lo:
        look.score_limits(ax, min(lo), max(hi))
    marks = []
    if y != "score":
        for model, g in part[part["status"] == "oom"].groupby("model", sort=True):
            color = look.PALETTE.get(model, "0.2")
            marks.append((float(g["depth"].min()), color))
            handles[f"{model} OOM"] = look.oom_handle(color, f"{model}: out of memory there")
        look.oom_marks(ax, marks)
    return {"ns": ns, "oom": bool(marks)}
