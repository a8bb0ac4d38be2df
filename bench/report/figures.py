"""The report's figures (seaborn on matplotlib's Agg backend), PNG and SVG.

Every panel holds one measurement slice (profile, dataset, device, meter): numbers from
different devices are never drawn on one axis. Points are means over seeds of ok trials with
±1 std bars; a configuration that ran out of memory is an ``x`` at the top of the axis at the
depth where it failed, labelled OOM."""

from __future__ import annotations

import pathlib
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.transforms as mtransforms  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    EngFormatter,
    FixedLocator,
    FuncFormatter,
    NullFormatter,
    NullLocator,
    ScalarFormatter,
)  # noqa: E402

from bench import paper  # noqa: E402
from bench.config import ARCHS  # noqa: E402
from bench.report.aggregate import linear_fit  # noqa: E402
from bench.report.fmt import byte_unit, fmt_bytes  # noqa: E402
from bench.report.load import variant_labels  # noqa: E402
from bench.report.select import FigureSpec  # noqa: E402

MODEL_NAMES = {"res": "ResGNN", "rev": "RevGNN", "wt-res": "WT-ResGNN", "wt-rev": "WT-RevGNN",
               "deq": "DEQ-GNN", "ckpt": "ResGNN (checkpointed)"}  # fmt: skip
MODEL_ORDER = [MODEL_NAMES[a] for a in ARCHS]
_CB = sns.color_palette("colorblind")
# Distinct hues per family: blue/orange for res/rev, green/pink when tied, purple for DEQ.
PALETTE = dict(zip(MODEL_ORDER, [_CB[0], _CB[1], _CB[2], _CB[4], "#6a3d9a", _CB[7]], strict=True))
VARIANT_EXCLUDE = ("arch", "layers", "deq_max_iter", "dataset", "device")
RC = {"svg.hashsalt": "bench-report", "svg.fonttype": "path", "figure.dpi": 100}
LABEL_OFFSETS = ((6, 4), (6, -11), (-6, 4), (-6, -11))
PLAIN = FuncFormatter(lambda v, _: f"{v:g}")
# minor ticks of a log axis: label only 2x and 5x a power of ten (every one crowds the axis)
SPARSE = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}".lstrip("0.")[:1] in ("2", "5") else "")
BELOW_AXIS_PT = 48  # slope boxes start this far under an axis (below ticks and x label)
ERR_NOTE = "Points: mean over seeds of ok trials; bars: ±1 std (ddof=1)."


def style() -> None:
    """One look for every figure (called once per report)."""
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.15, rc=RC)


def save(fig: plt.Figure, out_dir: pathlib.Path, stem: str) -> list[pathlib.Path]:
    """PNG and SVG without dates (SVG ids salted), so equal data give equal files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    fig.savefig(png, dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return [png, svg]


def _prepare(rows: pd.DataFrame) -> pd.DataFrame:
    """Model display names and a variant label (config columns that differ besides the arch)."""
    rows = rows.copy()
    rows["model"] = rows["arch"].map(MODEL_NAMES).fillna(rows["arch"])
    rows["variant"] = variant_labels(rows, exclude=VARIANT_EXCLUDE)
    return rows


def _hue_order(rows: pd.DataFrame) -> list[str]:
    return [m for m in MODEL_ORDER if m in set(rows["model"])]


def _log_x(ax: plt.Axes, values: list[float]) -> None:
    """Log2 x when depths span >= 8x (ticks at the depths used), else linear."""
    values = sorted({float(v) for v in values if np.isfinite(v)})
    if values and values[0] > 0 and values[-1] / values[0] >= 8:
        ax.set_xscale("log", base=2)
        lo, hi = values[0] / 1.4, values[-1] * 1.4
        ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(
        FixedLocator(values if len(values) <= 12 else values[:: len(values) // 8 + 1])
    )
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())


def _mark_oom(ax: plt.Axes, oom: pd.DataFrame) -> None:
    """An x at the top of the axis at each depth where a configuration ran out of memory."""
    blend = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    for (model, depth), _ in oom.groupby(["model", "depth"], sort=True):
        color = PALETTE.get(model, "black")
        ax.scatter([depth], [0.96], marker="x", s=80, linewidths=2.5, color=color, transform=blend,
                   clip_on=False, zorder=6)  # fmt: skip
        ax.annotate(f"{model}\nOOM", (depth, 0.96), xycoords=blend, xytext=(0, -9),
                    textcoords="offset points", ha="center", va="top", fontsize=7.5, color=color,
                    fontweight="bold")  # fmt: skip


def _cap_line(ax: plt.Axes, rows: pd.DataFrame, scale: float) -> None:
    """The memory budget a trial OOMs above (``memory_cap_bytes``), when it fits the axis."""
    caps = rows["memory_cap_bytes"].dropna().unique()
    top = ax.get_ylim()[1]
    if len(caps) == 1 and caps[0] / scale <= 3 * top:
        ax.set_ylim(top=max(top, caps[0] / scale * 1.15))
        ax.axhline(caps[0] / scale, ls=":", color="firebrick", lw=1.2)
        ax.annotate("memory cap (OOM above)", (0.01, caps[0] / scale), xycoords=("axes fraction", "data"),
                    xytext=(0, 3), textcoords="offset points", fontsize=7.5, color="firebrick")  # fmt: skip


def _fit_lines(ax: plt.Axes, ok: pd.DataFrame, column: str, scale: float, x_unit: str) -> int:
    """Least-squares line per series, drawn dashed; slopes written in a box under the axis.
    Returns the number of text lines in the box (the layout reserves room for them)."""
    lines = []
    for (model, variant), series in ok.groupby(["model", "variant"], sort=True):
        means = series.groupby("depth")[column].mean()
        fit = linear_fit(means.index.to_numpy(), means.to_numpy())
        if fit is None:
            continue
        xs = np.linspace(means.index.min(), means.index.max(), 200)
        ax.plot(xs, fit(xs) / scale, ls="--", lw=1, color=PALETTE.get(model, "black"), alpha=0.7)
        name = f"{model} [{variant}]" if variant else model
        lines.append(f"{name}: {fmt_bytes(fit.slope, signed=True)}/{x_unit}")
    if lines:
        ax.annotate("fitted slopes:\n" + "\n".join(lines), (0, 0), xycoords="axes fraction",
                    xytext=(0, -BELOW_AXIS_PT), textcoords="offset points", va="top", ha="left",
                    fontsize=8, bbox={"boxstyle": "round", "fc": "white", "ec": "0.8"})  # fmt: skip
        return len(lines) + 1
    return 0


def _style(long: pd.DataFrame) -> str:
    """Line style by variant when configs differ besides the arch, else by model (markers)."""
    return "variant" if (long["variant"] != "").any() else "model"


def _wrap(label: str) -> str:
    """Slice labels are long: put the device and meter on their own line in panel titles."""
    return re.sub(r" · ((?:cpu|cuda) \()", r"\n\1", label).replace(") [", ")\n[")


def _caption(fig: plt.Figure, text: str) -> None:
    fig.text(0.01, 0.01, text, fontsize=8, ha="left", va="bottom")


def _slice_titles(g: sns.FacetGrid, many: bool, title: str, only_slice: str, caption: str,
                  box_lines: int = 0) -> None:  # fmt: skip
    """Titles, caption, and room under each row of panels for its slope box (if any)."""
    g.set_titles("{col_name}\n{row_name}" if many else "{col_name}", size=10)
    for ax in g.axes.flat:
        ax.set_title(_wrap(ax.get_title()), size=10)
    title_lines = max(ax.get_title().count("\n") + 1 for ax in g.axes.flat)
    title_in = title_lines * 14 / 72 + 0.1  # 10 pt titles, ~14 pt a line
    g.figure.suptitle(title if many else f"{title}\n{only_slice}", fontsize=12)
    rows = g.axes.shape[0]
    box_in = (box_lines * 11 + 10) / 72 if box_lines else 0.0
    under_in = (BELOW_AXIS_PT / 72 + box_in) if box_lines else 0.6  # ticks + x label (+ box)
    top_in, caption_in, axes_in = 0.5 + title_in, 0.3, g.axes[0, 0].get_position().height
    axes_in *= g.figure.get_figheight()
    gap_in = title_in  # between rows: room for the next row's titles
    height = top_in + rows * axes_in + rows * under_in + (rows - 1) * gap_in + caption_in
    g.figure.set_figheight(height)
    g.figure.subplots_adjust(top=1 - top_in / height, bottom=(under_in + caption_in) / height,
                             hspace=(under_in + gap_in) / axes_in)  # fmt: skip
    _caption(g.figure, caption)


def memory_vs_depth(rows: pd.DataFrame, fig: FigureSpec, out_dir: pathlib.Path,
                    x_label: str = "layers") -> list[pathlib.Path]:  # fmt: skip
    """Peak and activation memory vs depth per arch, with fits and OOM marks (figures 2-5)."""
    rows = _prepare(rows)
    ok = rows[(rows["status"] == "ok") & rows["peak_memory_bytes"].notna()]
    if ok.empty:
        return []
    unit, scale = byte_unit(float(ok["peak_memory_bytes"].max()))
    quantities = {"peak_memory_bytes": f"peak memory ({unit})",
                  "activation_bytes": f"activation memory = step adds - gradients ({unit})"}  # fmt: skip
    long = ok.melt(id_vars=["slice", "model", "variant", "depth"], value_vars=list(quantities),
                   var_name="column", value_name="bytes")  # fmt: skip
    long["quantity"] = long["column"].map(quantities)
    long["value"] = long["bytes"] / scale
    g = sns.relplot(
        data=long, x="depth", y="value", hue="model", hue_order=_hue_order(rows), palette=PALETTE,
        style=_style(long), col="quantity", col_order=list(quantities.values()),
        row="slice", kind="line", markers=True, dashes=False, errorbar="sd", err_style="bars",
        height=3.6, aspect=1.35, facet_kws={"sharey": "row", "sharex": True},
    )  # fmt: skip
    box_lines = 0
    for (slice_, quantity), ax in g.axes_dict.items():
        column = next(c for c, q in quantities.items() if q == quantity)
        box_lines = max(
            box_lines, _fit_lines(ax, ok[ok["slice"] == slice_], column, scale, "layer")
        )
        _log_x(ax, rows["depth"].tolist())
        ax.set_ylim(bottom=0)
        if quantity.startswith("peak"):
            _cap_line(ax, rows[rows["slice"] == slice_], scale)
        _mark_oom(ax, rows[(rows["slice"] == slice_) & (rows["status"] == "oom")])
        ax.set_xlabel(x_label)
        ax.set_ylabel(quantity)
    caption = (f"{ERR_NOTE} Dashed: least-squares line through the means. "
               "x at the top (OOM): out of memory at that depth.")  # fmt: skip
    _slice_titles(
        g, rows["slice"].nunique() > 1, fig.title, rows["slice"].iloc[0], caption, box_lines
    )
    return save(g.figure, out_dir, fig.stem)


def _config_means(rows: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: mean/std of score and peak over ok trials (figure 1's points)."""
    ok = rows[rows["status"] == "ok"]
    agg = ok.groupby("config_id").agg(
        slice=("slice", "first"), model=("model", "first"), channels=("channels", "first"),
        layers=("layers", "first"), score=("score", "mean"), score_std=("score", "std"),
        peak=("peak_memory_bytes", "mean"), peak_std=("peak_memory_bytes", "std"),
    )  # fmt: skip
    return agg.reset_index().sort_values(["slice", "model", "channels", "layers", "config_id"])


def _point_labels(points: pd.DataFrame) -> list[str]:
    """'64ch' (plus 'L112' when the panel mixes depths)."""
    depth = points["layers"].nunique() > 1
    return [f"{c:g}ch" + (f" L{n:g}" if depth else "")
            for c, n in zip(points["channels"], points["layers"], strict=True)]  # fmt: skip


def _oom_configs(rows: pd.DataFrame) -> pd.DataFrame:
    """Configurations with an OOM and no ok trial (figure 1 lists them)."""
    ok_ids = set(rows.loc[rows["status"] == "ok", "config_id"])
    oom = rows[(rows["status"] == "oom") & ~rows["config_id"].isin(ok_ids)]
    return oom.drop_duplicates("config_id").sort_values(["model", "channels", "layers"])


def _scatter_panel(ax: plt.Axes, points: pd.DataFrame, oom_labels: list[str], hue_order: list[str],
                   x_label: str, y_label: str, title: str) -> None:  # fmt: skip
    """Score vs memory scatter with a label per point and OOM configs listed in a corner."""
    sns.scatterplot(data=points, x="x", y="y", hue="model", hue_order=hue_order, palette=PALETTE,
                    style="model", style_order=hue_order, s=90, ax=ax, zorder=3)  # fmt: skip
    if "x_err" in points:
        ax.errorbar(points["x"], points["y"], xerr=points["x_err"].fillna(0),
                    yerr=points["y_err"].fillna(0), fmt="none", ecolor="0.5", lw=1, zorder=2)  # fmt: skip
    for i, (_, p) in enumerate(points.iterrows()):
        dx, dy = LABEL_OFFSETS[i % len(LABEL_OFFSETS)]  # alternate sides: fewer collisions
        ax.annotate(p["label"], (p["x"], p["y"]), xytext=(dx, dy), textcoords="offset points",
                    fontsize=7.5, ha="left" if dx >= 0 else "right")  # fmt: skip
    xs = points["x"][points["x"] > 0]
    if len(xs) and xs.max() / xs.min() >= 10:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(PLAIN)
        ax.xaxis.set_minor_formatter(SPARSE)
    else:
        x_label = x_label.replace(", log", "")
    if oom_labels:
        ax.text(0.98, 0.03, "out of memory (OOM):\n" + "\n".join(f"x {s}" for s in oom_labels),
                transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="firebrick",
                bbox={"boxstyle": "round", "fc": "white", "ec": "firebrick"})  # fmt: skip
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, title=None, loc="best")


def score_vs_memory(
    rows: pd.DataFrame, fig: FigureSpec, out_dir: pathlib.Path
) -> list[pathlib.Path]:
    """Figure 1: our points, one panel per (spec, slice), and the paper's beside them."""
    rows = _prepare(rows)
    rows["panel"] = rows["spec"].astype(str) + " — " + rows["slice"]
    means = _config_means(rows)
    if means.empty:
        return []
    panels = sorted(rows["panel"].unique())
    ncols = min(3, len(panels) + 1)
    nrows = -(-(len(panels) + 1) // ncols)
    f, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 5.4 * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[len(panels) + 1 :]:
        ax.set_visible(False)
    hue_order = _hue_order(rows)
    for ax, panel in zip(flat, panels, strict=False):
        part = rows[rows["panel"] == panel]
        pts = means[means["config_id"].isin(set(part["config_id"]))]
        unit, scale = byte_unit(float(pts["peak"].max()) if len(pts) else 1.0)
        pts = pts.assign(x=pts["peak"] / scale, x_err=pts["peak_std"] / scale, y=pts["score"],
                         y_err=pts["score_std"], label=_point_labels(pts))  # fmt: skip
        oom = _oom_configs(part)
        labels = [f"{m} {c:g}ch L{n:g}"
                  for m, c, n in zip(oom["model"], oom["channels"], oom["layers"], strict=True)]  # fmt: skip
        metric = part["metric"].dropna()
        y_label = f"test {metric.iloc[0] if len(metric) else 'score'} at best valid epoch"
        depths = sorted(pts["layers"].unique())
        title = _wrap(f"ours: {panel}") + (f", {depths[0]:g} layers" if len(depths) == 1 else "")
        _scatter_panel(ax, pts, labels, hue_order, f"peak memory ({unit}, log)", y_label, title)
    _paper_panel(flat[len(panels)], hue_order)
    f.suptitle(fig.title, fontsize=12)
    _caption(f, f"{ERR_NOTE} Last panel: the paper's 112-layer points (transcribed), measured on a "
             f"different device and dataset: compare the ordering, not the numbers.")  # fmt: skip
    f.tight_layout(rect=(0, 0.06, 1, 1))
    return save(f, out_dir, fig.stem)


def _paper_panel(ax: plt.Axes, hue_order: list[str]) -> None:
    pts = [p for p in paper.FIGURE1 if not p.oom]
    frame = pd.DataFrame({
        "x": [p.peak_memory_gb for p in pts], "y": [p.test_score for p in pts],
        "model": [MODEL_NAMES[p.arch] for p in pts], "label": [f"{p.channels}ch" for p in pts],
    })  # fmt: skip
    order = [m for m in MODEL_ORDER if m in set(frame["model"])]
    oom = [f"{p.label} L{p.layers}" for p in paper.FIGURE1 if p.oom]
    _scatter_panel(ax, frame, oom, order, "peak GPU memory (GB, log)", "test ROC-AUC (%)",
                   f"paper: ogbn-proteins, 112 layers, {paper.V100}")  # fmt: skip


def groups_figure(rows: pd.DataFrame, fig: FigureSpec, out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Parameters, peak memory and score vs group count; dotted: params if divided exactly by G."""
    rows = _prepare(rows)
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return []
    rows["variant"] = variant_labels(rows, exclude=("arch", "groups", "dataset", "device"))
    ok = rows[rows["status"] == "ok"]
    unit, scale = byte_unit(float(ok["peak_memory_bytes"].max()))
    metric = ok["metric"].dropna().iloc[0] if ok["metric"].notna().any() else "score"
    names = {"params": "parameters", "peak_memory_bytes": f"peak memory ({unit})",
             "score": f"test {metric}"}  # fmt: skip
    long = ok.melt(id_vars=["slice", "model", "variant", "groups"], value_vars=list(names),
                   var_name="column", value_name="value")  # fmt: skip
    long["quantity"] = long["column"].map(names)
    long.loc[long["column"] == "peak_memory_bytes", "value"] /= scale
    g = sns.relplot(
        data=long, x="groups", y="value", hue="model", hue_order=_hue_order(rows), palette=PALETTE,
        style=_style(long), col="quantity",
        col_order=list(names.values()), row="slice", kind="line", markers=True, dashes=False,
        errorbar="sd", err_style="bars", height=3.4, aspect=1.1, facet_kws={"sharey": False},
    )  # fmt: skip
    for (slice_, quantity), ax in g.axes_dict.items():
        ax.xaxis.set_major_locator(FixedLocator(sorted(ok["groups"].unique())))
        ax.set_ylabel(quantity)
        if quantity == "parameters":
            ax.yaxis.set_major_formatter(EngFormatter())
            _ideal_params(ax, ok[ok["slice"] == slice_])
    caption = (f"{ERR_NOTE} Dotted grey: parameters if grouping divided them exactly by G "
               "(from the smallest G).")  # fmt: skip
    _slice_titles(g, rows["slice"].nunique() > 1, fig.title, rows["slice"].iloc[0], caption)
    return save(g.figure, out_dir, fig.stem)


def _ideal_params(ax: plt.Axes, ok: pd.DataFrame) -> None:
    for _, series in ok.groupby(["model", "variant"], sort=True):
        means = series.groupby("groups")["params"].mean().sort_index()
        if len(means) >= 2:
            g0 = means.index[0]
            xs = np.array(sorted(means.index), dtype=float)
            ax.plot(xs, means.iloc[0] * g0 / xs, ls=":", color="0.4", lw=1.2)


def step_time_figure(
    rows: pd.DataFrame, fig: FigureSpec, out_dir: pathlib.Path
) -> list[pathlib.Path]:
    """Step time vs depth per arch, and each arch's time relative to ResGNN at the same depth."""
    rows = _prepare(rows)
    ok = rows[(rows["status"] == "ok") & rows["step_time_s"].notna()]
    if ok.empty:
        return []
    long = _with_relative_time(ok)
    g = sns.relplot(
        data=long, x="depth", y="value", hue="model", hue_order=_hue_order(rows), palette=PALETTE,
        style=_style(long), col="quantity",
        col_order=["step time (s)", "step time relative to ResGNN (×)"], row="slice", kind="line",
        markers=True, dashes=False, errorbar="sd", err_style="bars", height=3.6, aspect=1.3,
        facet_kws={"sharey": False},
    )  # fmt: skip
    for (_, quantity), ax in g.axes_dict.items():
        _log_x(ax, ok["depth"].tolist())
        ax.set_xlabel("layers (DEQ: max solver iterations)")
        ax.set_ylabel(quantity)
        if quantity.startswith("step time relative"):
            ax.axhline(paper.REV_STEP_TIME_TARGET, ls=":", color="0.4")
            ax.text(0.99, paper.REV_STEP_TIME_TARGET, " 4/3 target", transform=ax.get_yaxis_transform(),
                    ha="right", va="bottom", fontsize=8, color="0.3")  # fmt: skip
        elif ok["step_time_s"].max() / max(ok["step_time_s"].min(), 1e-12) >= 10:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(PLAIN)
            ax.yaxis.set_minor_formatter(NullFormatter())
    caption = f"{ERR_NOTE} Step: one optimiser step (forward + backward) after warm-up."
    _slice_titles(g, rows["slice"].nunique() > 1, fig.title, rows["slice"].iloc[0], caption)
    return save(g.figure, out_dir, fig.stem)


def _with_relative_time(ok: pd.DataFrame) -> pd.DataFrame:
    """Long table: absolute step time, and step time / ResGNN's mean at the same slice+depth."""
    res = ok[ok["arch"] == "res"].groupby(["slice", "variant", "depth"])["step_time_s"].mean()
    absolute = ok[["slice", "model", "variant", "depth", "step_time_s"]].rename(
        columns={"step_time_s": "value"}
    )
    absolute["quantity"] = "step time (s)"
    keys = list(zip(ok["slice"], ok["variant"], ok["depth"], strict=True))
    base = pd.Series([res.get(k, np.nan) for k in keys], index=ok.index)
    relative = absolute.assign(
        value=ok["step_time_s"] / base, quantity="step time relative to ResGNN (×)"
    )
    return pd.concat([absolute, relative.dropna(subset=["value"])], ignore_index=True)


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
    rows = _prepare(rows)
    slices = sorted(rows["slice"].unique())
    f, axes = plt.subplots(1, len(slices), figsize=(6.5 * len(slices), 4.8), squeeze=False)
    for ax, slice_ in zip(axes[0], slices, strict=True):
        part = rows[rows["slice"] == slice_]
        label, scale = cost_axis(cost_col, part[cost_col])
        front = part[part["pareto"]].sort_values(cost_col)
        ax.scatter(part[cost_col] / scale, part[score_col], color="0.7", s=25, label="all trials")
        ax.step(front[cost_col] / scale, front[score_col], where="post", color="0.3", lw=1)
        sns.scatterplot(data=front.assign(x=front[cost_col] / scale), x="x", y=score_col, hue="model",
                        hue_order=_hue_order(front), palette=PALETTE, s=90, ax=ax, zorder=3)  # fmt: skip
        ax.set_xlabel(label)
        ax.set_ylabel(score_col.replace("_", " "))
        ax.set_title(slice_, fontsize=9)
        ax.legend(fontsize=8)
    f.suptitle(fig.title.replace("peak memory", cost_col.replace("_", " ")), fontsize=12)
    _caption(f, "Grey: every completed tuning trial. Coloured and joined: the Pareto front "
             f"(no other trial has both a higher {score_col} and a lower {cost_col}).")  # fmt: skip
    f.tight_layout(rect=(0, 0.06, 1, 1))
    return save(f, out_dir, fig.stem)


CONV_NAMES = {"gen": "GENConv", "gat": "GAT", "sage": "GraphSAGE", "gcn": "GCN"}


def memory_vs_depth_per_conv(
    rows: pd.DataFrame, fig: FigureSpec, out_dir: pathlib.Path
) -> list[pathlib.Path]:
    """One column of panels per convolution (the conv ablation): activation memory and test
    score vs depth, ResGNN vs RevGNN, one pair of rows per measurement slice. Why a figure of
    its own: the claim it illustrates is "reversible activation memory is flat for *every*
    conv", so each conv gets its panel rather than a line among the others."""
    rows = _prepare(rows.assign(variant=""))
    rows["variant"] = variant_labels(rows, exclude=(*VARIANT_EXCLUDE, "conv", "heads"))
    rows["conv_name"] = rows["conv"].map(lambda c: CONV_NAMES.get(str(c), str(c)))
    heads = rows["heads"].where(rows["conv"] == "gat")
    rows.loc[heads.notna(), "conv_name"] += heads[heads.notna()].map(lambda h: f" ({h:g} heads)")
    ok = rows[(rows["status"] == "ok") & rows["peak_memory_bytes"].notna()]
    if ok.empty:
        return []
    unit, scale = byte_unit(float(ok["activation_bytes"].abs().max()))
    metric = str(ok["metric"].dropna().iloc[0]) if ok["metric"].notna().any() else "score"
    quantities = {"activation_bytes": f"activation memory ({unit})",
                  "score": f"test {metric} at best valid"}  # fmt: skip
    long = ok.melt(id_vars=["slice", "model", "variant", "depth", "conv_name"],
                   value_vars=list(quantities), var_name="column", value_name="raw")  # fmt: skip
    long["value"] = np.where(long["column"] == "activation_bytes", long["raw"] / scale, long["raw"])
    long["panel"] = long["slice"].map(_wrap) + "\n" + long["column"].map(quantities)
    convs = [CONV_NAMES[c] for c in CONV_NAMES if CONV_NAMES[c] in " ".join(ok["conv_name"])]
    col_order = [n for c in convs for n in sorted(set(ok["conv_name"])) if n.startswith(c)]
    g = sns.relplot(
        data=long, x="depth", y="value", hue="model", hue_order=_hue_order(rows), palette=PALETTE,
        style=_style(long), col="conv_name", col_order=col_order, row="panel", kind="line",
        markers=True, dashes=False, errorbar="sd", err_style="bars", height=3.0, aspect=1.15,
        facet_kws={"sharey": "row", "sharex": True, "margin_titles": False},
    )  # fmt: skip
    for (panel, _conv), ax in g.axes_dict.items():
        _log_x(ax, rows["depth"].tolist())
        if panel.endswith(quantities["activation_bytes"]):
            ax.set_ylim(bottom=0)
            _mark_oom(ax, rows[(rows["status"] == "oom") & (rows["conv_name"] == _conv)
                               & (rows["slice"].map(_wrap) == panel.rsplit("\n", 1)[0])])  # fmt: skip
        ax.set_xlabel("layers")
        ax.set_ylabel(panel.rsplit("\n", 1)[1])
    g.set_titles("{col_name}\n{row_name}", size=9)
    g.figure.suptitle(fig.title, fontsize=12, y=1.01)
    _caption(g.figure, f"{ERR_NOTE} Activation memory = what the training step adds to the "
             "memory alive before it, less its gradients. x at the top (OOM): out of memory at "
             "that depth.")  # fmt: skip
    g.figure.subplots_adjust(bottom=0.08, hspace=0.6)
    return save(g.figure, out_dir, fig.stem)
