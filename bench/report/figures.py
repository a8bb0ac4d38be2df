"""The report's figures (seaborn on matplotlib's Agg backend), PNG and SVG.

Every panel holds one measurement slice (a graph on a device): numbers from different slices
are never drawn on one axis. One memory measure throughout, step memory (what a training step
adds to the memory alive before it; the claims read the same), and one interval kind: points
are means over seeds of ok trials with their 95% Student t-interval (none for one seed). A
configuration that ran out of memory is an ``x`` at the top of the axis at the depth where it
failed, labelled OOM. Memory grows linearly in depth, so memory axes are linear and fitted
lines are straight lines on them; a line is fitted through 3 or more depths only."""

from __future__ import annotations

import pathlib
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.transforms as mtransforms  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    EngFormatter,
    FixedLocator,
    FuncFormatter,
    MaxNLocator,
    NullFormatter,
    NullLocator,
    ScalarFormatter,
)  # noqa: E402

from bench import paper  # noqa: E402
from bench.models import archs  # noqa: E402
from bench.report.aggregate import linear_fit  # noqa: E402
from bench.report.fmt import byte_unit, fmt_bytes  # noqa: E402
from bench.report.load import variant_labels  # noqa: E402
from bench.report.select import FigureSpec  # noqa: E402
from bench.stats import summarize  # noqa: E402

# each architecture's display name and colour, in registration order (bench.models.archs)
MODEL_NAMES = {a.name: a.display for a in archs.registered()}
MODEL_ORDER = list(MODEL_NAMES.values())
PALETTE = {a.display: mcolors.to_rgb(a.colour) for a in archs.registered()}
VARIANT_EXCLUDE = ("arch", "layers", "deq_max_iter", "dataset", "device")
RC = {"svg.hashsalt": "bench-report", "svg.fonttype": "path", "figure.dpi": 100}
LABEL_OFFSETS = ((6, 4), (6, -11), (-6, 4), (-6, -11))
PLAIN = FuncFormatter(lambda v, _: f"{v:g}")
# minor ticks of a log axis: label only 2x and 5x a power of ten (every one crowds the axis)
SPARSE = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}".lstrip("0.")[:1] in ("2", "5") else "")
BELOW_AXIS_PT = 48  # slope boxes start this far under an axis (below ticks and x label)
ERR_NOTE = (
    "Points: mean over seeds of ok trials; bars: 95% Student t-interval of the mean (none "
    "for a single seed)."
)
STEP_LABEL = "step memory"  # what the claims read: the step's forward+backward peak - baseline
MIN_FIT_DEPTHS = 3  # a line through fewer points is no evidence of a slope


def t_interval(values: pd.Series) -> tuple[float, float]:
    """seaborn's ``errorbar``: the 95% Student t-interval of the mean (a point for one value)."""
    iv = summarize(values)
    return (iv.lo, iv.hi) if np.isfinite(iv.lo) else (iv.mean, iv.mean)


def step_memory(rows: pd.DataFrame) -> str:
    """The column figures read: step memory, or the peak for exports from before it existed."""
    ok = rows.loc[rows["status"] == "ok", "step_added_bytes"]
    return "step_added_bytes" if len(ok) and ok.notna().all() else "peak_memory_bytes"


def _linear_x(ax: plt.Axes, values: list[float]) -> None:
    """A linear depth axis with ticks at the depths used (memory is linear in depth: on a log
    axis a straight line would look exponential)."""
    values = sorted({float(v) for v in values if np.isfinite(v)})
    if values:
        pad = 0.04 * (values[-1] - values[0] or 1)
        ax.set_xlim(max(0.0, values[0] - pad), values[-1] + pad)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    ax.xaxis.set_major_formatter(PLAIN)
    ax.xaxis.set_minor_locator(NullLocator())


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
    """Model display names and a variant label (config columns that differ besides the arch
    within a slice: what differs between slices is the slice's business, not a variant's)."""
    rows = rows.copy()
    rows["model"] = rows["arch"].map(MODEL_NAMES).fillna(rows["arch"])
    rows["variant"] = ""
    for _, part in rows.groupby("slice", sort=True):
        rows.loc[part.index, "variant"] = variant_labels(part, exclude=VARIANT_EXCLUDE)
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


def _cap_line(ax: plt.Axes, rows: pd.DataFrame, scale: float, column: str) -> None:
    """The memory budget a trial OOMs above (``memory_cap_bytes``), drawn only on a peak axis
    (the cap bounds the whole peak, not what a step adds), when it fits the axis."""
    if column != "peak_memory_bytes":
        return
    caps = rows["memory_cap_bytes"].dropna().unique()
    top = ax.get_ylim()[1]
    if len(caps) == 1 and caps[0] / scale <= 3 * top:
        ax.set_ylim(top=max(top, caps[0] / scale * 1.15))
        ax.axhline(caps[0] / scale, ls=":", color="firebrick", lw=1.2)
        ax.annotate("memory cap (OOM above)", (0.01, caps[0] / scale), xycoords=("axes fraction", "data"),
                    xytext=(0, 3), textcoords="offset points", fontsize=7.5, color="firebrick")  # fmt: skip


def _fit_lines(ax: plt.Axes, ok: pd.DataFrame, column: str, scale: float, x_unit: str) -> int:
    """Least-squares line per series (3 or more depths), drawn dashed; slopes written in a box
    in the panel's upper left. Returns the number of text lines in the box."""
    lines = []
    for (model, variant), series in ok.groupby(["model", "variant"], sort=True):
        means = series.groupby("depth")[column].mean()
        fit = linear_fit(means.index.to_numpy(), means.to_numpy())
        if fit is None or fit.n < MIN_FIT_DEPTHS:
            continue
        xs = np.linspace(means.index.min(), means.index.max(), 200)
        ax.plot(xs, fit(xs) / scale, ls="--", lw=1, color=PALETTE.get(model, "black"), alpha=0.7)
        name = f"{model} [{variant}]" if variant else model
        lines.append(f"{name}: {fmt_bytes(fit.slope, signed=True)}/{x_unit}")
    if lines:
        ax.annotate("fitted slopes:\n" + "\n".join(lines), (0.02, 0.98), xycoords="axes fraction",
                    va="top", ha="left", fontsize=7.5, zorder=7,
                    bbox={"boxstyle": "round", "fc": "white", "ec": "0.8", "alpha": 0.9})  # fmt: skip
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
    """Step memory vs depth per arch, fitted lines and OOM marks, one panel per slice (figures
    2-5)."""
    rows = _prepare(rows)
    column = step_memory(rows)
    ok = rows[(rows["status"] == "ok") & rows[column].notna()]
    if ok.empty:
        return []
    unit, scale = byte_unit(float(ok[column].max()))
    label = f"{STEP_LABEL} ({unit})" if column == "step_added_bytes" else f"peak memory ({unit})"
    long = ok.assign(value=ok[column] / scale, quantity=label)
    g = sns.relplot(
        data=long, x="depth", y="value", hue="model", hue_order=_hue_order(rows), palette=PALETTE,
        style=_style(long), col="slice", col_wrap=min(2, long["slice"].nunique()), kind="line",
        markers=True, dashes=False, errorbar=t_interval, err_style="bars", height=3.8,
        aspect=1.3, facet_kws={"sharey": False, "sharex": False},
    )  # fmt: skip
    box_lines = 0
    for slice_, ax in g.axes_dict.items():
        part = rows[rows["slice"] == slice_]
        box_lines = max(
            box_lines, _fit_lines(ax, ok[ok["slice"] == slice_], column, scale, "layer")
        )
        _linear_x(ax, part["depth"].tolist())
        ax.set_ylim(bottom=0)
        _cap_line(ax, part, scale, column)
        _mark_oom(ax, part[part["status"] == "oom"])
        ax.set_xlabel(x_label)
        ax.set_ylabel(label)
        ax.set_title(slice_, fontsize=10)
    g.figure.suptitle(fig.title, fontsize=12)
    _caption(g.figure, f"{ERR_NOTE} {STEP_LABEL.capitalize()}: what one training step adds to the "
             "memory alive before it (activations and gradients). Dashed: least-squares line "
             f"through the means (3 or more depths). x at the top (OOM): out of memory there.")  # fmt: skip
    g.figure.tight_layout(rect=(0, 0.05, 1, 0.95))
    return save(g.figure, out_dir, fig.stem)


def _config_means(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per configuration: mean score and memory (``column``) over ok trials and the half-width
    of each one's 95% t-interval (figure 1's points; NaN half-width for a single seed)."""
    ok = rows[rows["status"] == "ok"]
    out = []
    for config, g in ok.groupby("config_id", sort=True):
        score, memory = summarize(g["score"]), summarize(g[column])
        first = g.iloc[0]
        out.append({"config_id": config, "slice": first["slice"], "model": first["model"],
                    "channels": first["channels"], "layers": first["layers"],
                    "score": score.mean, "score_err": (score.hi - score.lo) / 2,
                    "memory": memory.mean, "memory_err": (memory.hi - memory.lo) / 2})  # fmt: skip
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    return frame.sort_values(["slice", "model", "channels", "layers", "config_id"])


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
    rows: pd.DataFrame, fig: FigureSpec, out_dir: pathlib.Path, gpu: pd.DataFrame | None = None
) -> list[pathlib.Path]:
    """Figure 1: our points (score vs step memory), one panel per (spec, slice); the paper's
    points; and, where the GPU check ran, its measured peak per model beside the paper's."""
    rows = _prepare(rows)
    rows["panel"] = rows["spec"].astype(str) + " — " + rows["slice"]
    column = step_memory(rows)
    means = _config_means(rows, column)
    if means.empty:
        return []
    panels = sorted(rows["panel"].unique())
    extra = 1 + (gpu is not None)
    ncols = min(3, len(panels) + extra)
    nrows = -(-(len(panels) + extra) // ncols)
    f, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 5.4 * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[len(panels) + extra :]:
        ax.set_visible(False)
    hue_order = _hue_order(rows)
    what = STEP_LABEL if column == "step_added_bytes" else "peak memory"
    for ax, panel in zip(flat, panels, strict=False):
        part = rows[rows["panel"] == panel]
        pts = means[means["config_id"].isin(set(part["config_id"]))]
        unit, scale = byte_unit(float(pts["memory"].max()) if len(pts) else 1.0)
        pts = pts.assign(x=pts["memory"] / scale, x_err=pts["memory_err"] / scale, y=pts["score"],
                         y_err=pts["score_err"], label=_point_labels(pts))  # fmt: skip
        oom = _oom_configs(part)
        labels = [f"{m} {c:g}ch L{n:g}"
                  for m, c, n in zip(oom["model"], oom["channels"], oom["layers"], strict=True)]  # fmt: skip
        metric = part["metric"].dropna()
        y_label = f"test {metric.iloc[0] if len(metric) else 'score'} at best valid epoch"
        depths = sorted(pts["layers"].unique())
        title = f"ours: {panel}" + (f", {depths[0]:g} layers" if len(depths) == 1 else "")
        _scatter_panel(ax, pts, labels, hue_order, f"{what} ({unit}, log)", y_label, _wrap(title))
    _paper_panel(flat[len(panels)], hue_order)
    if gpu is not None:
        _gpu_panel(flat[len(panels) + 1], gpu)
    f.suptitle(fig.title, fontsize=12)
    _caption(f, f"{ERR_NOTE} {STEP_LABEL.capitalize()}: what one training step adds to the memory "
             "alive before it. The paper's panel: its 112-layer points (transcribed; peak GPU "
             "memory on ogbn-proteins). GPU panel: the GPU check's measured peak "
             "(max_memory_allocated) of each paper model at its shape, beside the paper's.")  # fmt: skip
    f.tight_layout(rect=(0, 0.06, 1, 1))
    return save(f, out_dir, fig.stem)


def _gpu_panel(ax: plt.Axes, gpu: pd.DataFrame) -> None:
    """Measured peak GB per paper model (the GPU check) beside the paper's, like for like: the
    same shape on one ogbn-proteins-sized training part."""
    from bench.report.load import device_short

    labels, ours, theirs, cards = [], [], [], []
    for pt in (*paper.FIGURE1, *paper.HEADLINE):
        row = gpu[(gpu["label"] == pt.label) & (gpu["status"] == "ok")]
        if row.empty:
            continue
        labels.append(pt.label)
        ours.append(float(row["peak_bytes"].iloc[0]) / 1e9)
        theirs.append(np.nan if pt.oom or pt.peak_memory_gb is None else pt.peak_memory_gb)
        cards.append(device_short(f"cuda ({row['device'].iloc[0]})").removesuffix(" GPU"))
    y = np.arange(len(labels))
    ax.barh(y - 0.2, theirs, height=0.4, color="0.7", label=f"paper ({paper.V100})")
    ax.barh(y + 0.2, ours, height=0.4, color=[PALETTE.get(MODEL_NAMES[paper.point(lb).arch], "0.3")
                                               for lb in labels], label="measured (GPU check)")  # fmt: skip
    for i, (t, card) in enumerate(zip(theirs, cards, strict=True)):
        if np.isnan(t):
            ax.text(
                0.05, i - 0.2, "paper: out of memory", va="center", fontsize=7, color="firebrick"
            )
        ax.text(ours[i], i + 0.2, f" {ours[i]:.2f} ({card})", va="center", fontsize=7)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("peak GPU memory (GB), one training part")
    ax.set_title("GPU check vs paper: peak per model", fontsize=9)
    ax.legend(fontsize=7.5, loc="lower right")


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
    column = step_memory(rows)
    unit, scale = byte_unit(float(ok[column].max()))
    metric = ok["metric"].dropna().iloc[0] if ok["metric"].notna().any() else "score"
    what = STEP_LABEL if column == "step_added_bytes" else "peak memory"
    names = {"params": "parameters", column: f"{what} ({unit})", "score": f"test {metric}"}
    long = ok.melt(id_vars=["slice", "model", "variant", "groups"], value_vars=list(names),
                   var_name="column", value_name="value")  # fmt: skip
    long["quantity"] = long["column"].map(names)
    long.loc[long["column"] == column, "value"] /= scale
    g = sns.relplot(
        data=long, x="groups", y="value", hue="model", hue_order=_hue_order(rows), palette=PALETTE,
        style=_style(long), col="quantity",
        col_order=list(names.values()), row="slice", kind="line", markers=True, dashes=False,
        errorbar=t_interval, err_style="bars", height=3.4, aspect=1.1, facet_kws={"sharey": False},
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
        markers=True, dashes=False, errorbar=t_interval, err_style="bars", height=3.6, aspect=1.3,
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
    column = step_memory(rows)
    unit, scale = byte_unit(float(ok[column].abs().max()))
    metric = str(ok["metric"].dropna().iloc[0]) if ok["metric"].notna().any() else "score"
    what = STEP_LABEL if column == "step_added_bytes" else "peak memory"
    quantities = {column: f"{what} ({unit})", "score": f"test {metric} at best valid"}
    long = ok.melt(id_vars=["slice", "model", "variant", "depth", "conv_name"],
                   value_vars=list(quantities), var_name="column", value_name="raw")  # fmt: skip
    long["value"] = np.where(long["column"] == column, long["raw"] / scale, long["raw"])
    long["panel"] = long["slice"].map(_wrap) + "\n" + long["column"].map(quantities)
    convs = [CONV_NAMES[c] for c in CONV_NAMES if CONV_NAMES[c] in " ".join(ok["conv_name"])]
    col_order = [n for c in convs for n in sorted(set(ok["conv_name"])) if n.startswith(c)]
    g = sns.relplot(
        data=long, x="depth", y="value", hue="model", hue_order=_hue_order(rows), palette=PALETTE,
        style=_style(long), col="conv_name", col_order=col_order, row="panel", kind="line",
        markers=True, dashes=False, errorbar=t_interval, err_style="bars", height=3.0, aspect=1.15,
        facet_kws={"sharey": "row", "sharex": True, "margin_titles": False},
    )  # fmt: skip
    for (panel, _conv), ax in g.axes_dict.items():
        _linear_x(ax, rows["depth"].tolist())
        if panel.endswith(quantities[column]):
            ax.set_ylim(bottom=0)
            _mark_oom(ax, rows[(rows["status"] == "oom") & (rows["conv_name"] == _conv)
                               & (rows["slice"].map(_wrap) == panel.rsplit("\n", 1)[0])])  # fmt: skip
        ax.set_xlabel("layers")
        ax.set_ylabel(panel.rsplit("\n", 1)[1])
    g.set_titles("{col_name}\n{row_name}", size=9)
    g.figure.suptitle(fig.title, fontsize=12, y=1.01)
    _caption(g.figure, f"{ERR_NOTE} {STEP_LABEL.capitalize()}: what one training step adds to the "
             "memory alive before it (activations and gradients). x at the top (OOM): out of "
             "memory at that depth.")  # fmt: skip
    g.figure.subplots_adjust(bottom=0.08, hspace=0.6)
    return save(g.figure, out_dir, fig.stem)
